"""Optuna storages and studies for the search: open once, refuse a study made with other settings.

Every stage of a study is its own Optuna study ``<name>:<stage>`` in one storage: any Optuna RDB URL (SQLite,
PostgreSQL through the ``postgres`` extra, MySQL, ...) or a journal file (``journal:PATH`` or a path ending in
``.log``: Optuna's JournalStorage, for a shared filesystem without a database server). Heartbeats
(:mod:`scaling_search.search.trial_claims`) fail trials of killed processes, which are retried.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from scaling_search.atomic import check_writable_folder
from scaling_search.errors import UserError, no_room_left
from scaling_search.settings.study import StudyConfig, mask_credentials
from scaling_search.search.trial_claims import fail_stale_trials, process_gone, worker_id

# Errors of workers creating the same schema at the same moment (SQLite, PostgreSQL): the loser tries again.
SCHEMA_RACES = ("already exists", "UNIQUE constraint failed", "UniqueViolation", "duplicate key")
# The Python driver each database's URL needs, and the extra that installs it.
DRIVER_EXTRAS = {"psycopg": "postgres", "psycopg2": "postgres"}

DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def is_done(trial: FrozenTrial) -> bool:
    """Finished for good: completed, pruned, or failed by its own numbers (a NaN loss is not retried)."""
    return trial.state in DONE or (trial.state == TrialState.FAIL and "error" in trial.user_attrs)


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (None for other storages and in-memory SQLite)."""
    if url.startswith("sqlite:///") and ":memory:" not in url:
        return Path(url[len("sqlite:///"):].partition("?")[0]).expanduser()
    return None


def check_sqlite_url(url: str) -> None:
    """A SQLite storage is a plain path: the tool makes the file itself (whole or not at all) and writes every
    trial, so a URL's options (``?mode=ro``, ``uri=true``) would at best make it fail after training."""
    if url.startswith("sqlite:///") and "?" in url:
        raise UserError(f"storage {url!r}: options after '?' are not supported on a SQLite URL; give a plain path "
                        "such as sqlite:///studies/<study>.db")


def journal_path(url: str) -> Path | None:
    """The journal file of a ``journal:PATH`` storage or of a plain path ending in ``.log`` (else None)."""
    if url.startswith("journal:"):
        return Path(url[len("journal:"):]).expanduser()
    if "://" not in url and url.endswith(".log"):
        return Path(url).expanduser()
    return None


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal storage lives in (None for database servers and in-memory SQLite)."""
    return sqlite_path(url) or journal_path(url)


def open_storage(config: StudyConfig) -> BaseStorage:
    """The study's storage; one-line errors naming the problem (password masked) and the fix."""
    url = config.storage
    journal = journal_path(url)
    if journal is not None:
        check_journal_path(journal, create=True)
        return _journal_storage(journal)
    check_sqlite_url(url)
    path = sqlite_path(url)
    if path is None:
        if url.startswith("sqlite:") and ":memory:" in url:
            raise UserError(f"{url} keeps nothing once the command ends (no resuming, no report, no workers); give "
                            "a file such as sqlite:///studies/<study>.db")
        return _rdb_storage(url, "open")
    if path.is_file() and path.stat().st_size == 0:
        path.unlink()  # an empty file holds no study: left by a process killed while it made the file
    check_sqlite_path(path, create=True)
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"storage file {path} is read-only; the study's trials are written to it: make it writable "
                        "or give another --storage ('report' and 'studies' only read it)")
    if not path.exists():
        _create_sqlite(path)
    # The schema is checked (Optuna's set-up opens nested connections, which immediate transactions would
    # deadlock), then the storage the study uses is opened.
    _rdb_storage(url, "open", engine_kwargs={"connect_args": {"timeout": 60}})
    return _rdb_storage(url, "open", engine_kwargs=sqlite_engine_kwargs(), skip_table_creation=True,
                        skip_compatibility_check=True)


def _create_sqlite(path: Path) -> None:
    """A new SQLite storage appears whole or not at all: Optuna's schema is made in a temporary file beside it,
    which is then hard-linked into place (``os.link`` fails where another process linked its file first, which
    is then used). A kill at any moment leaves no storage, or a complete one, never an empty file or half a
    schema."""
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*.creating"):  # a creator's ("host:pid"), removed once it is dead
        owner = stale.name[len(prefix):-len(".creating")].rpartition(".")[0]
        if process_gone(owner):  # never another machine's, whose creation may still be running
            stale.unlink(missing_ok=True)
    temporary = path.with_name(f"{prefix}{worker_id()}.{random.randrange(1 << 30)}.creating")
    try:
        _rdb_storage(f"sqlite:///{temporary}", "open", engine_kwargs={"connect_args": {"timeout": 60}})
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sqlite_engine_kwargs() -> dict[str, Any]:
    """SQLite shared by several processes, without "database is locked" errors.

    pysqlite begins a transaction lazily, at its first write: two processes that both read, then both write, hold
    a shared lock each and wait for the other (SQLite answers one of them "database is locked" at once, whatever
    the busy timeout). Two workers claiming the same waiting trial do exactly that. Here every transaction
    begins with ``BEGIN IMMEDIATE`` (SQLAlchemy's recipe for pysqlite: no implicit BEGIN, an explicit one on the
    ``begin`` event), so one process at a time holds the database and the others wait up to the timeout."""
    _begin_sqlite_transactions_immediately()
    return {"connect_args": {"timeout": 60, "isolation_level": None}, "execution_options": {IMMEDIATE: True}}


IMMEDIATE = "scaling_search_begin_immediate"  # the execution option of the engines made by sqlite_engine_kwargs


def _begin_sqlite_transactions_immediately() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if not event.contains(Engine, "begin", _begin_immediately):
        event.listen(Engine, "begin", _begin_immediately)  # acts on engines with the option only


def _begin_immediately(connection: Any) -> None:
    if connection.get_execution_options().get(IMMEDIATE):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _journal_storage(path: Path) -> JournalStorage:
    from optuna.storages.journal import JournalFileBackend

    if importlib.util.find_spec("fcntl") is None:  # Windows: Optuna's default lock, a file made atomically and
        return JournalStorage(JournalFileBackend(str(path)))  # removed by a waiter after a grace period
    return JournalStorage(JournalFileBackend(str(path), lock_obj=_FlockJournalLock(Path(f"{path}.flock"))))


class _FlockJournalLock:
    """The journal's writers take turns through ``flock(2)`` on a file beside it, which the kernel releases when
    its holder dies. Optuna's own locks are files a writer makes and removes: one killed while holding it leaves
    the file, and every waiter removes it after a 30 s grace period, so two waiters can each remove the other's
    new lock and both write (seen as "did not possess lock" after a worker was killed). On NFS, Linux maps
    ``flock`` onto the server's byte-range locks (NFSv4, or lockd for v3)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._handle: Any = None

    def acquire(self) -> bool:
        import fcntl

        handle = open(self._path, "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return True

    def release(self) -> None:
        import fcntl

        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def _rdb_storage(url: str, verb: str, **kwargs: Any) -> RDBStorage:
    """Optuna's RDBStorage for ``url``. Workers that create the schema of a fresh database at the same moment
    collide (a duplicate table, type or version row); the loser waits a moment and tries again, and finds it
    made. A missing driver or an unreachable database is one line, password masked."""
    for attempt in range(8):
        try:
            return RDBStorage(url, **kwargs)
        except ImportError as error:  # the URL names a database whose Python driver is not installed
            module = _missing_module(error)
            extra = DRIVER_EXTRAS.get(module.split(".")[0])
            fix = f'pip install "scaling-search[{extra}]"' if extra else f"pip install {module.split('.')[0]}"
            raise UserError(f"storage {mask_credentials(url)!r} needs the Python module {module!r}, which is not "
                            f"installed: {fix}") from None
        except Exception as error:  # SQLAlchemy raises many kinds; all mean the same to the user
            if no_room_left(error):
                raise  # the machine's state, not the URL's: the CLI says so in one line
            if attempt < 7 and any(race in str(error) for race in SCHEMA_RACES):
                time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
                continue
            reason = mask_credentials(str(error).splitlines()[0][:200])
            raise UserError(f"cannot {verb} storage {mask_credentials(url)!r} ({reason}); check the URL, and that "
                            "the database server is running") from None
    raise AssertionError("unreachable")


def _missing_module(error: ImportError) -> str:
    """The module an ImportError is about. Optuna re-raises a driver's ImportError as its own (no ``name``, the
    driver's error as the cause); SQLAlchemy's name the module only in the message."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ImportError):
            found = re.search(r"No module named '([^']+)'", str(cause))
            if cause.name or found:
                return cause.name or found.group(1)  # type: ignore[union-attr]
        cause = cause.__cause__ or cause.__context__
    return str(error)


def would_create(path: Path) -> None:
    """Refuse a SQLite path whose file could not be created, without creating anything."""
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a file such as sqlite:///{path}/study.db")
    check_writable_folder(path.parent, "the --storage folder")


def check_sqlite_path(path: Path, create: bool) -> None:
    """A SQLite storage file must be a database (or, with ``create``, creatable in a writable folder)."""
    _check_storage_file(path, create, f"sqlite:///{path}/study.db", "no study database",
                        lambda head: head[:16] == b"SQLite format 3\x00", "a SQLite database (empty or another format)")


def check_journal_path(path: Path, create: bool) -> None:
    """A journal storage file must hold Optuna's log (or, with ``create``, be creatable in a writable folder)."""
    _check_storage_file(path, create, f"journal:{path}/study.log", "no study journal",
                        lambda head: head[:1] in (b"", b"{"), "an Optuna journal (it does not hold JSON lines)")


def _check_storage_file(path: Path, create: bool, example: str, missing: str, valid: Callable[[bytes], bool],
                        kind: str) -> None:
    if path.is_dir():
        raise UserError(f"storage path {path} is a folder; give a file such as {example}")
    if path.exists():
        with open(path, "rb") as handle:
            head = handle.read(16)
        if not valid(head):
            raise UserError(f"storage file {path} is not {kind}; give another --storage or --study")
        return
    if not create:
        raise UserError(f"{missing} at {path}; give --storage or run the study first")
    would_create(path)  # the nearest existing folder is a writable folder
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the storage folder {path.parent} ({error.strerror}); choose another "
                        "--storage") from None


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


#: Settings that belong to each stage rather than to the study: a stage records its own (a comparison may train
#: two seeds per point on a study whose grid trained one) and is refused only where it differs itself.
STAGE_SETTINGS = {"search": ("repeats",)}


def _without_stage_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {table: {k: v for k, v in values.items() if k not in STAGE_SETTINGS.get(table, ())}
            for table, values in settings.items()}


def check_stored_settings(config: StudyConfig, storage: BaseStorage, study_name: str) -> None:
    """Refuse (one line, nothing written) when ``study_name`` exists with other result-relevant settings (a
    stage's own seeds aside: :data:`STAGE_SETTINGS`)."""
    settings = _without_stage_settings(normalise(config.result_settings()))
    try:
        existing = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        return
    saved = existing.user_attrs.get("settings")
    if saved is not None:
        saved = _without_stage_settings(saved)
    if saved is not None and saved != settings:
        changed = sorted(  # each with its stored and its given value: a preset's new default is named too
            f"{table}.{key}: {(saved.get(table) or {}).get(key)!r} stored, {settings[table][key]!r} given"
            for table in settings for key in settings[table]
            if (saved.get(table) or {}).get(key) != settings[table][key]
        ) or sorted(set(saved) ^ set(settings))
        raise UserError(
            f"study {config.name!r} in {mask_credentials(config.storage)} was created with different settings "
            f"({'; '.join(changed)}); rerun with the original flags or choose a new --study name")


def check_existing(config: StudyConfig, stages: tuple[str, ...] = ("baseline", "grid"),
                   seeded: tuple[str, ...] = ()) -> None:
    """Before any work: the storage can be reached (or a SQLite file made), the stored stages were made with
    these settings, and the ``seeded`` ones (those the command trains further) with these seeds per point.
    Creates no SQLite file or folder."""
    path = storage_file(config.storage)
    if path is not None and not path.exists():
        would_create(path)
        return  # nothing stored yet, and nothing to create before the run starts
    storage = open_storage(config)
    for stage in stages:
        check_stored_settings(config, storage, f"{config.name}:{stage}")
    for stage in seeded:
        try:
            study = optuna.load_study(study_name=f"{config.name}:{stage}", storage=storage)
        except KeyError:
            continue
        check_stage_repeats(config, study, stage)


def check_stage_repeats(config: StudyConfig, study: optuna.Study, stage: str) -> None:
    """Refuse a stage trained with other seeds per point than ``config`` asks for (a stage's own setting)."""
    stored = ((study.user_attrs.get("settings") or {}).get("search") or {}).get("repeats")
    if stored not in (None, config.search.repeats):
        raise UserError(f"stage {stage} of study {config.name!r} was trained with {stored} seed(s) per point; "
                        f"rerun it with --repeats {stored}, or choose a new --study name for {config.search.repeats}")


def open_study(config: StudyConfig, storage: BaseStorage, stage: str,
               sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    """Create or load ``<name>:<stage>``; refuse (one line, study untouched) if it was made with other settings."""
    return create_or_load(config, storage, stage, sampler)[0]


def create_or_load(config: StudyConfig, storage: BaseStorage, stage: str,
                   sampler: optuna.samplers.BaseSampler | None = None,
                   metric: str = "proxy_val_top1", seeded: bool = True) -> tuple[optuna.Study, bool]:
    """``(study, created)``: ``created`` is True in exactly one of the processes that open a new stage at the
    same moment (the storage refuses a second study of the same name), so that one alone fills it."""
    study_name = f"{config.name}:{stage}"
    check_stored_settings(config, storage, study_name)
    sampler = sampler or optuna.samplers.RandomSampler(seed=config.search.seed)
    pruner = _pruner(config.search.pruner, config.train.epochs)
    try:
        study = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", sampler=sampler,
                                    pruner=pruner)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)
        created = False
    if seeded and not created:
        check_stage_repeats(config, study, stage)
    if "settings" not in study.user_attrs:
        study.set_user_attr("settings", normalise(config.result_settings()))
    if study.metric_names is None:  # Optuna's plots and optuna-dashboard show it instead of "Objective 0"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([metric])
    return study, created


def open_for_reading(url: str) -> BaseStorage:
    """An existing storage opened to read a study (``report``): never creates a file; one-line errors."""
    journal = journal_path(url)
    if journal is not None:
        check_journal_path(journal, create=False)
        return _journal_storage(journal)
    check_sqlite_url(url)
    path = sqlite_path(url)
    if path is None:
        return _rdb_storage(url, "read")
    check_sqlite_path(path, create=False)
    _rdb_storage(url, "read", skip_table_creation=True, engine_kwargs={"connect_args": {"timeout": 60}})  # checks
    return _rdb_storage(url, "read", skip_table_creation=True, skip_compatibility_check=True,
                        engine_kwargs=sqlite_engine_kwargs())


def load_stage(config: StudyConfig, stage: str) -> optuna.Study | None:
    """An existing stage study, or None (creates nothing)."""
    path = storage_file(config.storage)
    if path is not None and not path.exists():
        return None
    try:
        return optuna.load_study(study_name=f"{config.name}:{stage}", storage=open_storage(config))
    except KeyError:
        return None


def running_elsewhere(study: optuna.Study, storage: BaseStorage, grace_s: float, retry_failed: bool = True) -> bool:
    """Fail trials of dead processes (re-enqueueing them with ``retry_failed``); True if some trial is still
    RUNNING in a live one."""
    fail_stale_trials(study, storage, grace_s, retry_failed)
    return any(t.state == TrialState.RUNNING for t in study.get_trials(deepcopy=False))


__all__ = ["DONE", "check_existing", "check_journal_path", "check_sqlite_path", "check_stored_settings",
           "STAGE_SETTINGS", "check_stage_repeats", "create_or_load", "is_done", "journal_path", "load_stage", "normalise", "open_for_reading", "open_storage",
           "open_study", "running_elsewhere", "sqlite_path", "storage_file"]
