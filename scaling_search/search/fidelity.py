"""Proxy fidelity: does the proxy rank the grid's candidates as a longer training regime does?

The answer of a study is the grid's argmax under a proxy of a few epochs; it is only as good as that proxy's
ranking. This stage trains the grid's deployment-scale candidates again under a *reference* regime (k times
the epochs, and optionally a larger proxy resolution or width) and scores the proxy's ranking against it
(:mod:`scaling_search.search.rank_agreement`). The proxy's numbers are stage 2's own: ``fidelity`` after ``run`` trains
only the reference, and ``run`` after ``fidelity`` trains nothing again. The reference is a stage of the same
study (``<name>:fidelity-<regime>``): resumable, shared by workers, kept beside the grid.

Cheap in-run signals are scored against the same reference: the proxy's final training loss and its sum
over epochs (lower is better; the sum of training losses, Ru et al., 2021, "Speedy Performance Estimation for
Neural Architecture Search", ranked NAS-Bench-201 networks with Spearman ~0.95 within 50 epochs), and its
validation accuracy after each earlier epoch (early-epoch accuracy: what a proxy of fewer epochs would have
ranked, at that fraction of the cost, without training it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from scaling_search.errors import UserError
from scaling_search.network.proxy import ProxyTransform
from scaling_search.search.confidence import accuracy_variance
from scaling_search.search.rank_agreement import MIN_INTERVAL_CANDIDATES, RankAgreement, rank_agreement
from scaling_search.settings.ladder import regime_config, regime_stage
from scaling_search.settings.study import StudyConfig
from scaling_search.network.spec import NetworkSpec


@dataclass(frozen=True)
class Reference:
    """The longer regime the proxy is scored against.

    Attributes:
        epochs: how many times the proxy's epochs the reference trains (the issue asks for >= 3).
        resolution: the reference proxy's resolution for the deployment baseline, in pixels (None: the study's).
        width: the reference proxy's width factor (None: the study's).
        images: what the reference's proxy inputs are made from (``[proxy] images``; None: as the study's). A
            reference above the data's native resolution on ``"native"`` images sees all of it, as the deployment
            network does: the reference the other ways of making proxy images are measured against.
    """

    epochs: int = 3
    resolution: int | None = None
    width: float | None = None
    images: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"--reference-epochs must be a whole number >= 1, got {self.epochs!r}")
        if self.width is not None and not 0 < self.width <= 1:
            raise UserError(f"--reference-width must be in (0, 1] (a proxy is never wider than the deployed "
                            f"network), got {self.width:g}")
        if self.resolution is not None and self.resolution < 1:
            raise UserError(f"--reference-resolution must be a positive number of pixels, got {self.resolution}")

    def config(self, config: StudyConfig) -> StudyConfig:
        """The study's config with the reference's training (:func:`~scaling_search.settings.ladder.regime_config`)."""
        trained = regime_config(config, self.epochs, self.resolution, self.width, self.images)
        if (self.epochs, trained.proxy) == (1, config.proxy):
            raise UserError("the reference regime equals the proxy; raise --reference-epochs (e.g. 3) or set "
                            "--reference-resolution / --reference-width")
        return trained

    def transform(self, config: StudyConfig, network: NetworkSpec) -> ProxyTransform:
        """The reference's proxy transform for the deployment ``network``; refuses one no proxy can have."""
        try:
            return self.config(config).proxy_transform(network)
        except UserError as error:
            raise UserError(f"reference regime: {error}") from None

    def stage(self, config: StudyConfig) -> str:
        """The stage's name, unique per regime: ``fidelity-e9-r40-w0.5``."""
        return regime_stage("fidelity", self.config(config))


def regime(settings: dict[str, Any]) -> dict[str, Any]:
    """A training regime as the report and the JSON output describe it, from a stage's stored ``settings``
    (:meth:`StudyConfig.result_settings`)."""
    return {"epochs": settings["train"]["epochs"], "proxy_resolution": settings["proxy"]["resolution"],
            "proxy_width": settings["proxy"]["width"], "proxy_depth": settings["proxy"]["depth"],
            "seeds": settings["search"]["repeats"], "train_share": settings["data"].get("train_share", 1.0),
            "images": settings["proxy"].get("images", "native")}


def fidelity_stages(storage: Any, name: str, kind: str = "fidelity") -> list[str]:
    """The reference stages (``fidelity-<regime>``) of study ``name`` in ``storage``, in name order; with
    ``kind="candidate"`` the candidate-proxy stages (``candidate-<regime>``) instead."""
    prefix = f"{name}:{kind}-"
    return sorted(s.split(":", 1)[1] for s in optuna.get_all_study_names(storage) if s.startswith(prefix))


def _complete(study: optuna.Study) -> dict[int, optuna.trial.FrozenTrial]:
    return {t.user_attrs["point"]: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if "point" in t.user_attrs}


@dataclass(frozen=True)
class Fidelity:
    """The proxy's ranking of the grid scored against the reference's, with what each regime cost."""

    proxy: dict[str, Any]
    reference: dict[str, Any]
    candidates: list[dict[str, Any]]
    signals: dict[str, RankAgreement]
    proxy_train_s: float
    reference_train_s: float
    left_out: int  # candidates without a finished proxy and reference result (pruned or failed)

    @property
    def cost_ratio(self) -> float:
        """Proxy training time over reference training time, over the compared candidates."""
        return self.proxy_train_s / self.reference_train_s if self.reference_train_s else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"proxy": self.proxy, "reference": self.reference,
                "signals": {name: score.to_dict() for name, score in self.signals.items()},
                "cost": {"proxy_train_s": self.proxy_train_s, "reference_train_s": self.reference_train_s,
                         "ratio": self.cost_ratio},
                "left_out": self.left_out, "candidates": self.candidates}


def accuracy_curve(trial: optuna.trial.FrozenTrial) -> list[float] | None:
    """The trial's validation accuracy after each epoch, averaged over seeds; for a one-seed trial recorded
    before trials kept the curve, Optuna's intermediate values (the first seed's epochs, reported for pruning)."""
    recorded = trial.user_attrs.get("accuracy_by_epoch")
    if recorded:
        return list(recorded)
    per_seed, reported = trial.user_attrs.get("accuracy_per_seed"), trial.intermediate_values
    if isinstance(per_seed, list) and len(per_seed) == 1 and reported and \
            sorted(reported) == list(range(1, len(reported) + 1)):
        return [reported[epoch] for epoch in sorted(reported)]
    return None


def measurement_sd(trial: optuna.trial.FrozenTrial) -> float:
    """The standard deviation of a trial's mean accuracy: its validation sampling and, with several seeds, their
    spread (:func:`scaling_search.search.confidence.accuracy_variance`); 0 where neither is recorded."""
    attrs = trial.user_attrs
    seeds = len(attrs.get("accuracy_per_seed") or [None])
    variance = accuracy_variance(float(trial.value), attrs.get("val_images"), attrs.get("accuracy_std"), seeds)
    return math.sqrt(variance) if variance else 0.0


def score_fidelity(grid: optuna.Study, reference: optuna.Study) -> Fidelity:
    """Pair each grid point's proxy result with its reference result and score the signals against it; reads
    only the two stages (the report calls it on a storage alone)."""
    proxied, referenced = _complete(grid), _complete(reference)
    shared = sorted(set(proxied) & set(referenced))
    if len(shared) < 3:
        raise UserError(f"proxy fidelity needs three or more candidates finished in both regimes, found "
                        f"{len(shared)}; widen the grid (--grid-max, --grid-tol) or turn the pruner off "
                        "(--pruner none)")
    rows = []
    for index in shared:
        proxy_attrs, reference_attrs = proxied[index].user_attrs, referenced[index].user_attrs
        rows.append({"point": index, **{k: proxy_attrs.get(k) for k in ("alpha", "beta", "gamma", "macs")},
                     "proxy_accuracy": proxied[index].value, "reference_accuracy": referenced[index].value,
                     "proxy_train_loss": proxy_attrs.get("train_loss"),
                     "proxy_train_loss_sum": proxy_attrs.get("train_loss_sum"),
                     "proxy_accuracy_by_epoch": accuracy_curve(proxied[index]),
                     "proxy_train_s": proxy_attrs.get("train_wall_s", 0.0),
                     "reference_train_s": reference_attrs.get("train_wall_s", 0.0)})
    truth = [row["reference_accuracy"] for row in rows]
    seed = grid.user_attrs["settings"]["search"]["seed"]
    truth_sd = [measurement_sd(referenced[index]) for index in shared]
    signals = {"proxy accuracy": rank_agreement([row["proxy_accuracy"] for row in rows], truth, seed,
                                                signal_sd=[measurement_sd(proxied[index]) for index in shared],
                                                reference_sd=truth_sd)}
    for key, name in (("proxy_train_loss", "proxy final training loss"),
                      ("proxy_train_loss_sum", "proxy summed training loss")):
        if all(row[key] is not None for row in rows):
            # lower loss ranks higher; a loss's own noise is not recorded, the reference's is
            signals[name] = rank_agreement([-row[key] for row in rows], truth, seed, reference_sd=truth_sd)
    curves = [row["proxy_accuracy_by_epoch"] for row in rows]
    if all(curves) and len({len(curve) for curve in curves}) == 1:
        for epoch in range(1, len(curves[0])):  # a proxy stopped early: the cheaper regime, read off this one
            signals[f"proxy accuracy after epoch {epoch}"] = rank_agreement([curve[epoch - 1] for curve in curves],
                                                                            truth, seed, reference_sd=truth_sd)
    return Fidelity(regime(grid.user_attrs["settings"]), regime(reference.user_attrs["settings"]), rows, signals,
                    sum(row["proxy_train_s"] for row in rows), sum(row["reference_train_s"] for row in rows),
                    len(grid.user_attrs["points"]) - len(shared))


def regime_text(r: dict[str, Any]) -> str:
    """``"9 epoch(s) at 40 px, width x0.5"`` (``", x0.5 of the training images"`` on less data, ``", matched
    images"`` where the proxy's images are not the native ones)."""
    share, images = r.get("train_share", 1.0), r.get("images", "native")
    return (f"{r['epochs']} epoch(s) at {r['proxy_resolution']} px, width x{r['proxy_width']:g}"
            + (f", x{share:g} of the training images" if share != 1.0 else "")
            + (f", {images} images" if images != "native" else ""))


def describe_tau(tau: float, interval: tuple[float, float] | None, p_value: float | None = None,
                 candidates: int | None = None) -> str:
    """``"Kendall tau +0.20 (95% interval -0.78 to +1.00; p 0.31)"``: how every output states a measured tau; with
    too few candidates for an interval, it says so."""
    parts = [] if interval is None else [f"95% interval {interval[0]:+.2f} to {interval[1]:+.2f}"]
    if interval is None and candidates is not None and candidates < MIN_INTERVAL_CANDIDATES:
        parts.append(f"n = {candidates}: too few candidates for an interval")
    if p_value is not None:
        parts.append(f"permutation p {p_value:.3f}" + ("" if p_value < 0.05 else ", not above chance"))
    return f"Kendall tau {tau:+.2f}" + (f" ({'; '.join(parts)})" if parts else "")


def describe_score(score: RankAgreement) -> str:
    """:func:`describe_tau` of a measured score (its interval, p-value and candidate count)."""
    return describe_tau(score.kendall_tau, score.kendall_interval, score.p_value, score.candidates)


def fidelity_sentence(result: Fidelity) -> str:
    """The proxy accuracy's fidelity in one sentence, for the report's answer and verdicts."""
    score = result.signals["proxy accuracy"]
    against = f"Proxy fidelity against {regime_text(result.reference)} over {len(result.candidates)} candidates"
    if not score.defined:
        return f"{against}: undefined, the reference gives every candidate the same accuracy."
    return (f"{against}: {describe_score(score)}; the proxy's best is "
            f"{'the' if score.top1_agrees else 'not the'} reference's best; it cost {result.cost_ratio:.2f} of the "
            "reference's training time.")


def proxy_stage_of(reference: optuna.Study) -> str:
    """The stage holding the proxy's side of a reference: ``proxy-...-n16-s2`` for a fidelity over its own
    candidates, ``grid`` for one scored over the grid's points (made before fidelity had candidates of its own)."""
    return str(reference.user_attrs.get("proxy_stage", "grid"))


def stored_fidelities(name: str, storage: Any) -> list[Fidelity]:
    """Every proxy fidelity measured for study ``name`` (one per reference stage), scored from the storage;
    a reference with fewer than three candidates finished in both regimes is left out."""
    scored = []
    for stage in fidelity_stages(storage, name):
        reference = optuna.load_study(study_name=f"{name}:{stage}", storage=storage)
        try:
            proxy = optuna.load_study(study_name=f"{name}:{proxy_stage_of(reference)}", storage=storage)
            scored.append(score_fidelity(proxy, reference))
        except (KeyError, UserError):
            continue
    return scored


def fidelity_evidence(result: Fidelity) -> dict[str, Any]:
    """What an exported config records of a measured fidelity: the proxy accuracy's scores and the regime."""
    score = result.signals["proxy accuracy"]
    return {"reference": result.reference, "candidates": len(result.candidates), "kendall_tau": score.kendall_tau,
            "kendall_interval": score.kendall_interval, "p_value": score.p_value, "spearman_rho": score.spearman_rho,
            "top1_agrees": score.top1_agrees, "cost_ratio": result.cost_ratio}


def describe_fidelity(result: Fidelity) -> str:
    """The scores as lines of text: one per signal, then the cost."""
    n = len(result.candidates)
    lines = [f"proxy fidelity over {n} candidates: proxy {regime_text(result.proxy)} vs reference "
             f"{regime_text(result.reference)}, {result.proxy['seeds']} seed(s) each"]
    for name, s in result.signals.items():
        if not s.defined:
            lines.append(f"  {name:<28} undefined: the reference, or this signal, gives every candidate the same value "
                         "(trained at chance?); nothing is ranked")
            continue
        lines.append(f"  {name:<28} {describe_score(s)}, "
                     f"Spearman rho {s.spearman_rho:+.2f}; top-1 {'agrees' if s.top1_agrees else 'differs'}, top-3 overlap {s.top3_overlap:.0%}")
    lines.append(f"  cost: the proxy trained in {result.proxy_train_s:.1f} s, the reference in "
                 f"{result.reference_train_s:.1f} s (ratio {result.cost_ratio:.2f})")
    if result.left_out:
        lines.append(f"  {result.left_out} grid point(s) left out: not finished in both regimes (pruned or failed)")
    return "\n".join(lines)


__all__ = ["Fidelity", "Reference", "describe_fidelity", "describe_score", "describe_tau", "fidelity_evidence",
           "fidelity_sentence", "proxy_stage_of",
           "fidelity_stages", "regime", "regime_text", "score_fidelity", "stored_fidelities"]
