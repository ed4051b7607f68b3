"""The work queue: a fixed set of candidates enqueued once in a study and trained exactly once each.

Grid points (stage 2), ablation points and compared rules are such sets. Each point is one enqueued trial whose
Optuna params are its identity (alpha, beta, gamma; figure, method, multiplier), so ``trials_dataframe``,
``best_params``, the plot functions and optuna-dashboard show them. A point whose proxy network a finished point
already trained under the same seeds takes that point's measurements instead of training it again, and names it
(``same_network_as``). Every worker process runs :func:`train_points` on the same storage; each claims the next
WAITING trial (:func:`~scaling_search.search.trial_claims.claim_waiting`: never a fresh trial), so N workers share
the points and a killed worker's trial is failed by its stale heartbeat and retried with the same params.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from scaling_search.errors import NonFiniteLossError, UserError
from scaling_search.search.candidate import MEASURED_ATTRS, Candidate, measure, record
from scaling_search.search.context import StudyContext
from scaling_search.search.storage import DONE, is_done, normalise, running_elsewhere
from scaling_search.search.trial_claims import claim_waiting, process_gone, run_claimed, worker_id

ENQUEUER = "enqueued_by"  # study attribute: the worker ("host:pid") that created a stage and enqueues its points
CREATOR_PATIENCE_S = 120.0  # how long others wait for a creator on another machine before they take over


# The attributes that identify a point, as Optuna params: the grid's coefficients, a raced seed, an ablation's or a
# comparison's figure, method or dimension, and its multiplier, phi or budget.
PARAM_KEYS = ("alpha", "beta", "gamma", "seed_offset", "figure", "method", "dimension", "base_depth",
              "base_resolution", "multiplier", "phi", "budget")


def point(candidate: Candidate, attrs: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A queue entry: the attributes its trial records, its Optuna params (by default those of
    :data:`PARAM_KEYS` it has), and the candidate it trains."""
    if params is None:
        params = {key: attrs[key] for key in PARAM_KEYS if attrs.get(key) is not None}
    return {"attrs": attrs, "params": params, **candidate.to_dict()}


def param_space(points: list[dict[str, Any]], bounds: dict[str, tuple[float, float]] | None = None,
                choices: dict[str, list[str]] | None = None) -> dict[str, dict[str, Any]]:
    """Each param's Optuna distribution over a stage's points, as a stored attribute: ``{"low", "high"}`` for
    numbers (``bounds`` overrides), ``{"choices"}`` for names (``choices`` overrides: a stage that can grow
    must name every choice it may ever hold, since Optuna refuses a categorical param whose choices change)."""
    values: dict[str, list[Any]] = {}
    for entry in points:
        for name, value in entry["params"].items():
            values.setdefault(name, []).append(value)
    space: dict[str, dict[str, Any]] = {}
    for name, seen in values.items():
        if name in (choices or {}):
            space[name] = {"choices": list(choices[name])}  # type: ignore[index]
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
            low, high = (bounds or {}).get(name, (min(seen), max(seen)))
            space[name] = {"low": float(low), "high": float(high)}
        else:
            space[name] = {"choices": sorted({str(v) for v in seen})}
    return space


def suggest_point(trial: optuna.Trial, params: dict[str, Any], space: dict[str, dict[str, Any]]) -> None:
    """Ask for the enqueued params through ``suggest_*``, so Optuna records them with their distributions."""
    for name, value in params.items():
        dist = space.get(name, {"low": value, "high": value}) if not isinstance(value, str) else space[name]
        if "choices" in dist:
            trial.suggest_categorical(name, dist["choices"])
        else:
            trial.suggest_float(name, min(dist["low"], value), max(dist["high"], value))


def prepare_points(ctx: StudyContext, stage: str, points: list[dict[str, Any]], identity: dict[str, Any],
                   param_bounds: dict[str, tuple[float, float]] | None = None,
                   growable: tuple[str, ...] = (), choices: dict[str, list[str]] | None = None) -> optuna.Study:
    """Create ``<name>:<stage>`` and enqueue every point once; on reload, check ``identity`` is unchanged.

    Of the processes that start a new stage at the same moment, the one whose study creation lands enqueues the
    points; the others wait for it. ``param_bounds`` and ``choices`` shape the params' distributions
    (:func:`param_space`). Where ``growable`` names identity keys (compare's rules and budgets), a reload may
    add points: those keys grow, points already stored keep their index and their trials, only the new points
    are enqueued, and dropping a stored point is refused.
    """
    config = ctx.config
    study, created = ctx.store.open_stage(stage)
    if created:
        study.set_user_attr(ENQUEUER, worker_id())
    elif "points" not in study.user_attrs:
        _wait_for_points(study, config.search.grace_s)
    if "points" not in study.user_attrs:  # this process created the stage (or its creator died filling it)
        for key, value in identity.items():
            study.set_user_attr(key, normalise(value))
        study.set_user_attr("param_space", normalise(param_space(points, param_bounds, choices)))
        enqueued = {t.user_attrs.get("point") for t in study.get_trials(deepcopy=False)}
        for index, entry in enumerate(points):
            if index not in enqueued:
                study.enqueue_trial(entry["params"], user_attrs={"point": index}, skip_if_exists=False)
        study.set_user_attr("points", points)  # last: other workers wait for it
        return study
    # params are compared apart: studies made before points had params store none
    stored = [_without_params(e) for e in study.user_attrs["points"]]
    wanted = [_without_params(e) for e in normalise(points)]
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
    added = [entry for entry, bare in zip(normalise(points), wanted) if bare not in stored]
    if added:
        for offset, entry in enumerate(added):
            study.enqueue_trial(entry["params"], user_attrs={"point": len(stored) + offset}, skip_if_exists=False)
        study.set_user_attr("points", study.user_attrs["points"] + added)
        for key in growable:
            before = study.user_attrs.get(key) or []
            study.set_user_attr(key, before + [v for v in normalise(identity[key]) if v not in before])
    return study


def _without_params(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "params"}


def _wait_for_points(study: optuna.Study, grace_s: float) -> None:
    """Wait while the process that created the stage enqueues its points (about a second; longer on a loaded
    machine). Return early, for the caller to take over, only if that process is gone from this machine, or,
    for one on another machine, after ``CREATOR_PATIENCE_S`` (and at least 10 heartbeat grace periods)."""
    deadline = time.monotonic() + max(CREATOR_PATIENCE_S, 10 * grace_s)
    while "points" not in study.user_attrs and time.monotonic() < deadline:
        if process_gone(str(study.user_attrs.get(ENQUEUER, ""))):
            return
        time.sleep(0.2)


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


def train_points(ctx: StudyContext, study: optuna.Study, label: str,
                 describe: Callable[[dict[str, Any]], str]) -> optuna.Study:
    """Train every enqueued point of ``study`` to completion (or pruning) exactly once, sharing the work with
    any other process running the same call on the same storage."""
    config, storage = ctx.config, ctx.store.storage
    points = study.user_attrs["points"]
    space = study.user_attrs.get("param_space") or {  # studies before categorical params stored float bounds
        name: {"low": low, "high": high} for name, (low, high) in study.user_attrs.get("param_bounds", {}).items()}

    def finished_points() -> set[int]:
        return {t.user_attrs["point"] for t in study.get_trials(deepcopy=False)
                if "point" in t.user_attrs and is_done(t)}

    def objective(trial: optuna.Trial) -> float:
        index = trial.user_attrs["point"]
        entry = points[index]
        suggest_point(trial, entry.get("params", {}), space)  # the enqueued values, with their distributions
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
        measured = measure(trial, candidate, ctx.proxy_data(candidate.deployment), settings,
                           entry["attrs"].get("train_seeds", config.search.repeats), ctx.trainer, lambda accuracy: accuracy)
        return measured.mean

    def describe_trial(trial: FrozenTrial) -> str:
        return f"{describe(trial.user_attrs)} {outcome(trial)}"

    log = Progress(label, len(points), len(finished_points()), ctx.progress, describe_trial, ctx.bar)
    try:
        while True:
            finished = finished_points()
            log.sync(len(finished))  # count points other workers finished too
            if len(finished) >= len(points):
                break
            trial = claim_waiting(study, storage)
            if trial is not None:
                log(study, run_claimed(study, storage, trial, objective, config.search.heartbeat_s,
                                       (NonFiniteLossError,)))
            elif running_elsewhere(study, storage, config.search.grace_s) or \
                    not _enqueue_again(study, points, config.search.grace_s):
                time.sleep(config.search.heartbeat_s)
    finally:
        log.close()
    return study


def train_stage(stage: str, label: str, describe: Callable[[dict[str, Any]], str], ctx: StudyContext) -> optuna.Study:
    """A worker's job (:func:`scaling_search.search.workers.with_workers`): the stage's enqueued points trained,
    shared with every other process running it."""
    study, _ = ctx.store.open_stage(stage)
    return train_points(ctx, study, label, describe)


def _enqueue_again(study: optuna.Study, points: list[dict[str, Any]], grace_s: float) -> int:
    """Enqueue the unfinished points that no trial waits for or runs (each was killed or interrupted more
    often than :func:`~scaling_search.search.trial_claims.retry` retries), with their params, so a rerun
    finishes them; returns how many.

    Decided on one fresh read of the trials: a point finished by another worker since the caller last looked is
    not enqueued again. A point whose trial failed less than ``grace_s`` ago and has no retry yet is left alone
    too: the worker that failed it may be enqueueing its retry at this moment (failing and retrying are two
    storage calls), and enqueueing it here as well would train it twice.
    """
    trials = study.get_trials(deepcopy=False)
    finished = {t.user_attrs.get("point") for t in trials if is_done(t)}
    held = {t.user_attrs.get("point") for t in trials if t.state in (TrialState.WAITING, TrialState.RUNNING)}
    retried = {t.user_attrs.get("retry_of") for t in trials}
    now = datetime.now()
    settling = {t.user_attrs.get("point") for t in trials
                if t.state == TrialState.FAIL and t.number not in retried and t.datetime_complete is not None
                and (now - t.datetime_complete).total_seconds() < grace_s}
    missing = sorted(set(range(len(points))) - finished - held - settling)
    for index in missing:
        study.enqueue_trial(points[index]["params"], user_attrs={"point": index}, skip_if_exists=False)
    return len(missing)


__all__ = ["PARAM_KEYS", "Progress", "finished_twin", "outcome", "param_space", "point", "prepare_points",
           "suggest_point", "train_points", "train_stage"]
