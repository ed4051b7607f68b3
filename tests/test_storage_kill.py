"""A new study's storage is made whole or not at all (scaling_search/search/storage.py): a process killed while
it creates the SQLite file leaves nothing a rerun trips on, and the rerun finishes with the uninterrupted answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "queue_worker.py"


def _no_pause() -> dict[str, str]:
    """The worker's environment (read now: the session's private cache is set after import), without its pause per
    training: the kills land while the storage is made, not mid-trial."""
    return {**os.environ, "QUEUE_WORKER_PAUSE_S": "0"}


def _run(url: str, output: Path) -> dict:
    done = subprocess.run([sys.executable, str(WORKER), url, str(output)], capture_output=True, text=True, timeout=300,
                          env=_no_pause())
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_run_killed_while_it_creates_its_storage_reruns_to_the_same_answer(tmp_path):
    reference = _run(f"sqlite:///{tmp_path}/reference.db", tmp_path / "reference")
    for index, delay in enumerate((0.0, 0.01, 0.03, 0.1)):
        folder = tmp_path / f"kill{index}"
        folder.mkdir()
        url = f"sqlite:///{folder}/study.db"
        process = subprocess.Popen([sys.executable, str(WORKER), url, str(folder / "out")],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_no_pause())
        deadline = time.monotonic() + 120
        while not os.listdir(folder) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)  # until the storage's file (or its temporary) appears
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        left = sorted(os.listdir(folder))
        assert left in ([], ["study.db"]) or any(name.endswith(".creating") for name in left), left
        if "study.db" in left:  # never an empty file or half a schema
            assert (folder / "study.db").read_bytes()[:16] == b"SQLite format 3\x00"
        assert _run(url, folder / "out") == reference


def test_a_journal_writer_killed_while_it_holds_the_lock_blocks_no_one(tmp_path):
    """A journal storage's writers take turns through flock, which dies with its holder: the next writer goes on
    at once, where Optuna's own lock file waited out a 30 s grace period and could then be taken by two."""
    import optuna

    from scaling_search.search.storage import open_for_reading

    url = f"journal:{tmp_path}/study.log"
    (tmp_path / "study.log").touch()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from scaling_search.search.storage import open_for_reading\n"
        f"storage = open_for_reading({url!r})\n"
        "storage._backend._lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    study = optuna.create_study(study_name="after-the-kill", storage=open_for_reading(url))
    study.enqueue_trial({"x": 1.0})
    assert time.monotonic() - started < 10 and len(study.trials) == 1
