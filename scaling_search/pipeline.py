"""The three stages behind ``scaling-search run``, each a resumable Optuna study in one storage.

Stage 1 (``<study>:baseline``) samples baselines with TPE and maximises the MnasNet reward; stage 2
(``<study>:grid``) trains every grid point of (alpha, beta, gamma) at phi = 1; stage 3 (:mod:`export`) scales the
baseline with the winning coefficients. Every trial stores its spec, MACs, params and metrics as user
attributes, so reports and exports are rebuilt from the storage alone.

Resumption: a rerun of the same command loads the studies. Finished trials are kept; a trial left RUNNING by a
killed process stops sending heartbeats, is failed after ``grace_s`` and re-enqueued by Optuna's
``RetryFailedTrialCallback``; grid points are enqueued once, when the grid study is created, so no point is
trained twice to completion. Several processes (``--workers``, or other machines on a shared RDB URL) can run
the same stage at once.
"""

from __future__ import annotations

import datetime
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from scaling_search.cost import count_cost
from scaling_search.data.base import ImageData
from scaling_search.errors import NonFiniteLossError
from scaling_search.family import EFFICIENTNET_B0
from scaling_search.grid import GridPoint, coefficient_grid
from scaling_search.scaling import compound, scale
from scaling_search.search_space import reward, suggest_spec
from scaling_search.spec import NetworkSpec
from scaling_search.study import StudyConfig
from scaling_search.train import train_proxy

_DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def _is_done(trial: FrozenTrial) -> bool:
    """Finished for good: completed, pruned, or failed by its own numbers (a NaN loss is not retried)."""
    return trial.state in _DONE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def open_storage(config: StudyConfig) -> RDBStorage:
    """The study's RDB storage with heartbeats (stale trials are failed and retried); one-line errors."""
    url = config.storage
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    # Optuna 4.9 renamed the stale-trial callback; heartbeats are flagged experimental but are its documented
    # way to recover trials of killed processes.
    new_name = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
    key = "heartbeat_stale_trial_callback" if new_name else "failed_trial_callback"
    callback_kwargs = {key: _retry_callback()}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=config.search.heartbeat_s,
                grace_period=config.search.grace_s,
                **callback_kwargs,
            )
    except Exception as error:  # SQLAlchemy raises many kinds; all mean the same to the user
        reason = str(error).splitlines()[0][:200]
        raise ValueError(f"cannot open storage {url!r} ({reason}); check the URL or use the default") from None


def _pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def _normalise(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def check_settings(config: StudyConfig) -> None:
    """Before any work: refuse settings the stored studies were not made with, and an empty nominal grid."""
    if config.search.constraint == "nominal":  # independent of the baseline: check before training anything
        grid_points(config, replace(scale(EFFICIENTNET_B0, width=config.proxy.width),
                                    resolution=config.proxy.resolution))
    url = config.storage
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).expanduser().exists():
        return  # nothing stored yet, and nothing to create before the run starts
    storage = open_storage(config)
    for stage in ("baseline", "grid"):
        _check_stored_settings(config, storage, f"{config.name}:{stage}")


def _check_stored_settings(config: StudyConfig, storage: RDBStorage, study_name: str) -> None:
    settings = _normalise(config.result_settings())
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return
    saved = existing.user_attrs.get("settings")
    if saved is not None and saved != settings:
        changed = sorted(
            f"{table}.{key}" for table in settings for key in settings[table]
            if saved.get(table, {}).get(key) != settings[table][key]
        )
        raise ValueError(
            f"study {config.name!r} in {config.storage} was created with different settings "
            f"({', '.join(changed)}); rerun with the original flags or choose a new --study name"
        )


def open_study(config: StudyConfig, storage: RDBStorage, stage: str,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create or load ``<name>:<stage>``; refuse (one line, study untouched) if it was made with other settings."""
    study_name = f"{config.name}:{stage}"
    settings = _normalise(config.result_settings())
    _check_stored_settings(config, storage, study_name)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=sampler or optuna.samplers.RandomSampler(seed=config.search.seed),
        pruner=_pruner(config.search.pruner, config.train.epochs),
    )
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", settings)
    return study


def proxy_baseline(config: StudyConfig, data: ImageData) -> NetworkSpec:
    """B0 at the proxy width and resolution, with the data's classes and channels."""
    base = scale(EFFICIENTNET_B0, width=config.proxy.width)
    return replace(base, resolution=config.proxy.resolution, num_classes=data.num_classes,
                   input_channels=data.channels)


@dataclass(frozen=True)
class Measured:
    mean: float
    std: float
    per_seed: tuple[float, ...]
    images_per_s: float
    wall_s: float
    train_loss: float


def _train_repeats(trial: optuna.Trial, spec: NetworkSpec, data: ImageData, config: StudyConfig,
                   transform: Callable[[float], float]) -> Measured:
    """Train ``spec`` under ``repeats`` seeds; the first seed's epochs feed Optuna's pruner."""
    accuracies, speeds, losses, wall = [], [], [], 0.0
    for repeat in range(config.search.repeats):
        settings = replace(config.train, seed=config.train.seed + repeat)

        def on_epoch(epoch: int, metrics: Any, first: bool = repeat == 0) -> None:
            if first:
                trial.report(transform(metrics.val_top1), epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_at_epoch", epoch)
                    raise optuna.TrialPruned()

        try:
            result = train_proxy(spec, data, settings, on_epoch=on_epoch)
        except NonFiniteLossError as error:
            trial.set_user_attr("error", str(error))
            raise
        accuracies.append(result.val_top1)
        speeds.append(result.images_per_s)
        losses.append(result.train_loss)
        wall += result.wall_s
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return Measured(statistics.fmean(accuracies), std, tuple(accuracies), statistics.median(speeds), wall,
                    statistics.fmean(losses))


def _record(trial: optuna.Trial, spec: NetworkSpec, measured: Measured | None = None) -> None:
    cost = count_cost(spec)
    trial.set_user_attr("spec", spec.to_dict())
    trial.set_user_attr("macs", cost.macs)
    trial.set_user_attr("params", cost.params)
    trial.set_user_attr("resolution", spec.resolution)
    if measured is not None:
        trial.set_user_attr("accuracy", measured.mean)
        trial.set_user_attr("accuracy_std", measured.std)
        trial.set_user_attr("accuracy_per_seed", list(measured.per_seed))
        trial.set_user_attr("images_per_s", measured.images_per_s)
        trial.set_user_attr("train_wall_s", measured.wall_s)
        trial.set_user_attr("train_loss", measured.train_loss)


class _Progress:
    """A tqdm bar over a stage's trials and one log line per finished trial, on stderr."""

    def __init__(self, stage: str, total: int, done: int, enabled: bool, describe: Callable[[FrozenTrial], str]):
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, desc=stage, unit="trial", disable=not enabled, file=sys.stderr)
        self.describe = describe
        self.enabled = enabled

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state in _DONE or trial.state == TrialState.FAIL:
            if self.enabled:
                self.bar.write(f"[{self.bar.desc}] trial {trial.number} {trial.state.name.lower()}: "
                               f"{self.describe(trial)}", file=sys.stderr)
            if trial.state in _DONE:
                self.bar.update(1)  # corrected by sync() where several workers share the stage

    def sync(self, done: int) -> None:
        if done != self.bar.n:
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _fail_trials_without_heartbeat(study: optuna.Study, grace_s: float) -> None:
    """Fail (and re-enqueue) RUNNING trials that never sent a heartbeat and started over ``grace_s`` ago.

    Optuna starts a trial's heartbeat thread just after the trial becomes RUNNING; a process killed in between
    leaves a trial that ``fail_stale_trials`` never sees as stale, and a stage waiting on it would wait forever.
    """
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    storage = study._storage
    # Optuna wraps an RDBStorage in a caching layer; the heartbeat table lives behind it.
    engine = getattr(getattr(storage, "_backend", storage), "engine", None)
    if not running or engine is None:
        return
    from sqlalchemy import text

    with engine.connect() as connection:
        beating = {row[0] for row in connection.execute(text("select trial_id from trial_heartbeats"))}
    now = datetime.datetime.now()
    for trial in running:
        started = trial.datetime_start
        if trial._trial_id in beating or started is None or (now - started).total_seconds() <= grace_s:
            continue
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except RuntimeError:  # finished meanwhile by its owner
            continue
        _retry_callback()(study, storage.get_trial(trial._trial_id))


def _retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=3)


def _running_elsewhere(study: optuna.Study, grace_s: float) -> bool:
    """Fail stale trials (re-enqueueing them); True if some trial is still RUNNING in a live process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    _fail_trials_without_heartbeat(study, grace_s)
    return any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


# ------------------------------------------------------------------------------------------------ stage 1

def cost_function(config: StudyConfig) -> Callable[[NetworkSpec], float]:
    """The cost the reward and the budget use: analytic MACs, or latency predicted by the device's table."""
    if config.search.cost == "latency":
        from scaling_search.latency import LatencyTable

        table = LatencyTable.open(config.search.latency_device, 1)
        return table.predict
    return lambda spec: float(count_cost(spec).macs)


def run_baseline(config: StudyConfig, data: ImageData, progress: bool = True) -> tuple[NetworkSpec, dict[str, Any]]:
    """Stage 1: the best baseline by reward (or B0 itself with ``baseline = "b0"``) and its trial's metrics."""
    base = proxy_baseline(config, data)
    if config.search.baseline == "b0":
        return base, {"source": "reference B0 at the proxy width and resolution"}
    storage = open_storage(config)
    study = open_study(config, storage, "baseline")
    cost_of = cost_function(config)
    if config.search.cost == "latency":
        target = config.search.target_latency_ms or cost_of(base)
    else:
        target = config.search.target_macs or cost_of(base)
    study.set_user_attr("target", target)
    study.set_user_attr("cost", config.search.cost)

    def objective(trial: optuna.Trial) -> float:
        spec = suggest_spec(trial, base)
        cost = cost_of(spec)
        _record(trial, spec)
        if config.search.cost == "latency":
            trial.set_user_attr("latency_ms", cost)
        measured = _train_repeats(trial, spec, data, config,
                                  lambda acc: reward(acc, cost, target, config.search.reward_exponent))
        _record(trial, spec, measured)
        return reward(measured.mean, cost, target, config.search.reward_exponent)

    def describe(trial: FrozenTrial) -> str:
        attrs = trial.user_attrs
        return (f"reward {trial.value if trial.value is not None else float('nan'):.4f} "
                f"acc {attrs.get('accuracy', float('nan')):.4f} MACs {attrs.get('macs', 0):,}")

    done = sum(_is_done(t) for t in study.get_trials(deepcopy=False))
    bar = _Progress("baseline", config.search.trials, min(done, config.search.trials), progress, describe)
    try:
        while True:
            trials = study.get_trials(deepcopy=False)
            done = sum(_is_done(t) for t in trials)
            if done >= config.search.trials:
                break
            running = sum(t.state == TrialState.RUNNING for t in trials)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            if done + running >= config.search.trials and not waiting:
                if _running_elsewhere(study, config.search.grace_s):
                    time.sleep(config.search.heartbeat_s)
                continue
            # Reseeding from the history makes a resumed study sample exactly what an uninterrupted one would:
            # failed trials (killed or interrupted) do not count, and TPE ignores them too.
            history = sum(t.state != TrialState.FAIL for t in trials)
            study.sampler = optuna.samplers.TPESampler(seed=config.search.seed + history,
                                                       n_startup_trials=max(2, config.search.trials // 2))
            study.optimize(objective, n_trials=1, catch=(NonFiniteLossError,), callbacks=[bar])
    finally:
        bar.close()
    best = max((t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE),
               key=lambda t: (t.value, -t.number), default=None)
    if best is None:
        raise ValueError(f"stage 1 of study {config.name!r} has no completed trial (all pruned or failed)")
    info = {"source": "stage 1 search", "trial": best.number, "reward": best.value,
            "accuracy": best.user_attrs["accuracy"], "macs": best.user_attrs["macs"],
            "cost": config.search.cost, "target": target}
    return NetworkSpec.from_dict(best.user_attrs["spec"]), info


# ------------------------------------------------------------------------------------------------ stage 2

def grid_points(config: StudyConfig, baseline: NetworkSpec) -> list[GridPoint]:
    search = config.search
    return coefficient_grid(baseline, search.grid_step, search.grid_tol, search.constraint, search.grid_max,
                            config.proxy.resolution_multiple)


def prepare_points(config: StudyConfig, stage: str, points: list[dict[str, Any]],
                   identity: dict[str, Any]) -> optuna.Study:
    """Create ``<name>:<stage>`` and enqueue every point once; on reload, check ``identity`` is unchanged.

    A point is ``{"attrs": {...}, "spec": NetworkSpec.to_dict()}``: the attributes recorded on its trial and the
    exact network it trains.
    """
    storage = open_storage(config)
    study = open_study(config, storage, stage)
    if "points" not in study.user_attrs:
        for key, value in identity.items():
            study.set_user_attr(key, value)
        study.set_user_attr("points", points)
        for index in range(len(points)):
            study.enqueue_trial({}, user_attrs={"point": index}, skip_if_exists=False)
    elif any(study.user_attrs.get(key) != _normalise(value) for key, value in identity.items()):
        raise ValueError(f"study {config.name!r} ({stage}) was built on a different baseline or point set; "
                         "choose a new --study name to start again")
    return study


def prepare_grid(config: StudyConfig, baseline: NetworkSpec) -> optuna.Study:
    """The grid study with every (alpha, beta, gamma) point enqueued once."""
    points = [
        {"attrs": point._asdict(),
         "spec": compound(baseline, point.alpha, point.beta, point.gamma, 1.0,
                          resolution_multiple=config.proxy.resolution_multiple).to_dict()}
        for point in grid_points(config, baseline)
    ]
    return prepare_points(config, "grid", points, {"baseline": baseline.to_dict()})


def run_grid(config: StudyConfig, data: ImageData, baseline: NetworkSpec, progress: bool = True) -> optuna.Study:
    """Stage 2: train every grid point to completion (or pruning) exactly once."""
    def describe(attrs: dict[str, Any]) -> str:
        return (f"alpha {attrs.get('alpha')} beta {attrs.get('beta')} gamma {attrs.get('gamma')} "
                f"({attrs.get('achieved_ratio', float('nan')):.2f}x MACs)")

    return train_points(config, data, prepare_grid(config, baseline), "grid", describe, progress)


def train_points(config: StudyConfig, data: ImageData, study: optuna.Study, label: str,
                 describe: Callable[[dict[str, Any]], str], progress: bool = True) -> optuna.Study:
    """Train every enqueued point of ``study`` to completion (or pruning) exactly once, sharing the work with
    any other process running the same call on the same storage."""
    points = study.user_attrs["points"]

    def finished_points() -> set[int]:
        return {t.user_attrs["point"] for t in study.get_trials(deepcopy=False)
                if "point" in t.user_attrs and _is_done(t)}

    def claimed_points() -> set[int]:
        return {t.user_attrs["point"] for t in study.get_trials(deepcopy=False)
                if "point" in t.user_attrs and t.state in (TrialState.RUNNING, TrialState.WAITING)}

    def objective(trial: optuna.Trial) -> float:
        point_index = trial.user_attrs.get("point")
        if point_index is None:  # not an enqueued trial: take a point nobody finished or holds
            free = sorted(set(range(len(points))) - finished_points() - claimed_points())
            if not free:
                trial.set_user_attr("idle", True)
                raise optuna.TrialPruned()
            point_index = free[0]
            trial.set_user_attr("point", point_index)
        point = points[point_index]
        spec = NetworkSpec.from_dict(point["spec"])
        for key, value in point["attrs"].items():
            trial.set_user_attr(key, value)
        _record(trial, spec)
        measured = _train_repeats(trial, spec, data, config, lambda acc: acc)
        _record(trial, spec, measured)
        return measured.mean

    def describe_trial(trial: FrozenTrial) -> str:
        return f"{describe(trial.user_attrs)} acc {trial.user_attrs.get('accuracy', float('nan')):.4f}"

    bar = _Progress(label, len(points), len(finished_points()), progress, describe_trial)
    try:
        while True:
            finished = finished_points()
            bar.sync(len(finished))  # count points other workers finished too
            if len(finished) >= len(points):
                break
            trials = study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            free = set(range(len(points))) - finished - claimed_points()
            if waiting or free:
                study.optimize(objective, n_trials=1, catch=(NonFiniteLossError,), callbacks=[bar])
            elif _running_elsewhere(study, config.search.grace_s):
                time.sleep(config.search.heartbeat_s)
    finally:
        bar.close()
    return study


def grid_table(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per grid point with its best finished trial (completed first)."""
    rows: dict[int, dict[str, Any]] = {}
    for trial in study.get_trials(deepcopy=False):
        attrs = trial.user_attrs
        if "point" not in attrs or trial.state not in _DONE or attrs.get("idle"):
            continue
        row = {"point": attrs["point"], "trial": trial.number, "state": trial.state.name.lower(),
               "alpha": attrs.get("alpha"), "beta": attrs.get("beta"), "gamma": attrs.get("gamma"),
               "nominal_ratio": attrs.get("nominal_ratio"), "achieved_ratio": attrs.get("achieved_ratio"),
               "resolution": attrs.get("resolution"), "macs": attrs.get("macs"), "params": attrs.get("params"),
               "accuracy": attrs.get("accuracy", trial.value if trial.state == TrialState.COMPLETE else None),
               "accuracy_std": attrs.get("accuracy_std"), "train_loss": attrs.get("train_loss"),
               "images_per_s": attrs.get("images_per_s")}
        if attrs["point"] not in rows or (row["state"] == "complete" and rows[attrs["point"]]["state"] != "complete"):
            rows[attrs["point"]] = row
    return [rows[k] for k in sorted(rows)]


def choose_coefficients(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The winning grid point (highest mean accuracy among completed points) and how clearly it won."""
    complete = sorted((r for r in rows if r["state"] == "complete" and r["accuracy"] is not None),
                      key=lambda r: (-r["accuracy"], r["point"]))
    if not complete:
        raise ValueError("no grid point completed (all pruned or failed); lower the pruning or check the data")
    winner = complete[0]
    summary = {"winner": winner, "runner_up": complete[1] if len(complete) > 1 else None}
    if summary["runner_up"] is not None:
        gap = winner["accuracy"] - summary["runner_up"]["accuracy"]
        spread = max(winner["accuracy_std"] or 0.0, summary["runner_up"]["accuracy_std"] or 0.0)
        summary["gap"] = gap
        summary["spread"] = spread
        summary["separated"] = bool(gap > spread) if spread > 0 else None
    return summary


def is_finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


__all__ = ["choose_coefficients", "grid_points", "grid_table", "open_storage", "open_study", "prepare_grid",
           "prepare_points", "proxy_baseline", "run_baseline", "run_grid", "train_points"]
