"""The smoke run several slow test modules read: run once per test session (see conftest.py)."""

import subprocess
import sys

# The issue's acceptance command (B0 at 224 px as the deployment baseline); stage 1's search is run by the
# Ctrl-C test in tests/test_pipeline_cli.py and, with a fake trainer, by tests/test_search_runner.py.
SMOKE = ["--preset", "smoke", "--no-progress", "--pruner", "none", "--baseline", "b0", "--resolution", "224"]
# The session's smoke fidelity (tests/conftest.py) and the candidates that reuse its stages.
SMOKE_FIDELITY = [*SMOKE, "--reference-epochs", "2"]


def cli(cwd, *argv, check=True):
    proc = subprocess.run([sys.executable, "-m", "scaling_search", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def cli_in_process(cwd, *argv):
    """A follow-up command (export, ablate, report, a rerun) through the CLI's ``main`` in this process, from
    ``cwd``: the same code as the command without another interpreter importing torch (about 5 s each)."""
    import contextlib
    import io
    import os

    from scaling_search.cli import main

    previous = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        os.chdir(previous)
    assert code == 0, err.getvalue()[-2000:]
    return out.getvalue()
