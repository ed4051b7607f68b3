"""Peak memory of the quick preset's commands beside the data size: ``run``, ``ablate --figure 8``, ``fidelity``
and ``compare`` on a generated 64-px npz of 4,200 training and 1,400 validation images (the size of the
held-out set #27 measured), each command a process of its own, one after the other in one study.

Two figures per command, both sampled every 0.1 s over the command and every process it starts (its workers):

* ``peak RSS``: the largest resident set of any one process (``ru_maxrss`` from ``wait4``, which the kernel keeps
  for the process and every descendant it reaped). Pages a process maps from the shared dataset cache count in
  full in each process that touched them;
* ``peak PSS``: the largest sum over the process tree of proportional set sizes (``/proc/<pid>/smaps_rollup``),
  shared pages divided between the processes that share them: what the machine held for the command.

The goal is 2 GB or less for each command's peak RSS. Memory does not grow with the epochs (the same resolutions,
batches and workers), so ``--epochs`` (default 1) keeps the run short. ``fidelity`` is the preset's (a reference of
3x the epochs at the proxy's resolution); ``fidelity-80px`` (asked for by name) is the one #27 measured, a
reference at 80 px, trained as many epochs as the proxy. ``--cap-s`` stops a command after that many seconds and
reports its peak up to then, saying so, with the command's last line. The dataset cache is a fresh one (every resolution is
decoded and resized within the measured commands), under a temporary folder that is removed afterwards.

    python benchmarks/bench_memory.py [--epochs 1] [--workers 2] [--cap-s 0] [--commands run ablate fidelity compare
                                      fidelity-80px]
"""

from __future__ import annotations

from _results import recorded

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN_PER_CLASS, VAL_PER_CLASS, NATIVE = 420, 140, 64  # 10 classes: 4,200 train and 1,400 val images at 64 px

COMMANDS = {
    "run": ["run", "--budget", "2x"],
    "ablate": ["ablate", "--figure", "8"],
    "fidelity": ["fidelity"],
    "compare": ["compare"],
    # not in the default list: a reference at 80 px trains the candidates' proxies at up to 112 px (gamma 1.4)
    "fidelity-80px": ["fidelity", "--reference-resolution", "80", "--reference-epochs", "1"],
}
DEFAULT_COMMANDS = ["run", "ablate", "fidelity", "compare"]


def write_dataset(path: Path) -> int:
    """The synthetic renderer's images at 64 px as an npz with CIFAR's keys; returns the file's size in bytes."""
    sys.path.insert(0, str(ROOT))
    from scaling_search.data.synthetic import synthetic_dataset

    data = synthetic_dataset(TRAIN_PER_CLASS, VAL_PER_CLASS, seed=0, resolution=NATIVE)
    np.savez(path, x_train=data.train_images.permute(0, 2, 3, 1).numpy(), y_train=data.train_labels.numpy(),
             x_test=data.val_images.permute(0, 2, 3, 1).numpy(), y_test=data.val_labels.numpy(),
             classes=np.array(data.classes))
    return path.stat().st_size


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            tree.setdefault(parent, []).append(int(entry))
    return tree


def sample_tree(root: int) -> tuple[float, tuple[float, float, float]]:
    """The summed PSS of ``root`` and every descendant, and the (RSS, anonymous, mapped file) MB of its largest
    process now (zeros for processes gone meanwhile)."""
    tree, todo, total, largest = _children(), [root], 0.0, (0.0, 0.0, 0.0)
    while todo:
        pid = todo.pop()
        todo.extend(tree.get(pid, []))
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        except OSError:
            continue
        if "VmRSS" not in status:  # a zombie (exited, not yet reaped) holds no memory
            continue
        total += sum(int(line.split()[1]) for line in rollup if line.startswith("Pss:")) / 1024
        rss = tuple(int(status[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile"))
        largest = max(largest, rss)
    return total, largest


def measure(argv: list[str], cwd: Path, env: dict[str, str], cap_s: float) -> dict[str, object]:
    """Run ``python -m scaling_search ARGV`` and sample its tree's memory until it exits (or ``cap_s`` passes)."""
    started = time.perf_counter()
    log = open(cwd / "stderr.txt", "w+")  # a file, not a pipe: a pipe nobody reads would stall the command
    process = subprocess.Popen([sys.executable, "-m", "scaling_search", *argv], cwd=cwd, env=env,
                               stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    peak_pss, capped, peak_parts = 0.0, False, (0.0, 0.0, 0.0)
    while True:  # reaped here, not by Popen, so that wait4 hands back the tree's rusage
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        pss, largest = sample_tree(process.pid)
        peak_pss, peak_parts = max(peak_pss, pss), max(peak_parts, largest)
        if cap_s and not capped and time.perf_counter() - started > cap_s:
            os.killpg(process.pid, signal.SIGINT)  # the CLI's Ctrl-C: its workers stop too
            capped = True
        time.sleep(0.1)
    process.returncode = os.waitstatus_to_exitcode(status)
    log.seek(0)
    stderr = log.read()
    log.close()
    code = process.returncode
    if code != 0 and not capped:
        raise SystemExit(f"{' '.join(argv)} failed ({code}):\n{stderr[-2000:]}")
    return {"command": " ".join(argv[:3]), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_pss_mb": round(peak_pss, 1), "sampled_peak_anon_mb": round(peak_parts[1], 1),
            "sampled_peak_file_mb": round(peak_parts[2], 1), "seconds": round(time.perf_counter() - started, 1),
            "finished": not capped, "last_line": (stderr.strip().splitlines() or [""])[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--workers", default="2", help="the commands' --workers (default 2: two training processes)")
    parser.add_argument("--cap-s", type=float, default=0.0, help="stop each command after this many seconds (0: never)")
    parser.add_argument("--commands", nargs="+", default=DEFAULT_COMMANDS, choices=list(COMMANDS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder, recorded("bench_memory") as results:
        work = Path(folder)
        size = write_dataset(work / "images64.npz")
        env = {**os.environ, "SCALING_SEARCH_CACHE": str(work / "cache"), "PYTHONPATH": str(ROOT)}
        common = ["--preset", "quick", "--data", str(work / "images64.npz"), "--study", "memory", "--no-progress",
                  "--epochs", str(args.epochs), "--workers", args.workers]
        print(f"data: {TRAIN_PER_CLASS * 10} train + {VAL_PER_CLASS * 10} val images, {NATIVE} px, npz "
              f"{size / 1e6:.1f} MB (uint8); quick preset, --epochs {args.epochs}, --workers {args.workers}")
        rows = []
        for name in args.commands:
            row = measure([*COMMANDS[name], *common], work, env, args.cap_s)
            rows.append(row)
            note = "" if row["finished"] else (f"  (stopped after {args.cap_s:g} s: peak up to then; its last line: "
                                               f"{row['last_line']})")
            verdict = "within 2 GB" if float(row["peak_rss_mb"]) <= 2048 else "OVER 2 GB"
            print(f"{row['command']:<28} peak RSS {row['peak_rss_mb']:7.1f} MB  peak PSS (all processes) "
                  f"{row['peak_pss_mb']:7.1f} MB  (largest sample: {row['sampled_peak_anon_mb']:.0f} MB anonymous + "
                  f"{row['sampled_peak_file_mb']:.0f} MB mapped files)  {row['seconds']:6.1f} s  {verdict}{note}", flush=True)
        results.update({"data_mb": round(size / 1e6, 1), "epochs": args.epochs, "workers": args.workers,
                        "commands": rows})


if __name__ == "__main__":
    main()
