"""A real full disk (a small tmpfs, so the tests need root, as CI runs): ``run`` fails in one line at every
fill level, leaves no temporary behind, and once space is freed the same command finishes with the answer of a
run that never saw a full disk, and its report draws. A read-only one: ``run`` is refused before any line,
``report`` reads the study."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from smoke_run import SMOKE
from test_report_browser import _chromium, _dump_dom

DISK_BYTES = 16 << 20  # the study, the reports (plotly.min.js alone is 4.8 MB) and the dataset cache (4.4 MB of rendered images) fit


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs as root and mounts a small tmpfs: {mounted.stderr.strip()}")
        pytest.skip(f"mounting a small tmpfs needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _leave_free(folder: Path, filler: Path, free_bytes: int) -> None:
    """Grow or shrink ``filler`` until ``free_bytes`` are left on ``folder``'s device."""
    stat = os.statvfs(folder)
    available = stat.f_bavail * stat.f_frsize
    size = filler.stat().st_size if filler.exists() else 0
    target = max(0, size + available - free_bytes)
    if target < size:
        os.truncate(filler, target)
    elif target > size:
        with open(filler, "ab") as handle:
            os.posix_fallocate(handle.fileno(), 0, target)


def _run(folder: Path, monkeypatch, *extra: str) -> tuple[int, str, str]:
    """``run --budget 2x`` on the smoke preset through the CLI's ``main`` in this process, from ``folder``, with the
    dataset cache on the same device: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from scaling_search.cli import main

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(folder / "cache"))
    monkeypatch.chdir(folder)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--budget", "2x", *SMOKE, *extra])
    return code, out.getvalue(), err.getvalue()


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name or ".creating" in p.name)


@pytest.mark.slow
def test_a_full_disk_fails_in_one_line_and_the_rerun_after_freeing_it_gives_the_answer(small_disk, smoke_run,
                                                                                        monkeypatch):
    filler = small_disk / "filler"
    # 8 KB: the storage cannot be created; 150 KB: it fills while trials are stored; 400 KB: the report's files
    # (decision.json, plotly.min.js) do not fit. Each level starts from what the failed run before it left.
    for free_kb in (8, 150, 400):
        _leave_free(small_disk, filler, free_kb << 10)
        code, _, stderr = _run(small_disk, monkeypatch)
        last = stderr.strip().splitlines()[-1]
        assert code == 3 and last.startswith("scaling-search run: error: no space left on the device"), (free_kb, stderr)
        assert "free some space and re-run the same command" in last
        assert _temporaries(small_disk) == [], free_kb
    filler.unlink()
    code, stdout, stderr = _run(small_disk, monkeypatch)
    assert code == 0, stderr[-2000:]
    assert stdout == smoke_run[1].stdout  # the answer of the session's run, which never saw a full disk
    assert _temporaries(small_disk) == []
    folder = small_disk / "reports" / "smoke-synthetic"
    bundled = Path(__import__("plotly").__file__).parent / "package_data" / "plotly.min.js"
    assert (folder / "plotly.min.js").read_bytes() == bundled.read_bytes()
    for table in folder.glob("*.csv"):
        assert table.stat().st_size > 0 and table.read_text().count("\n") >= 2, table.name
    assert json.loads((folder / "decision.json").read_text())["chosen"]
    dom = _dump_dom(_chromium(), folder / "index.html", small_disk.parent / "profile")
    assert 'id="figure-grid"' in dom and 'class="main-svg"' in dom  # plotly drew the grid's figure


def test_a_study_on_a_read_only_disk_is_refused_by_run_before_any_line_and_read_by_report(small_disk, smoke_run,
                                                                                           monkeypatch):
    (small_disk / "studies").mkdir()
    before = (smoke_run[0] / "studies" / "smoke-synthetic.db").read_bytes()  # the session's run, made with SMOKE
    (small_disk / "studies" / "s.db").write_bytes(before)
    storage = f"sqlite:///{small_disk}/studies/s.db"
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    out = small_disk.parent / "out"
    code, stdout, stderr = _run(small_disk, monkeypatch, "--storage", storage, "--output", str(out))
    assert code == 2 and stdout == "" and stderr.strip().splitlines() == [
        f"scaling-search run: error: storage file {small_disk}/studies/s.db is read-only; the study's trials are "
        "written to it: make it writable or give another --storage ('report' and 'studies' only read it)"]
    from scaling_search.cli import main

    assert main(["report", "smoke-synthetic", "--storage", storage, "--output", str(out)]) == 0
    assert (out / "smoke-synthetic" / "index.html").exists()
    assert (small_disk / "studies" / "s.db").read_bytes() == before
