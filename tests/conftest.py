import time

import pytest

from smoke_run import SMOKE, cli


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``scaling-search run --budget 2x`` on the smoke preset from an empty folder: (folder, process, seconds).
    Tests that change the folder write only files no other reader counts on (more exports, another figure)."""
    cwd = tmp_path_factory.mktemp("run")
    started = time.perf_counter()
    proc = cli(cwd, "run", "--budget", "2x", *SMOKE)
    return cwd, proc, time.perf_counter() - started
