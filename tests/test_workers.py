"""Several worker processes on one study, on each kind of storage: three started at the same moment on a fresh
storage, one killed mid-trial and restarted (SQLite: in stage 1; journal: in stage 2; PostgreSQL: one in each).
Every point must end COMPLETE exactly once and every worker must give the answer of one worker alone.

Workers are ``tests/queue_worker.py`` (the real pipeline, a slow fake trainer). PostgreSQL: a real server whose
URL is in ``SCALING_SEARCH_TEST_POSTGRES`` (``.ci/run`` starts one with ``.ci/postgres.sh``); without it that
case is skipped.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from scaling_search.search.trial_claims import OWNER

WORKER = Path(__file__).with_name("queue_worker.py")
POSTGRES = os.environ.get("SCALING_SEARCH_TEST_POSTGRES")


def _start(url: str, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(WORKER), url, str(folder)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


SECRET = "sekrit-pw"  # the test server trusts local connections, so any password in the URL connects


def _answer(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-2000:]
    assert SECRET not in out + err
    return json.loads(out.strip().splitlines()[-1])


def _reader(url: str):
    from scaling_search.search.storage import open_for_reading

    return open_for_reading(url)


def _trials(url: str, stage: str) -> list:
    try:
        return optuna.load_study(study_name=f"shared:{stage}", storage=_reader(url)).get_trials()
    except Exception:  # not created yet, or the schema is being created
        return []


def _kill_running(url: str, stage: str, processes: list[subprocess.Popen]) -> subprocess.Popen:
    """SIGKILL the worker whose trial of ``stage`` is running (mid-training), and return it."""
    by_pid = {str(p.pid): p for p in processes}
    deadline = time.time() + 120
    while time.time() < deadline:
        for trial in _trials(url, stage):
            owner = str(trial.user_attrs.get(OWNER, "")).rpartition(":")[2]
            if trial.state == TrialState.RUNNING and owner in by_pid and by_pid[owner].poll() is None:
                victim = by_pid[owner]
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                return victim
        time.sleep(0.05)
    raise AssertionError(f"no worker was seen running a {stage} trial")


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """The answer of one worker on its own storage (in this process: the same code as a worker's, without
    another interpreter importing torch)."""
    from queue_worker import answer

    folder = tmp_path_factory.mktemp("alone")
    return json.loads(json.dumps(answer(f"sqlite:///{folder}/alone.db", folder / "out")))


@pytest.fixture
def postgres_url():
    if not POSTGRES:
        pytest.skip("no PostgreSQL server: set SCALING_SEARCH_TEST_POSTGRES (.ci/run starts one)")
    import psycopg

    name = f"workers_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    server = POSTGRES.rsplit("/", 1)[0].replace("@", f":{SECRET}@", 1)  # with a password, to see it masked
    yield f"{server}/{name}"
    with psycopg.connect(POSTGRES, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.mark.slow
@pytest.mark.parametrize("kind, kills", [("sqlite", ("baseline",)), ("journal", ("grid",)),
                                         ("postgresql", ("baseline", "grid"))])
def test_three_workers_killed_and_restarted_give_the_answer_of_one(kind, kills, tmp_path, alone, request):
    url = {"sqlite": f"sqlite:///{tmp_path}/shared.db", "journal": f"journal:{tmp_path}/shared.log"}.get(kind)
    if kind == "postgresql":
        url = request.getfixturevalue("postgres_url")
    workers = [_start(url, tmp_path / f"w{i}") for i in range(3)]  # a cold start: the storage does not exist yet
    killed = []
    for stage in kills:
        killed.append(_kill_running(url, stage, workers))
        workers.append(_start(url, tmp_path / f"restarted-{stage}"))
    answers = [_answer(p) for p in workers if p not in killed]
    assert len(answers) == 3 and all(answer == alone for answer in answers)

    grid = _trials(url, "grid")
    complete = collections.Counter(t.user_attrs["point"] for t in grid if t.state == TrialState.COMPLETE)
    points = {t.user_attrs["point"] for t in grid}
    trials = [(t.number, t.state.name, t.user_attrs.get("point"), t.user_attrs.get("retry_of")) for t in grid]
    assert set(complete) == points and set(complete.values()) == {1}, (complete, trials)  # every point once
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in grid)  # no placeholder, none left running
    for stage in kills:  # the killed trial, failed once its process was found gone
        assert any(t.state == TrialState.FAIL and "yielded_to" not in t.user_attrs for t in _trials(url, stage))
    assert all(set(t.params) == {"alpha", "beta", "gamma"} for t in grid if t.state == TrialState.COMPLETE)
    baseline = _trials(url, "baseline")
    assert sum(t.state == TrialState.COMPLETE for t in baseline) == 4
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".csv", ".md", ".html")]
    assert any(p.name == "study.json" for p in written)
    assert not [p for p in written if SECRET in p.read_text()]  # not in study.json, nor in any provenance
