"""Latency predictor vs measurement on random specs from the search space, on this machine.

Calibrates a fresh lookup table (five B0-family networks), then for ``--specs`` random networks from the
stage-1 search space (not used in calibration) predicts and measures batch-1 latency. Prints the median
absolute percentage error, the share within +-10%, and the time per prediction vs per measurement.

    python benchmarks/bench_latency.py [--specs 30] [--resolution 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import optuna
import torch

from scaling_search.family import efficientnet
from scaling_search.latency import LatencyTable, measure_latency
from scaling_search.scaling import scale
from scaling_search.search_space import suggest_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=30)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory() as cache:
        table = LatencyTable.open("cpu", 1, cache_dir=Path(cache))
        base = efficientnet("b0")
        calibration = [replace(scale(base, width=w, depth=d), resolution=r)
                       for w, d, r in ((0.5, 1.0, 64), (1.0, 1.0, 96), (0.75, 1.4, 128), (1.0, 1.2, 160),
                                       (1.2, 1.0, 224))]
        started = time.perf_counter()
        table.calibrate(calibration, runs=args.runs)
        print(f"calibrated in {time.perf_counter() - started:.1f}s: latency = {table.correction[0]:.3f} * sum "
              f"+ {table.correction[1]:.3f} ms ({torch.get_num_threads()} threads)")

        sampler = optuna.samplers.RandomSampler(seed=123)
        study = optuna.create_study(sampler=sampler)
        proxy = replace(base, resolution=args.resolution)
        specs = [suggest_spec(study.ask(), proxy) for _ in range(args.specs)]
        for spec in specs:
            table.raw_sum(spec)  # fill the table's entries for these specs' blocks (per-block measurement)

        errors, predict_s, measure_s = [], [], []
        for spec in specs:
            start = time.perf_counter()
            predicted = table.predict(spec, measure_missing=False)
            predict_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            measured = measure_latency(spec, "cpu", runs=args.runs).median_ms
            measure_s.append(time.perf_counter() - start)
            errors.append((predicted - measured) / measured * 100)
            print(f"  predicted {predicted:7.2f} ms  measured {measured:7.2f} ms  error {errors[-1]:+6.1f}%")
        absolute = [abs(e) for e in errors]
        print(f"median absolute error : {statistics.median(absolute):.1f}%")
        print(f"within +-10%          : {sum(a <= 10 for a in absolute)}/{len(absolute)} "
              f"({100 * sum(a <= 10 for a in absolute) / len(absolute):.0f}%)")
        print(f"time per prediction   : {1e6 * statistics.median(predict_s):.0f} us; per measurement "
              f"{statistics.median(measure_s):.2f} s ({statistics.median(measure_s) / statistics.median(predict_s):,.0f}x)")


if __name__ == "__main__":
    main()
