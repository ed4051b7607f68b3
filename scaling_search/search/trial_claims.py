"""What Optuna lacks for a shared work queue, built on its public storage API only: claim a waiting trial
without creating one, keep a heartbeat on every storage, and fail a dead process's trial exactly once.

* ``study.optimize`` and ``study.ask`` pop a WAITING trial or, when another worker took the last one first,
  create a fresh trial the sampler fills: a placeholder the queue would have to end somehow. :func:`claim_waiting`
  only ever takes an enqueued trial, through ``BaseStorage.set_trial_state_values(trial_id, RUNNING)``, which
  every storage makes atomic (it returns False when another process took the trial; RDB storages lock the row,
  the journal orders the log).
* Optuna's heartbeat (``RDBStorage(heartbeat_interval=...)`` and ``fail_stale_trials``) exists for RDB storages
  only, and a trial killed between becoming RUNNING and its first beat is never seen as stale. :class:`Heartbeat`
  writes a user attribute instead (any storage), and :func:`fail_stale_trials` also fails a trial whose process,
  on this machine, no longer exists, at once instead of after the grace period.
* Failing a stale trial goes through the same atomic storage call, so when several workers see it at once only
  the one whose update lands re-enqueues it (:func:`retry`: same params, same attributes).

Clocks: a heartbeat is the writer's ``time.time()``, judged by the reader's clock, so machines sharing a study
need clocks within the grace period of each other (NTP keeps them within milliseconds).

``tests/test_trial_claims.py`` checks the storage behaviour this relies on against the installed Optuna, on
SQLite and a journal file, and fails loudly if it changes.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

BEAT = "heartbeat_at"  # user attribute: the last time (time.time()) the trial's process was alive
OWNER = "worker"  # user attribute: "host:pid" of the process running the trial
MAX_RETRY = 3  # retries of one trial by the workers that find it dead (a queue re-enqueues a point left with none)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _trial_id(storage: BaseStorage, study: optuna.Study, number: int) -> int:
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), number)


def claim_waiting(study: optuna.Study, storage: BaseStorage) -> optuna.Trial | None:
    """Take one WAITING trial of ``study`` for this process (RUNNING, owned by it), or None if none is left.

    Never creates a trial. The returned :class:`optuna.Trial` is told like one from ``study.ask``."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = _trial_id(storage, study, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                return optuna.Trial(study, trial_id)
        except RuntimeError:  # finished meanwhile (e.g. failed by a worker that saw it stale)
            continue
    return None


class Heartbeat:
    """While entered, the trial's :data:`BEAT` attribute is refreshed every ``interval_s`` from a thread; it
    also records the :data:`OWNER` so a process on the same machine can tell the owner died."""

    def __init__(self, trial: optuna.Trial, interval_s: float) -> None:
        self.trial, self.interval_s = trial, interval_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.trial.set_user_attr(OWNER, worker_id())
        self.trial.set_user_attr(BEAT, time.time())
        self.thread.start()
        return self

    def _beat(self) -> None:
        while not self.stop.wait(self.interval_s):
            try:
                self.trial.set_user_attr(BEAT, time.time())
            except Exception:  # the trial finished meanwhile, or the storage hiccuped: the next beat tries again
                if self.stop.is_set():
                    return

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop.set()
        self.thread.join()


def with_heartbeat(objective: Callable[[optuna.Trial], Any], interval_s: float) -> Callable[[optuna.Trial], Any]:
    """``objective`` run inside a :class:`Heartbeat` (for ``study.optimize``)."""

    def beating(trial: optuna.Trial) -> Any:
        with Heartbeat(trial, interval_s):
            return objective(trial)

    return beating


def retry(study: optuna.Study, storage: BaseStorage, number: int) -> None:
    """Enqueue a copy of failed trial ``number``: its params and attributes (not its owner's heartbeat), with
    ``retry_of`` and ``retry_history`` as Optuna's retry callbacks name them; at most :data:`MAX_RETRY` times
    per original trial. (Optuna's ``RetryFailedTrialCallback`` does this too, but is deprecated since 4.9 in
    favour of one that only runs inside RDB heartbeats.)"""
    failed = storage.get_trial(_trial_id(storage, study, number))
    history = [*failed.user_attrs.get("retry_history", []), number]
    if len(history) > MAX_RETRY:
        return
    attrs = {key: value for key, value in failed.user_attrs.items() if key not in (BEAT, OWNER)}
    study.enqueue_trial(failed.params, user_attrs={**attrs, "retry_of": number, "retry_history": history},
                        skip_if_exists=False)


def run_claimed(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial,
                objective: Callable[[optuna.Trial], float], interval_s: float,
                catch: tuple[type[Exception], ...]) -> FrozenTrial:
    """Run a claimed trial as ``study.optimize`` would (value, pruning, failure by a ``catch`` error), with a
    heartbeat; an interruption or a bug fails it, enqueues its retry for the next run, and propagates."""
    try:
        with Heartbeat(trial, interval_s):
            value = objective(trial)
    except optuna.TrialPruned:
        return _tell(study, storage, trial, state=TrialState.PRUNED)
    except catch:
        return _tell(study, storage, trial, state=TrialState.FAIL)
    except BaseException:
        if _tell(study, storage, trial, state=TrialState.FAIL).state == TrialState.FAIL:
            retry(study, storage, trial.number)
        raise
    return _tell(study, storage, trial, value)


def _tell(study: optuna.Study, storage: BaseStorage, trial: optuna.Trial, value: float | None = None,
          state: TrialState | None = None) -> FrozenTrial:
    """``study.tell``, unless another worker failed the trial meanwhile (its heartbeat came later than the grace
    period on a loaded machine): then the trial stays failed, its retry runs elsewhere, and this result is
    dropped with a warning rather than a crash."""
    frozen = storage.get_trial(_trial_id(storage, study, trial.number))
    if frozen.state.is_finished():
        warnings.warn(f"trial {trial.number} was failed by another worker while this one ran it (its heartbeat "
                      "came late); its retry runs instead", RuntimeWarning, stacklevel=2)
        return frozen
    return study.tell(trial, value, state=state)


def process_gone(owner: str) -> bool:
    """True if ``owner`` ("host:pid", :func:`worker_id`) is a process of this machine that no longer exists;
    False for a live one and for any process of another machine (their liveness is told by heartbeats)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _owner_died(trial: FrozenTrial) -> bool:
    """True if the trial's recorded owner is a process of this machine that no longer exists. An owner copied
    from an earlier attempt (a retried trial before its first beat) does not count."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    if float(trial.user_attrs.get(BEAT, 0.0)) < started:
        return False
    return process_gone(str(trial.user_attrs.get(OWNER, "")))


def last_alive(trial: FrozenTrial) -> float:
    """When the trial's process last showed it was alive: its last beat, or its start before the first."""
    started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
    return max(float(trial.user_attrs.get(BEAT, 0.0)), started)


def fail_stale_trials(study: optuna.Study, storage: BaseStorage, grace_s: float, retry_failed: bool = True
                      ) -> list[int]:
    """Fail every RUNNING trial whose process died (silent for ``grace_s``, or gone from this machine) and, with
    ``retry_failed``, re-enqueue it once; returns the numbers this process failed. Safe to run in every worker
    at once."""
    failed = []
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if now - last_alive(trial) <= grace_s and not _owner_died(trial):
            continue
        trial_id = _trial_id(storage, study, trial.number)
        try:
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except RuntimeError:  # finished by its owner, or failed by another worker first
            continue
        except Exception as error:  # a locked SQLite file in a tie: the other worker won
            if type(error).__name__ != "OperationalError":
                raise
            continue
        failed.append(trial.number)
        if retry_failed:
            retry(study, storage, trial.number)
    return failed


__all__ = ["BEAT", "Heartbeat", "MAX_RETRY", "OWNER", "claim_waiting", "fail_stale_trials", "last_alive",
           "process_gone", "retry", "run_claimed", "with_heartbeat", "worker_id"]
