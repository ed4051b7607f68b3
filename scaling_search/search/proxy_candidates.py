"""Several proxies compared against one reference, and the cheapest faithful one written as a preset.

After EcoNAS (Zhou et al., 2020, "EcoNAS: Finding Proxies for Economical Neural Architecture
Search"), which compared reduced-training proxies (fewer epochs, lower resolution, fewer channels) by how they
rank networks against full training. Each candidate regime changes the study's proxy in one or more of: the
epochs, the proxy resolution of the baseline, the proxy width, the share of the training images. It trains the
grid's deployment-scale candidates as a stage of the study (``<name>:candidate-<regime>``: resumable, shared by
workers, never pruned) and is scored against the reference exactly as the study's own proxy is
(:func:`scaling_search.search.fidelity.score_fidelity`): Kendall's tau with its bootstrap interval, and its
training time as a share of the reference's. The recommendation is the cheapest regime, the study's own proxy included, whose tau reaches the
target; where none does, the one with the highest tau is reported as the best found, never as a recommendation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any

import optuna

from scaling_search.errors import UserError
from scaling_search.settings.study import TABLES, StudyConfig
from scaling_search.search.fidelity import (Fidelity, describe_score, fidelity_stages, proxy_stage_of, regime_text,
                                            score_fidelity)

#: The Kendall tau a recommended proxy must reach against its reference.
TARGET_TAU = 0.8
_KEYS = {"epochs": int, "resolution": int, "width": float, "data": float, "images": str}


@dataclass(frozen=True)
class CandidateRegime:
    """A proxy regime to compare: the study's proxy with some of epochs, resolution, width and the share of the
    training images (``data``; the validation split stays whole) and the way proxy inputs are made (``images``,
    :attr:`scaling_search.settings.proxy.ProxySettings.images`) changed."""

    epochs: int | None = None
    resolution: int | None = None
    width: float | None = None
    data: float | None = None
    images: str | None = None

    @classmethod
    def parse(cls, text: str) -> CandidateRegime:
        """``"epochs=1"``, ``"resolution=32,width=0.25"``: one clear error for anything else."""
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, _, value = item.partition("=")
            if key not in _KEYS or not value:
                raise UserError(f"cannot read candidate proxy {text!r}: write key=value pairs joined by commas, keys "
                                f"{', '.join(_KEYS)} (e.g. epochs=1, resolution=32,width=0.25, data=0.5 or "
                                "images=matched)")
            try:
                values[key] = _KEYS[key](value)
            except ValueError:
                kind = "a whole number" if _KEYS[key] is int else "a number"
                raise UserError(f"candidate proxy {text!r}: {key} must be {kind}, got {value!r}") from None
        if not values:
            raise UserError(f"candidate proxy {text!r} changes nothing: give epochs=, resolution=, width=, data= or "
                            "images=")
        return cls(**values)

    def config(self, config: StudyConfig) -> StudyConfig:
        """The study's config trained under this regime (never pruned: every candidate is compared)."""
        if self.epochs is not None and self.epochs < 1:
            raise UserError(f"candidate proxy: epochs must be >= 1, got {self.epochs}")
        def given(value: Any, default: Any) -> Any:
            return default if value is None else value

        # ProxySettings refuses a bad width or resolution, DataSettings a share outside (0, 1]
        proxy = replace(config.proxy, resolution=given(self.resolution, config.proxy.resolution),
                        width=given(self.width, config.proxy.width), images=given(self.images, config.proxy.images))
        data = replace(config.data, train_share=given(self.data, config.data.train_share))
        return replace(config, data=data, proxy=proxy,
                       train=replace(config.train, epochs=given(self.epochs, config.train.epochs)),
                       search=replace(config.search, pruner="none"))



def candidate_stage(trained: StudyConfig) -> str:
    """``candidate-e1-r40-w0.5``: the stage of a regime, named by the absolute settings of its config
    (:meth:`CandidateRegime.config`)."""
    share = trained.data.train_share
    return (f"candidate-e{trained.train.epochs}-r{trained.proxy.resolution}-w{trained.proxy.width:g}"
            + (f"-d{share:g}" if share != 1.0 else "")
            + ("" if trained.proxy.images == "native" else f"-{trained.proxy.images}"))


@dataclass(frozen=True)
class Recommendation:
    """Every compared proxy's score against one reference, and the cheapest that reaches ``target_tau``."""

    target_tau: float
    scored: list[Fidelity]  # the study's own proxy first, then each candidate regime
    chosen: int | None  # index into ``scored`` of the recommendation; None: no regime reached the target

    @property
    def best(self) -> int:
        """Index of the highest tau (undefined taus last), the answer when nothing reaches the target."""
        return max(range(len(self.scored)), key=lambda i: (_tau(self.scored[i]), -self.scored[i].cost_ratio))

    def to_dict(self) -> dict[str, Any]:
        return {"target_tau": self.target_tau, "chosen": self.chosen, "best": self.best,
                "reference": self.scored[0].reference,
                "proxies": [{"regime": f.proxy, "signals": {"proxy accuracy": f.signals["proxy accuracy"].to_dict()},
                             "candidates": len(f.candidates), "train_s": f.proxy_train_s,
                             "reference_train_s": f.reference_train_s, "cost_ratio": f.cost_ratio}
                            for f in self.scored]}


def _tau(result: Fidelity) -> float:
    tau = result.signals["proxy accuracy"].kendall_tau
    return -math.inf if tau is None else tau


def recommend(scored: list[Fidelity], target_tau: float = TARGET_TAU) -> Recommendation:
    """The cheapest (measured training time over the reference's) of ``scored`` whose tau reaches the target."""
    reaching = [i for i, result in enumerate(scored) if _tau(result) >= target_tau]
    chosen = min(reaching, key=lambda i: (scored[i].cost_ratio, i)) if reaching else None
    return Recommendation(target_tau, scored, chosen)


def stored_comparisons(name: str, storage: Any) -> list[Recommendation]:
    """Every comparison of candidate proxies stored for study ``name``: per reference stage, the study's proxy
    and every candidate stage scored against it (those with fewer than three shared candidates left out), the
    target tau the command was given (stored on each candidate stage)."""
    candidates = fidelity_stages(storage, name, kind="candidate")
    if not candidates:
        return []
    try:
        grid = optuna.load_study(study_name=f"{name}:grid", storage=storage)
    except KeyError:  # candidate stages without their grid: nothing to score them with
        return []
    comparisons = []
    for stage in fidelity_stages(storage, name):
        reference = optuna.load_study(study_name=f"{name}:{stage}", storage=storage)
        own = grid if proxy_stage_of(reference) == "grid" else \
            optuna.load_study(study_name=f"{name}:{proxy_stage_of(reference)}", storage=storage)
        scored, target = [], TARGET_TAU
        for candidate_stage in [None, *candidates]:
            study = own if candidate_stage is None else \
                optuna.load_study(study_name=f"{name}:{candidate_stage}", storage=storage)
            if candidate_stage is not None and study.user_attrs.get("reference_stage", stage) != stage:
                continue  # a candidate scored over another reference's candidates
            try:
                scored.append(score_fidelity(study, reference))
            except UserError:
                if candidate_stage is None:
                    break  # the study's own proxy is not scored against this reference: nothing to compare with
                continue
            target = study.user_attrs.get("target_tau", target)
        if len(scored) > 1:
            comparisons.append(recommend(scored, target))
    return comparisons


def describe_recommendation(result: Recommendation) -> str:
    """One line per compared proxy, then the verdict."""
    lines = [f"proxies against the reference {regime_text(result.scored[0].reference)}, over "
             f"{len(result.scored[0].candidates)} candidates:"]
    for index, scored in enumerate(result.scored):
        score = scored.signals["proxy accuracy"]
        tau = describe_score(score) if score.defined else "tau undefined"
        label = "(the study's proxy) " if index == 0 else ""
        lines.append(f"  {regime_text(scored.proxy):<34} {label}{tau}; cost {scored.cost_ratio:.2f} of the "
                     "reference's training time")
    if result.chosen is not None:
        lines.append(f"recommended: {regime_text(result.scored[result.chosen].proxy)}, the cheapest with tau >= "
                     f"{result.target_tau:g}")
    else:
        best = result.scored[result.best]
        lines.append(f"no proxy reaches tau >= {result.target_tau:g}; the best found is {regime_text(best.proxy)} "
                     f"(not a recommendation: read its interval)")
    return "\n".join(lines)


def preset_text(config: StudyConfig, result: Recommendation) -> str:
    """A preset file (TOML) of ``config`` trained under the recommended regime, or the best found, with what it
    was measured to be worth in its header; ``scaling-search run --preset FILE`` reads it."""
    index = result.chosen if result.chosen is not None else result.best
    scored = result.scored[index]
    regime = scored.proxy
    proxied = replace(config, proxy=replace(config.proxy, resolution=regime["proxy_resolution"],
                                            width=regime["proxy_width"]),
                      train=replace(config.train, epochs=regime["epochs"]),
                      data=replace(config.data, train_share=regime.get("train_share", 1.0)))
    score = scored.signals["proxy accuracy"]
    tau = describe_score(score) if score.defined else "tau undefined"
    verdict = (f"the cheapest proxy with tau >= {result.target_tau:g}" if result.chosen is not None else
               f"NOT a recommendation: no compared proxy reached tau >= {result.target_tau:g}; the best found")
    lines = [f"# Proxy chosen by 'scaling-search fidelity --candidates' for study {config.name!r}: {verdict}.",
             f"# {regime_text(regime)}: {tau} against {regime_text(scored.reference)} over "
             f"{len(scored.candidates)} candidates; training cost {scored.cost_ratio:.2f} of the reference's.",
             ""]
    body = proxied.to_dict()
    for table in TABLES:
        lines.append(f"[{table}]")
        for key, value in body[table].items():
            if value is None:  # TOML has no null: the setting's default applies
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string: JSON's escapes are TOML's
    if isinstance(value, (list, tuple)):  # the ladder's rungs
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items() if v is not None) + "}"
    raise TypeError(f"no TOML form for a setting of type {type(value).__name__}: {value!r}")


__all__ = ["CandidateRegime", "Recommendation", "TARGET_TAU", "candidate_stage", "describe_recommendation", "preset_text", "recommend",
           "stored_comparisons"]
