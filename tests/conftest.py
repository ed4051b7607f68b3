import time

import pytest

from smoke_run import SMOKE, cli


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test (and every process it starts) sees a cache of its own (latency tables, decoded datasets,
    execution plans), never the user's: a test that wants a calibrated table or a plan writes one."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("SCALING_SEARCH_CACHE")
    os.environ["SCALING_SEARCH_CACHE"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("SCALING_SEARCH_CACHE", None)
    else:
        os.environ["SCALING_SEARCH_CACHE"] = before


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """``scaling-search run --budget 2x`` on the smoke preset from an empty folder: (folder, process, seconds).
    Tests that change the folder write only files no other reader counts on (more exports, another figure)."""
    cwd = tmp_path_factory.mktemp("run")
    started = time.perf_counter()
    proc = cli(cwd, "run", "--budget", "2x", *SMOKE)
    return cwd, proc, time.perf_counter() - started
