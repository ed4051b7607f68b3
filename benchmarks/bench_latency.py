"""Latency predictor vs measurement on random specs from the search space, on this machine.

Calibrates a fresh lookup table exactly as ``scaling-search latency calibrate`` does (five B0-family networks
and eight random search-space networks, seed 7), then for ``--specs`` other random networks of the stage-1
search space (seed 123, not used in calibration) predicts and measures batch-1 latency. Prints the median
absolute percentage error and the share within +-10%, the time per prediction vs per measurement, and the
machine's noise floor: every network is measured a second time after all the first measurements, and the
two measurements are scored against each other the same way. No predictor can be scored more accurately
than the measurements it is compared with.

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
from scaling_search.latency import LatencyTable, calibration_specs, measure_latency
from scaling_search.search_space import suggest_spec


def score(name: str, estimates: list[float], reference: list[float]) -> None:
    errors = [abs(e - r) / r * 100 for e, r in zip(estimates, reference)]
    within = sum(e <= 10 for e in errors)
    print(f"{name:<42}: median abs error {statistics.median(errors):5.1f}%, within +-10% {within}/{len(errors)} "
          f"({100 * within / len(errors):.0f}%)")


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
        started = time.perf_counter()
        table.calibrate(calibration_specs(), runs=args.runs)
        print(f"calibrated in {time.perf_counter() - started:.1f}s: latency = {table.correction[0]:.3f} * sum "
              f"+ {table.correction[1]:.3f} ms ({torch.get_num_threads()} threads)")

        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=123))
        proxy = replace(efficientnet("b0"), resolution=args.resolution)
        specs = [suggest_spec(study.ask(), proxy) for _ in range(args.specs)]
        for spec in specs:
            table.raw_sum(spec)  # fill the table's entries for these specs' blocks (per-block measurement)

        predicted, first, predict_s, measure_s = [], [], [], []
        for spec in specs:
            start = time.perf_counter()
            predicted.append(table.predict(spec, measure_missing=False))
            predict_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            first.append(measure_latency(spec, "cpu", runs=args.runs).median_ms)
            measure_s.append(time.perf_counter() - start)
            print(f"  predicted {predicted[-1]:7.2f} ms  measured {first[-1]:7.2f} ms  "
                  f"error {(predicted[-1] - first[-1]) / first[-1] * 100:+6.1f}%")
        second = [measure_latency(spec, "cpu", runs=args.runs).median_ms for spec in specs]

        score("predicted vs measured", predicted, first)
        score("predicted vs mean of two measurements", predicted, [(a + b) / 2 for a, b in zip(first, second)])
        score("noise floor: 2nd measurement vs 1st", second, first)
        print(f"time per prediction   : {1e6 * statistics.median(predict_s):.0f} us; per measurement "
              f"{statistics.median(measure_s):.2f} s ({statistics.median(measure_s) / statistics.median(predict_s):,.0f}x)")


if __name__ == "__main__":
    main()
