"""The study definition: one typed, validated, frozen config per study, from TOML plus CLI overrides.

A study document has the tables ``[data]``, ``[proxy]``, ``[train]`` (see :mod:`scaling_search.proxy` and
:class:`scaling_search.train.TrainSettings`) and ``[search]`` (:class:`SearchSettings`). Presets ship in the
package; ``studies/*.toml`` in the repository show how to write your own. The config is written into the
run's output folder (``study.json``) and its result-relevant part is stored in the Optuna study, so a rerun
with different settings is refused instead of silently mixing trials.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scaling_search.grid import CONSTRAINTS
from scaling_search.presets import load_toml
from scaling_search.proxy import DataSettings, ProxyModel, section_from_table, sections_from_toml
from scaling_search.train import TrainSettings

PRUNERS = ("none", "median", "asha", "hyperband")
BASELINES = ("search", "b0")
COSTS = ("macs", "latency")


@dataclass(frozen=True)
class SearchSettings:
    """Stage 1 (baseline search) and stage 2 (coefficient grid) settings.

    Attributes:
        baseline: ``"search"`` runs stage 1; ``"b0"`` uses the reference B0 (at the proxy width and resolution).
        cost: what the stage-1 reward and the budget measure: ``"macs"`` (the paper) or ``"latency"``
            (MnasNet's choice: batch-1 latency predicted by the device's lookup table).
        target_latency_ms: stage-1 reward target with ``cost = "latency"``; 0 means the proxy B0's prediction.
        latency_device: the device whose latency table is used (``"cpu"``, ``"cuda"``).
        trials: stage-1 trials (TPE, seeded).
        target_macs: stage-1 reward target; 0 means B0's MACs at the proxy width and resolution.
        reward_exponent: w in ``acc * (macs / target) ** w`` (paper: -0.07).
        grid_step: spacing of alpha, beta, gamma values from 1.
        grid_max: largest alpha, beta or gamma value.
        grid_tol: how far from 2 a point's MACs ratio may be.
        constraint: ``"nominal"`` (alpha * beta^2 * gamma^2) or ``"achieved"`` (after rounding).
        pruner: Optuna pruner on per-epoch val accuracy.
        repeats: training seeds per grid point.
        seed: seed of the sampler and of training.
        heartbeat_s / grace_s: a trial whose process stopped beating for ``grace_s`` is failed and retried.
        workers: processes that train stage-2 grid points at once on this machine, each with
            ``cores // workers`` threads (stage 1 runs in one process so that its TPE history, and so its
            samples, do not depend on timing).
    """

    baseline: str = "search"
    cost: str = "macs"
    target_latency_ms: float = 0.0
    latency_device: str = "cpu"
    trials: int = 4
    target_macs: int = 0
    reward_exponent: float = -0.07
    grid_step: float = 0.2
    grid_max: float = 2.0
    grid_tol: float = 0.1
    constraint: str = "nominal"
    pruner: str = "median"
    repeats: int = 1
    seed: int = 0
    heartbeat_s: int = 2
    grace_s: int = 8
    workers: int = 1

    def __post_init__(self) -> None:
        checks = [
            (self.baseline in BASELINES, f"baseline must be one of {', '.join(BASELINES)}"),
            (self.cost in COSTS, f"cost must be one of {', '.join(COSTS)}"),
            (self.target_latency_ms >= 0, "target_latency_ms must be >= 0"),
            (self.trials >= 1, "trials must be >= 1"),
            (self.target_macs >= 0, "target_macs must be >= 0"),
            (self.reward_exponent <= 0, "reward_exponent must be <= 0"),
            (0 < self.grid_step <= 1, "grid_step must be in (0, 1]"),
            (self.grid_max > 1, "grid_max must be > 1"),
            (self.grid_tol >= 0, "grid_tol must be >= 0"),
            (self.constraint in CONSTRAINTS, f"constraint must be one of {', '.join(CONSTRAINTS)}"),
            (self.pruner in PRUNERS, f"pruner must be one of {', '.join(PRUNERS)}"),
            (self.repeats >= 1, "repeats must be >= 1"),
            (self.heartbeat_s >= 1 and self.grace_s > self.heartbeat_s, "grace_s must exceed heartbeat_s >= 1"),
            (self.workers >= 1, "workers must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"search settings: {message}")


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study's results, plus where it is stored."""

    name: str
    preset: str
    data: DataSettings
    proxy: ProxyModel
    train: TrainSettings
    search: SearchSettings
    storage: str

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ValueError(f"study name {self.name!r} must be letters, digits, '.', '_' or '-'")

    def result_settings(self) -> dict[str, Any]:
        """The settings that change trial results (not storage, threads or device): the study's fingerprint."""
        train = asdict(self.train)
        for key in ("threads", "device", "eval_batch_size"):
            train.pop(key)
        search = asdict(self.search)
        for key in ("heartbeat_s", "grace_s", "workers"):
            search.pop(key)
        return {"data": asdict(self.data), "proxy": asdict(self.proxy), "train": train, "search": search}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset, "storage": self.storage, "data": asdict(self.data),
                "proxy": asdict(self.proxy), "train": asdict(self.train), "search": asdict(self.search)}

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "study.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        temporary.replace(path)  # atomic: a failed run never leaves a half-written config
        return path


def default_study_name(preset: str, source: str) -> str:
    stem = "synthetic" if source == "synthetic" else Path(source).stem or "data"
    preset_stem = Path(preset).stem
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{preset_stem}-{stem}")


def load_study_config(preset: str, overrides: dict[str, dict[str, Any]], name: str | None,
                      storage: str | None) -> StudyConfig:
    """Preset (or TOML file) -> overrides (only values that are not None) -> validated, frozen config."""
    document = load_toml(preset)
    unknown = sorted(set(document) - {"data", "proxy", "train", "search"})
    if unknown:
        raise ValueError(f"{preset}: unknown table(s) {', '.join(unknown)} (known: data, proxy, train, search)")
    for table, values in overrides.items():
        document.setdefault(table, {})
        document[table] = {**document[table], **{k: v for k, v in values.items() if v is not None}}
    data, proxy, train = sections_from_toml(document)
    search = section_from_table(SearchSettings, document.get("search"), "search")
    name = name or default_study_name(preset, data.source)
    storage = storage or f"sqlite:///studies/{name}.db"
    return StudyConfig(name=name, preset=preset, data=data, proxy=proxy, train=train, search=search,
                       storage=storage)


__all__ = ["BASELINES", "PRUNERS", "SearchSettings", "StudyConfig", "default_study_name", "load_study_config"]
