"""Benchmark results as data: what a benchmark printed, the figures it names, the command, the CPU and the date,
written to ``benchmarks/results/<name>.json`` when it finishes (one file per benchmark, the latest run)."""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scaling_search.atomic import write_json_atomically

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_model() -> str:
    """The CPU's model name and its widest vector extensions (what decides a CPU timing)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    extensions = [name for name in ("avx2", "avx512f", "amx_tile") if name in flags]
    return f"{model} ({', '.join(extensions) or 'no AVX2'})"


class _Tee(io.TextIOBase):
    def __init__(self, stream: Any) -> None:
        self.stream, self.buffer = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.buffer.write(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def recorded(script: str) -> Iterator[dict[str, Any]]:
    """Run a benchmark's main inside: its stdout is printed as usual and kept; the yielded dict takes the figures
    it wants recorded by name. Written only when the benchmark finishes."""
    figures: dict[str, Any] = {}
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        yield figures
    name = Path(script).stem
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    body = {"benchmark": name, "command": " ".join(["python", *sys.argv]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch_version, "python": platform.python_version(),
            "figures": figures, "output": tee.buffer.getvalue().splitlines()}
    path = write_json_atomically(RESULTS / f"{name}.json", json.loads(json.dumps(body, default=str)))
    print(f"results: {path}", file=sys.stderr)
