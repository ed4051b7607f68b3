import time

import pytest

from smoke_run import SMOKE, SMOKE_FIDELITY, cli, cli_in_process


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


@pytest.fixture(scope="session")
def smoke_fidelity(smoke_run, tmp_path_factory):
    """``scaling-search fidelity --reference-epochs 2 --format json`` after the smoke run, in a copy of its folder:
    (folder, stdout). The fidelity candidates train in both regimes once per session (a reference of twice the
    epochs, not the default 3x: a third less reference training); ``fidelity --candidates`` reuses them."""
    import shutil

    folder = tmp_path_factory.mktemp("fidelity")
    shutil.copytree(smoke_run[0], folder, dirs_exist_ok=True)
    return folder, cli_in_process(folder, "fidelity", *SMOKE_FIDELITY, "--format", "json")


@pytest.fixture
def few_fidelity_candidates(monkeypatch):
    """Fidelity over 6 candidates instead of 16, for tests of what a fidelity does with its candidates rather
    than of how many it scores (tests/test_fidelity.py checks the 16): about a third of the fake trainings."""
    import functools

    from scaling_search.search import fidelity_points, runner

    monkeypatch.setattr(runner, "fidelity_candidates", functools.partial(fidelity_points.fidelity_candidates, count=6))
