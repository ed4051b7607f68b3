"""scaling_search/atomic.py: a file is replaced whole or not at all, by writers that never collide."""

from __future__ import annotations

import os
import threading

import pytest

from scaling_search.atomic import write_bytes_atomically, write_json_atomically


def test_a_write_makes_an_ordinary_file_and_leaves_no_temporary(tmp_path):
    path = write_json_atomically(tmp_path / "sub" / "a.json", {"x": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == '{\n  "x": 1\n}\n' and (path.stat().st_mode & 0o777) == 0o666 & ~umask
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    path = write_bytes_atomically(tmp_path / "a.bin", b"old")
    with pytest.raises(TypeError):
        write_bytes_atomically(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_concurrent_writers_of_one_file_never_collide(tmp_path):
    path, errors = tmp_path / "shared.csv", []

    def write(index: int) -> None:
        try:
            for _ in range(20):
                write_bytes_atomically(path, f"writer {index}\n".encode() * 1000)
        except OSError as error:  # a shared temporary name fails here (FileNotFoundError on rename)
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(set(path.read_text().splitlines())) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.csv"]


def test_a_truncated_plotly_bundle_is_replaced_and_pages_leave_no_temporaries(tmp_path):
    import pandas as pd
    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    from scaling_search.report.figures import write_pages

    figure = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    write_pages(tmp_path, {"f": figure}, {"t": pd.DataFrame({"a": [1.0]})})
    bundle = tmp_path / "plotly.min.js"
    full = bundle.read_bytes()
    assert full == get_plotlyjs().encode() and "plotly.min.js" in (tmp_path / "f.html").read_text()
    bundle.write_bytes(full[: len(full) // 2])  # what a full disk left behind
    write_pages(tmp_path, {"f": figure}, {"t": pd.DataFrame({"a": [1.0]})})
    assert bundle.read_bytes() == full
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.html", "plotly.min.js", "t.csv"]
