"""The queue's use of Optuna (scaling_search/search/trial_claims.py), checked against the installed Optuna on a SQLite
file and a journal file. These tests name what the adapter relies on; when Optuna changes it, they fail here."""

import multiprocessing
import os
import socket
import time

import optuna
import pytest
from optuna.trial import TrialState

from scaling_search.errors import UserError
from scaling_search.search import storage as storages
from scaling_search.settings.study import load_study_config
from scaling_search.search.trial_claims import (BEAT, OWNER, Heartbeat, claim_waiting, fail_stale_trials, run_claimed)


@pytest.fixture(params=["sqlite", "journal"])
def url(request, tmp_path):
    return f"sqlite:///{tmp_path}/claims.db" if request.param == "sqlite" else f"journal:{tmp_path}/claims.log"


def _opened(url):
    """A study on ``url`` and the storage under it, as a worker process opens them."""
    config = load_study_config("smoke", {}, "claims", url)
    storage = storages.open_storage(config)
    return storages.open_study(config, storage, "grid"), storage


def test_the_url_picks_the_storage(tmp_path):
    assert storages.journal_path("journal:runs/a.log").name == "a.log"
    assert storages.journal_path(f"{tmp_path}/b.log").name == "b.log"
    assert storages.journal_path("sqlite:///a.log") is None and storages.journal_path("postgresql://h/db") is None
    config = load_study_config("smoke", {}, "kinds", f"{tmp_path}/shared/kinds.log")
    assert isinstance(storages.open_storage(config), optuna.storages.JournalStorage)
    assert (tmp_path / "shared" / "kinds.log").exists()


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    (tmp_path / "notes.log").write_text("not json\n")
    config = load_study_config("smoke", {}, "kinds", f"{tmp_path}/notes.log")
    with pytest.raises(UserError, match="not an Optuna journal"):
        storages.open_storage(config)


def test_a_missing_driver_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    config = load_study_config("smoke", {}, "pg", "postgresql://me:secret@localhost:1/db")
    with pytest.raises(UserError) as error:
        storages.open_storage(config)
    assert 'pip install "scaling-search[postgres]"' in str(error.value) and "secret" not in str(error.value)


def test_claiming_takes_only_enqueued_trials_and_never_creates_one(url):
    study, storage = _opened(url)
    for point in range(2):
        study.enqueue_trial({"alpha": 1.0 + point}, user_attrs={"point": point})
    claimed = [claim_waiting(study, storage) for _ in range(3)]
    assert [t.user_attrs["point"] for t in claimed[:2]] == [0, 1] and claimed[2] is None
    assert len(study.get_trials()) == 2
    assert {t.state for t in study.get_trials()} == {TrialState.RUNNING}


def test_a_waiting_trial_goes_to_one_process_only(url):
    """What the claim relies on: setting RUNNING on a trial another process already took returns False."""
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.0}, user_attrs={"point": 0})
    _, other = _opened(url)  # a second process's storage object on the same file
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, 0)
    assert storage.set_trial_state_values(trial_id, TrialState.RUNNING) is True
    assert other.set_trial_state_values(trial_id, TrialState.RUNNING) is False


def test_a_silent_trial_is_failed_and_retried_exactly_once(url):
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.2}, user_attrs={"point": 3})
    trial = claim_waiting(study, storage)  # RUNNING; its process "dies" before any heartbeat
    assert trial.suggest_float("alpha", 1.0, 2.0) == 1.2  # its params were recorded before it died
    other_study, other = _opened(url)
    assert fail_stale_trials(study, storage, grace_s=0.0) == [trial.number]
    assert fail_stale_trials(other_study, other, grace_s=0.0) == []  # already failed: no second retry
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trial.number] == TrialState.FAIL
    [retried] = study.get_trials(states=(TrialState.WAITING,))
    assert retried.user_attrs["point"] == 3
    assert retried.user_attrs["retry_of"] == trial.number and BEAT not in retried.user_attrs
    assert claim_waiting(study, storage).suggest_float("alpha", 1.0, 2.0) == 1.2  # exactly its params again


def test_retries_stop_after_max_retry(url):
    from scaling_search.search.trial_claims import MAX_RETRY

    study, storage = _opened(url)
    study.enqueue_trial({}, user_attrs={"point": 0})
    for _ in range(MAX_RETRY + 1):
        claim_waiting(study, storage)
        fail_stale_trials(study, storage, grace_s=0.0)
    assert claim_waiting(study, storage) is None
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * (MAX_RETRY + 1)


def test_a_point_is_enqueued_again_only_when_its_retries_ran_out_and_never_twice(url):
    """The queue's last resort (queue._enqueue_again) decides on one fresh read: a point another worker finished
    is not enqueued again, and a point whose trial was failed a moment ago without a retry yet is left to the
    worker that failed it (failing and retrying are two storage calls; a CI run trained such a point twice)."""
    from scaling_search.search.queue import _enqueue_again

    study, storage = _opened(url)
    points = [{"params": {"alpha": 1.0 + index / 10}} for index in range(3)]
    for index in range(3):
        study.enqueue_trial(points[index]["params"], user_attrs={"point": index})
    done = claim_waiting(study, storage)
    study.tell(done, 0.5)  # point 0 finished
    dying = claim_waiting(study, storage)  # point 1: its worker dies, another fails it but has not retried yet
    storage.set_trial_state_values(dying._trial_id, TrialState.FAIL)
    claim_waiting(study, storage)  # point 2 runs
    assert _enqueue_again(study, points, grace_s=60.0) == 0  # 0 finished, 1 settling, 2 held
    assert [t.state for t in study.get_trials()].count(TrialState.WAITING) == 0
    assert _enqueue_again(study, points, grace_s=0.0) == 1  # no retry came: point 1 again, and only it
    [again] = study.get_trials(states=(TrialState.WAITING,))
    assert again.user_attrs["point"] == 1
    assert _enqueue_again(study, points, grace_s=0.0) == 0  # now held
    assert claim_waiting(study, storage).suggest_float("alpha", 1.0, 2.0) == 1.1  # with its point's params


def test_a_beating_trial_is_left_alone_and_its_beat_advances(url):
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.0}, user_attrs={"point": 0})
    trial = claim_waiting(study, storage)
    with Heartbeat(trial, interval_s=0.05):
        first = study.get_trials()[0].user_attrs[BEAT]
        time.sleep(0.4)
        assert fail_stale_trials(study, storage, grace_s=0.3) == []
        assert study.get_trials()[0].user_attrs[BEAT] > first
    assert study.get_trials()[0].user_attrs[OWNER] == f"{socket.gethostname()}:{os.getpid()}"


def _exit_at_once():
    pass


def test_a_trial_whose_process_is_gone_from_this_machine_fails_at_once(url):
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.0}, user_attrs={"point": 0})
    trial = claim_waiting(study, storage)
    dead = multiprocessing.get_context("spawn").Process(target=_exit_at_once)
    dead.start()
    dead.join()
    trial.set_user_attr(OWNER, f"{socket.gethostname()}:{dead.pid}")
    trial.set_user_attr(BEAT, time.time())
    assert fail_stale_trials(study, storage, grace_s=3600) == [trial.number]  # no need to wait out the grace


def test_an_owner_copied_from_an_earlier_attempt_does_not_count(url):
    """A retried trial carries its dead predecessor's attributes until its own heartbeat starts."""
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.0}, user_attrs={"point": 0, OWNER: f"{socket.gethostname()}:999999999",
                                                     BEAT: time.time() - 60})
    claim_waiting(study, storage)
    assert fail_stale_trials(study, storage, grace_s=3600) == []


def test_an_interrupted_trial_fails_and_is_retried_then_the_interrupt_goes_on(url):
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.4}, user_attrs={"point": 5})
    trial = claim_waiting(study, storage)

    def objective(trial):
        trial.suggest_float("alpha", 1.0, 2.0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_claimed(study, storage, trial, objective, interval_s=1.0, catch=())
    assert study.get_trials()[0].state == TrialState.FAIL
    [retried] = study.get_trials(states=(TrialState.WAITING,))
    assert retried.user_attrs["point"] == 5
    assert claim_waiting(study, storage).suggest_float("alpha", 1.0, 2.0) == 1.4


def _claim_all(url, ready, claimed):
    study, storage = _opened(url)
    ready.wait()
    while (trial := claim_waiting(study, storage)) is not None:
        study.tell(trial, 1.0)
        claimed.put(trial.number)


def test_four_processes_claiming_at_once_share_the_trials_without_an_error(url):
    """SQLite's lazy transactions made two readers-then-writers deadlock ("database is locked"): see
    scaling_search.search.storage.sqlite_engine_kwargs."""
    study, _ = _opened(url)
    for point in range(24):
        study.enqueue_trial({}, user_attrs={"point": point})
    context = multiprocessing.get_context("spawn")
    ready, claimed = context.Event(), context.Queue()
    workers = [context.Process(target=_claim_all, args=(url, ready, claimed)) for _ in range(4)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)  # every worker has opened the storage
    ready.set()
    for worker in workers:
        worker.join(120)
    assert [worker.exitcode for worker in workers] == [0] * 4
    numbers = [claimed.get(timeout=5) for _ in range(24)]
    assert sorted(numbers) == list(range(24)) and claimed.empty()
    assert {t.state for t in study.get_trials()} == {TrialState.COMPLETE}


def test_a_trial_failed_by_another_worker_while_it_ran_does_not_crash_its_worker(url):
    """A heartbeat later than the grace period (a loaded machine): another worker fails and retries the trial."""
    study, storage = _opened(url)
    study.enqueue_trial({"alpha": 1.0}, user_attrs={"point": 0})
    trial = claim_waiting(study, storage)
    other_study, other = _opened(url)

    def objective(trial):
        assert fail_stale_trials(other_study, other, grace_s=-1.0) == [trial.number]
        return 0.5

    with pytest.warns(RuntimeWarning, match="failed by another worker"):
        frozen = run_claimed(study, storage, trial, objective, interval_s=60.0, catch=())
    assert frozen.state == TrialState.FAIL
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.WAITING]  # its retry


def test_workers_wait_for_a_live_creator_to_enqueue_and_take_over_from_a_dead_one(url, monkeypatch):
    from scaling_search.search import queue

    study, _ = _opened(url)
    dead = multiprocessing.get_context("spawn").Process(target=_exit_at_once)
    dead.start()
    dead.join()
    study.set_user_attr(queue.ENQUEUER, f"{socket.gethostname()}:{dead.pid}")
    started = time.monotonic()
    queue._wait_for_points(study, grace_s=30.0)
    assert time.monotonic() - started < 1.0  # gone: take over at once

    monkeypatch.setattr(queue, "CREATOR_PATIENCE_S", 1.5)
    study.set_user_attr(queue.ENQUEUER, "another-machine:123")  # alive as far as anyone here can tell
    started = time.monotonic()
    queue._wait_for_points(study, grace_s=0.1)
    assert time.monotonic() - started >= 1.5  # no take-over before the patience runs out (was: the grace period)
