"""N processes load one image folder at once, as N grid workers do: decode time and memory, with the machine's
decoded, memory-mapped dataset cache (:mod:`scaling_search.data.decoded`) against each process on its own.

An ImageFolder tree of PNGs is written from the CIFAR file (or synthetic images), then for each mode N spawned
processes start together, each loads the tree and resizes the train and val splits to ``--resolution`` (what a
grid worker does before its first trial), waits for the others, and reads its own memory from
/proc/self/smaps_rollup: RSS counts shared pages in full in every process, PSS divides them between the
processes that share them, so the sum of PSS is what the machine holds. Modes:

* ``own copy``: no cache (its folder cannot be written): every process decodes and holds its own copy;
* ``cache, cold``: an empty cache: one process decodes and writes, the others wait and map its files;
* ``cache, warm``: the entries exist: every process maps them, nothing is decoded.

    python benchmarks/bench_data_cache.py [--data ../shared/data/cifar10.npz] [--images 10000] [--workers 2]
"""

from __future__ import annotations

from _results import recorded

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _memory_mb() -> tuple[float, float]:
    fields = {}
    with open("/proc/self/smaps_rollup") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 2 and parts[0].endswith(":"):
                fields[parts[0][:-1]] = int(parts[1])
    return fields["Rss"] / 1024, fields["Pss"] / 1024


def _worker(folder: str, cache: str, resolution: int, barrier, results) -> None:
    os.environ["SCALING_SEARCH_CACHE"] = cache
    import torch

    torch.set_num_threads(1)
    from scaling_search.data import load_dataset

    barrier.wait()  # start together, as workers launched at once
    started = time.perf_counter()
    data = load_dataset(folder)
    train, val = data.split("train", resolution), data.split("val", resolution)
    seconds = time.perf_counter() - started
    checksum = float(train.images[:, :, 0, 0].sum() + val.images[:, :, 0, 0].sum())
    barrier.wait()  # every process holds its data now
    rss, pss = _memory_mb()
    results.put((seconds, rss, pss, checksum))
    barrier.wait()


def _write_tree(source: str, images: int, root: Path) -> str:
    from PIL import Image

    if source != "synthetic" and Path(source).exists():
        with np.load(source) as archive:
            x, y = archive["x_train"], archive["y_train"]
            xv, yv = archive["x_test"], archive["y_test"]
        described = f"{Path(source).name}: {images} train + {images // 4} val images as PNG"
    else:
        rng = np.random.default_rng(0)
        x, y = rng.integers(0, 255, (images, 32, 32, 3), dtype=np.uint8), np.arange(images) % 10
        xv, yv = x[: images // 4], y[: images // 4]
        described = f"synthetic noise: {images} train + {images // 4} val images as PNG"
    order = np.random.default_rng(0).permutation(len(y))[:images]
    for split, xs, ys, count in (("train", x[order], y[order], images), ("val", xv, yv, images // 4)):
        for index in range(min(count, len(ys))):
            folder = root / split / f"class{int(ys[index])}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(xs[index]).save(folder / f"{index}.png")
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10.npz"
    parser.add_argument("--data", default=str(default) if default.exists() else "synthetic")
    parser.add_argument("--images", type=int, default=10000, help="training images in the tree")
    parser.add_argument("--workers", type=int, default=2, help="processes loading it at once")
    parser.add_argument("--resolution", type=int, default=40, help="px of the resized splits (the quick proxy's)")
    args = parser.parse_args()
    import platform

    with tempfile.TemporaryDirectory(prefix="bench-data-cache-") as scratch:
        scratch_path = Path(scratch)
        described = _write_tree(args.data, args.images, scratch_path / "tree")
        blocked = scratch_path / "no-cache"
        blocked.write_text("a file, so the cache cannot be written")
        cache = scratch_path / "cache"
        print(f"{described}; {args.workers} processes at once, splits resized to {args.resolution} px; "
              f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
        context = multiprocessing.get_context("spawn")
        checksums = set()
        for mode, cache_dir in (("own copy", blocked), ("cache, cold", cache), ("cache, warm", cache)):
            barrier, results = context.Barrier(args.workers), context.Queue()
            processes = [context.Process(target=_worker, args=(str(scratch_path / "tree"), str(cache_dir),
                                                               args.resolution, barrier, results))
                         for _ in range(args.workers)]
            for process in processes:
                process.start()
            rows = [results.get(timeout=1800) for _ in processes]
            for process in processes:
                process.join()
            seconds = sorted(r[0] for r in rows)
            checksums.update(round(r[3], 3) for r in rows)
            print(f"{mode:<12}: load + resize {', '.join(f'{s:.1f}' for s in seconds)} s per process | "
                  f"RSS {', '.join(f'{r[1]:.0f}' for r in rows)} MB | PSS {', '.join(f'{r[2]:.0f}' for r in rows)} MB"
                  f" | machine (sum of PSS) {sum(r[2] for r in rows):.0f} MB")
        print("same images in every mode and process:", "yes" if len(checksums) == 1 else f"NO ({checksums})")


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
