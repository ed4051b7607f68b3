"""Optuna storages and studies for the search: open once, refuse a study made with other settings.

Every stage of a study is its own Optuna study ``<name>:<stage>`` in one storage. Heartbeats fail trials of
killed processes, and Optuna's retry callback re-enqueues them.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from scaling_search.errors import UserError
from scaling_search.search.config import StudyConfig, mask_credentials

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def is_done(trial: FrozenTrial) -> bool:
    """Finished for good: completed, pruned, or failed by its own numbers (a NaN loss is not retried)."""
    return trial.state in DONE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other storages and in-memory SQLite)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):]).expanduser()
    return None


def open_storage(config: StudyConfig) -> RDBStorage:
    """The study's RDB storage with heartbeats (stale trials are failed and retried); one-line errors."""
    url = config.storage
    engine_kwargs: dict[str, Any] = {}
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_path(path, create=True)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    # Optuna 4.9 renamed the stale-trial callback; heartbeats are flagged experimental but are its documented
    # way to recover trials of killed processes.
    new_name = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
    key = "heartbeat_stale_trial_callback" if new_name else "failed_trial_callback"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _rdb_storage(url, "open", engine_kwargs=engine_kwargs, heartbeat_interval=config.search.heartbeat_s,
                            grace_period=config.search.grace_s, **{key: retry_callback()})


def _rdb_storage(url: str, verb: str, **kwargs: Any) -> RDBStorage:
    """Optuna's RDBStorage for ``url``; a missing driver or an unreachable database is one line, password masked."""
    try:
        return RDBStorage(url, **kwargs)
    except ImportError as error:  # the URL names a database whose Python driver is not installed
        raise UserError(f"storage {mask_credentials(url)!r} needs the Python module {_missing_module(error)!r}, "
                        "which is not installed; pip install it (PostgreSQL: psycopg2-binary)") from None
    except Exception as error:  # SQLAlchemy raises many kinds; all mean the same to the user
        reason = mask_credentials(str(error).splitlines()[0][:200])
        raise UserError(f"cannot {verb} storage {mask_credentials(url)!r} ({reason}); check the URL") from None


def _missing_module(error: ImportError) -> str:
    """The module an ImportError is about (SQLAlchemy re-raises driver errors without ``name``)."""
    found = re.search(r"No module named '([^']+)'", str(error))
    return error.name or (found.group(1) if found else str(error))


def would_create(path: Path) -> None:
    """Refuse a SQLite path whose file could not be created, without creating anything."""
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a file such as sqlite:///{path}/study.db")
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"cannot create the storage folder {path.parent}: {ancestor} is a file; choose another "
                        "--storage")
    if not os.access(ancestor, os.W_OK):
        raise UserError(f"cannot create the storage under {ancestor}: not writable; choose another --storage")


def check_sqlite_path(path: Path, create: bool) -> None:
    """A SQLite storage file must be a database (or, with ``create``, creatable in a writable folder)."""
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a file such as sqlite:///{path}/study.db")
    if path.exists():
        with open(path, "rb") as handle:
            header = handle.read(16)
        if header != b"SQLite format 3\x00":
            raise UserError(f"storage file {path} is not a SQLite database (empty or another format); "
                            "give another --storage or --study")
        return
    if not create:
        raise UserError(f"no study database at {path}; give --storage or run the study first")
    would_create(path)  # the nearest existing folder is a writable folder
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the storage folder {path.parent} ({error.strerror}); choose another "
                        "--storage") from None


def retry_callback() -> Callable[[optuna.Study, FrozenTrial], None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
        return (retry or optuna.storages.RetryFailedTrialCallback)(max_retry=3)


def _pruner(name: str, epochs: int) -> optuna.pruners.BasePruner:
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def normalise(value: Any) -> Any:
    """``value`` as it reads back from a storage (tuples become lists)."""
    return json.loads(json.dumps(value))


def check_stored_settings(config: StudyConfig, storage: RDBStorage, study_name: str) -> None:
    """Refuse (one line, nothing written) when ``study_name`` exists with other result-relevant settings."""
    settings = normalise(config.result_settings())
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return
    saved = existing.user_attrs.get("settings")
    if saved is not None and saved != settings:
        changed = sorted(
            f"{table}.{key}" for table in settings for key in settings[table]
            if (saved.get(table) or {}).get(key) != settings[table][key]
        ) or sorted(set(saved) ^ set(settings))
        raise UserError(
            f"study {config.name!r} in {mask_credentials(config.storage)} was created with different settings "
            f"({', '.join(changed)}); rerun with the original flags or choose a new --study name")


def check_existing(config: StudyConfig, stages: tuple[str, ...] = ("baseline", "grid")) -> None:
    """Before any work: the storage can be reached (or a SQLite file made), and the stored stages were made
    with these settings. Creates no SQLite file or folder."""
    path = sqlite_path(config.storage)
    if path is not None and not path.exists():
        would_create(path)
        return  # nothing stored yet, and nothing to create before the run starts
    storage = open_storage(config)
    for stage in stages:
        check_stored_settings(config, storage, f"{config.name}:{stage}")


def open_study(config: StudyConfig, storage: RDBStorage, stage: str,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create or load ``<name>:<stage>``; refuse (one line, study untouched) if it was made with other settings."""
    study_name = f"{config.name}:{stage}"
    check_stored_settings(config, storage, study_name)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=sampler or optuna.samplers.RandomSampler(seed=config.search.seed),
        pruner=_pruner(config.search.pruner, config.train.epochs),
    )
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", normalise(config.result_settings()))
    return study


def open_for_reading(url: str) -> optuna.storages.BaseStorage:
    """An existing storage opened to read a study (``report``): never creates a file; one-line errors."""
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_path(path, create=False)
    return _rdb_storage(url, "read", skip_table_creation=path is not None)


def load_stage(config: StudyConfig, stage: str) -> optuna.Study | None:
    """An existing stage study, or None (creates nothing)."""
    path = sqlite_path(config.storage)
    if path is not None and not path.exists():
        return None
    try:
        return optuna.load_study(study_name=f"{config.name}:{stage}", storage=open_storage(config))
    except KeyError:
        return None


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
        retry_callback()(study, storage.get_trial(trial._trial_id))


def running_elsewhere(study: optuna.Study, grace_s: float) -> bool:
    """Fail stale trials (re-enqueueing them); True if some trial is still RUNNING in a live process."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    _fail_trials_without_heartbeat(study, grace_s)
    return any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


__all__ = ["DONE", "check_existing", "check_sqlite_path", "open_for_reading", "check_stored_settings", "is_done", "load_stage", "normalise", "open_storage",
           "open_study", "retry_callback", "running_elsewhere", "sqlite_path"]
