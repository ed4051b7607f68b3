"""The work queue: a fixed set of candidates enqueued once in a study and trained exactly once each.

Grid points (stage 2), ablation points and compared rules are such sets. A point whose proxy network a
finished point already trained under the same seeds takes that point's measurements instead of training it
again, and names it (``same_network_as``). Every worker process runs
:func:`train_points` on the same storage; each takes the next WAITING trial (Optuna hands a waiting trial to one
worker), so N workers share the points and a killed worker's trial is failed by its stale heartbeat and
retried.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaling_search.data.base import ImageData
from scaling_search.errors import NonFiniteLossError, UserError
from scaling_search.search.candidate import MEASURED_ATTRS, Candidate, Trainer, measure, record
from scaling_search.search.config import StudyConfig
from scaling_search.search.storage import DONE, is_done, normalise, open_storage, open_study, running_elsewhere


def point(candidate: Candidate, attrs: dict[str, Any], params: dict[str, float] | None = None) -> dict[str, Any]:
    """A queue entry: the attributes its trial records, its Optuna params, and the candidate it trains."""
    return {"attrs": attrs, "params": params or {}, **candidate.to_dict()}


def prepare_points(config: StudyConfig, stage: str, points: list[dict[str, Any]], identity: dict[str, Any],
                   param_bounds: dict[str, tuple[float, float]] | None = None,
                   growable: tuple[str, ...] = ()) -> optuna.Study:
    """Create ``<name>:<stage>`` and enqueue every point once; on reload, check ``identity`` is unchanged.

    ``param_bounds`` gives each param's (low, high), so grid trials carry alpha, beta, gamma as Optuna params
    (``trials_dataframe``, ``best_params`` and the plot functions see them). Where ``growable`` names identity
    keys (compare's rules and budgets), a reload may add points: those keys grow, points already stored keep
    their index and their trials, only the new points are enqueued, and dropping a stored point is refused.
    """
    study = open_study(config, open_storage(config), stage)
    if "points" not in study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, normalise(value))
        study.set_user_attr("param_bounds", normalise(param_bounds or {}))
        study.set_user_attr("points", points)
        for index, entry in enumerate(points):
            study.enqueue_trial(entry["params"], user_attrs={"point": index}, skip_if_exists=False)
        return study
    stored, wanted = study.user_attrs["points"], normalise(points)
    fixed_changed = any(study.user_attrs.get(key) != normalise(value) for key, value in identity.items()
                        if key not in growable)
    if fixed_changed:
        raise UserError(f"study {config.name!r} ({stage}) was built on a different baseline or point set; "
                        "choose a new --study name to start again")
    if not growable:
        return study
    if any(entry not in wanted for entry in stored):
        held = " and ".join(f"{key} {', '.join(_listed(v) for v in study.user_attrs.get(key, []))}" for key in growable)
        raise UserError(f"study {config.name!r} ({stage}) already holds {held}: name them all to "
                        "extend it, or choose a new --study name to start again")
    added = [entry for entry in wanted if entry not in stored]
    if added:
        for offset, entry in enumerate(added):
            study.enqueue_trial(entry["params"], user_attrs={"point": len(stored) + offset}, skip_if_exists=False)
        study.set_user_attr("points", stored + added)
        for key in growable:
            before = study.user_attrs.get(key) or []
            study.set_user_attr(key, before + [v for v in normalise(identity[key]) if v not in before])
    return study


def _listed(value: Any) -> str:
    """A stored budget (2.0 -> 2x) or rule name as the command line spells it."""
    return f"{value:g}x" if isinstance(value, float) else str(value)


class Progress:
    """One log line per finished trial on stderr and, on a terminal, a tqdm bar over the stage's trials.

    Extra worker processes pass ``bar=False``: their lines interleave with the first process's, one bar.
    Redirected to a file, no bar frames are written, only the lines.
    """

    def __init__(self, stage: str, total: int, done: int, enabled: bool, describe: Callable[[FrozenTrial], str],
                 bar: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, desc=stage, unit="trial", file=sys.stderr,
                        disable=not (enabled and bar and sys.stderr.isatty()))
        self.describe = describe
        self.enabled = enabled
        self.stage = stage

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in DONE or trial.state == TrialState.FAIL:
            if self.enabled:
                self.bar.write(f"[{self.stage}] trial {trial.number} {trial.state.name.lower()}: "
                               f"{self.describe(trial)}", file=sys.stderr)
            if trial.state in DONE:
                self.bar.update(1)  # corrected by sync() where several workers share the stage

    def sync(self, done: int) -> None:
        if done != self.bar.n:
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def outcome(trial: FrozenTrial) -> str:
    """How a finished trial ended, for its log line: its accuracy, or where it was pruned or why it failed."""
    attrs = trial.user_attrs
    if trial.state == TrialState.PRUNED:
        return f"(pruned after epoch {attrs['pruned_at_epoch']})" if "pruned_at_epoch" in attrs else "(pruned)"
    if "accuracy" not in attrs:
        return f"({attrs.get('error', 'no result')})"
    return f"acc {100 * attrs['accuracy']:.2f}%"


def finished_twin(study: optuna.Study, proxy: dict[str, Any], repeats: int) -> FrozenTrial | None:
    """A COMPLETE trial of ``study`` that trained this very proxy network under the same number of seeds (same
    study, so the same seeds and settings): training it again would only repeat its numbers."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        attrs = trial.user_attrs
        if attrs.get("proxy_spec") == proxy and len(attrs.get("accuracy_per_seed", ())) == repeats \
                and "same_network_as" not in attrs:
            return trial
    return None


def train_points(config: StudyConfig, data: ImageData, study: optuna.Study, label: str,
                 describe: Callable[[dict[str, Any]], str], trainer: Trainer, progress: bool = True,
                 bar: bool = True) -> optuna.Study:
    """Train every enqueued point of ``study`` to completion (or pruning) exactly once, sharing the work with
    any other process running the same call on the same storage."""
    points = study.user_attrs["points"]
    bounds = study.user_attrs.get("param_bounds", {})

    def finished_points() -> set[int]:
        return {t.user_attrs["point"] for t in study.get_trials(deepcopy=False)
                if "point" in t.user_attrs and is_done(t)}

    def claimed_points() -> set[int]:
        return {t.user_attrs["point"] for t in study.get_trials(deepcopy=False)
                if "point" in t.user_attrs and t.state in (TrialState.RUNNING, TrialState.WAITING)}

    def objective(trial: optuna.Trial) -> float:
        index = trial.user_attrs.get("point")
        enqueued = index is not None  # its params are fixed by enqueue_trial; a free-point trial has none
        if index is None:  # not an enqueued trial: take a point nobody finished or holds
            free = sorted(set(range(len(points))) - finished_points() - claimed_points())
            if not free:
                trial.set_user_attr("idle", True)
                raise optuna.TrialPruned()
            index = free[0]
            trial.set_user_attr("point", index)
        entry = points[index]
        if enqueued:
            for name, value in entry.get("params", {}).items():
                low, high = bounds.get(name, (value, value))
                trial.suggest_float(name, min(low, value), max(high, value))  # the enqueued value
        record(trial, entry["attrs"])
        candidate = Candidate.from_dict(entry)
        # a raced extra seed (scaling_search.search.race) trains its own seed, never a twin's
        extra_seed = entry["attrs"].get("seed_offset")
        twin = None if extra_seed is not None else finished_twin(study, entry["proxy"], config.search.repeats)
        if twin is not None:  # e.g. v2 below its cap is compound: the same network, the same seeds
            record(trial, candidate.cost_attrs())
            record(trial, {key: twin.user_attrs[key] for key in MEASURED_ATTRS if key in twin.user_attrs})
            trial.set_user_attr("same_network_as", twin.number)
            return float(twin.value)
        settings = config.train if extra_seed is None else replace(config.train, seed=config.train.seed + extra_seed)
        measured = measure(trial, candidate, data, settings, entry["attrs"].get("train_seeds", config.search.repeats),
                           trainer, lambda accuracy: accuracy)
        return measured.mean

    def describe_trial(trial: FrozenTrial) -> str:
        return f"{describe(trial.user_attrs)} {outcome(trial)}"

    log = Progress(label, len(points), len(finished_points()), progress, describe_trial, bar)
    try:
        while True:
            finished = finished_points()
            log.sync(len(finished))  # count points other workers finished too
            if len(finished) >= len(points):
                break
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            free = set(range(len(points))) - finished - claimed_points()
            if waiting or free:
                study.optimize(objective, n_trials=1, catch=(NonFiniteLossError,), callbacks=[log])
            elif running_elsewhere(study, config.search.grace_s):
                time.sleep(config.search.heartbeat_s)
    finally:
        log.close()
    return study


__all__ = ["Progress", "finished_twin", "outcome", "point", "prepare_points", "train_points"]
