"""Score the latency predictor against plain MACs on networks it never saw, with the noise floor, in one run.

1. Calibrates a fresh table exactly as ``scaling-search latency calibrate`` does (five B0-family networks and
   ten random search-space networks, seed 7, at 64-224 px), in a temporary cache.
2. Draws ``--specs`` other random networks of the stage-1 search space (seed 123, 96-224 px), fills the table's
   parts for them, and measures them and the calibration networks twice, each time all of them interleaved
   (``measure_latencies``). The first measurement is the reference; the second, scored against the first, is
   the noise floor: no predictor can be scored more precisely than the measurements it is compared with.
3. Prints, for the predictor and for plain MACs, the figures of HELP and nn-Meter: share within +-10%, median
   absolute error, Spearman's rho and Kendall's tau. The predictor is scored twice: with the correction that
   step 1 fitted minutes earlier (as the tool uses it: a shared host drifts in between), and with the
   correction refitted on the calibration networks measured beside the reference (the predictor's own error),
   and, side by side, with that correction's line alone (no weights term, as tables were corrected before).
   MACs are turned into milliseconds by the same relative linear fit on the same calibration networks, measured
   beside the reference (rank figures do not depend on that fit).
4. Recalibration: how the error falls with the number of whole-network measurements the correction is fitted
   on (the first n calibration networks, shuffled with a fixed seed, measured beside the reference; the parts
   table stays the same).

Threads default to 1: on this project's shared 2-core VM, batch-1 inference at 2 threads was both slower and
far noisier (two measurements of 30 networks agreed within +-10% for 47% of them at 2 threads, 87% at 1).

On CUDA (``--device cuda``) the same figures come from the GPU's table; ``--batch`` times a larger batch, where
a GPU's latency stops being kernel-launch overhead.

    python benchmarks/bench_latency.py [--specs 30] [--threads 2] [--runtime torch|onnxruntime]
    python benchmarks/bench_latency.py --device cuda [--batch 1]
"""

from __future__ import annotations

from _results import recorded

import argparse
import dataclasses
import random
import statistics
import tempfile
import time
from pathlib import Path

import optuna
import torch

from scaling_search.network.cost import count_cost
from scaling_search.latency import (LatencyTable, calibration_specs, describe_device, fit_correction, fit_relative,
                                    measure_latencies, random_specs, score_predictor)


def line(score) -> str:
    return (f"{score.name:<34} {score.within_10pct:>7.0%} {score.median_abs_error:>10.1%} {score.spearman:>8.3f} "
            f"{score.kendall:>8.3f}")


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=30, help="unseen networks to score on (default: 30)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runtime", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--batch", type=int, default=1, help="images per timed pass (default: 1)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per measurement (default: 5)")
    parser.add_argument("--runs", type=int, default=10, help="timed passes per round (default: 10)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(f"device {describe_device(torch.device(args.device))}, runtime {args.runtime}, batch {args.batch}, "
          f"torch {torch.__version__}")

    with tempfile.TemporaryDirectory() as cache:
        table = LatencyTable.open(args.device, args.batch, cache_dir=Path(cache), runtime=args.runtime)
        calibration = calibration_specs()
        started = time.perf_counter()
        pairs = table.calibrate(calibration, rounds=args.rounds, runs=args.runs)
        print(f"calibrated on {len(calibration)} networks in {time.perf_counter() - started:.0f} s: "
              f"latency = {table.correction.slope:.3f} * sum + {table.correction.intercept:.3f} ms + "
              f"{table.correction.ms_per_mparam:.3f} ms per million parameters")

        specs = random_specs(args.specs, seed=123)
        started = time.perf_counter()
        parts = table.fill(specs)
        print(f"{parts} new parts for {len(specs)} unseen networks measured in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        everything = specs + calibration
        measurements = [measure_latencies(everything, args.device, batch=args.batch, rounds=args.rounds,
                                          runs=args.runs, runtime=args.runtime) for _ in range(2)]
        spread = statistics.median(m.spread for measured in measurements for m in measured)
        measure_s = (time.perf_counter() - started) / (2 * len(everything))
        first_all, second_all = ([m.ms for m in measured] for measured in measurements)
        first, second = first_all[:len(specs)], second_all[:len(specs)]
        beside = [(raw, count_cost(spec).params, ms)  # the calibration networks, measured beside the reference
                  for spec, (raw, _), ms in zip(calibration, pairs, first_all[len(specs):])]
        started = time.perf_counter()
        predicted = [table.predict(spec, measure_missing=False) for spec in specs]
        predict_s = (time.perf_counter() - started) / len(specs)
        raw = [table.raw_sum(spec, measure_missing=False) for spec in specs]
        params = [count_cost(spec).params for spec in specs]
        refit = fit_correction(beside)
        refitted = [refit.apply(r, p) for r, p in zip(raw, params)]
        line_slope, line_intercept = fit_relative([(r, ms) for r, _, ms in beside])
        line_only = [line_slope * r + line_intercept for r in raw]

        macs = [count_cost(spec).macs for spec in specs]
        macs_fit = fit_relative([(count_cost(spec).macs, ms) for spec, (_, _, ms) in zip(calibration, beside)])
        macs_ms = [macs_fit[0] * m + macs_fit[1] for m in macs]

        for spec, m, p, a, b in zip(specs, macs, predicted, first, second):
            print(f"  {spec.resolution:>3} px {m / 1e6:7.0f}M MACs  predicted {p:7.2f} ms  "
                  f"measured {a:7.2f} / {b:7.2f} ms  error {(p / a - 1):+6.1%}")
        print(f"\n{len(specs)} unseen networks, reference = 1st measurement"
              f"\n{'':<34} {'+-10%':>7} {'median err':>10} {'rho':>8} {'tau':>8}")
        scores = [score_predictor("table, correction fitted earlier", predicted, first),
                  score_predictor("table, correction fitted beside", refitted, first),
                  score_predictor("table, beside, no weights term", line_only, first),
                  score_predictor("MACs (fitted beside)", macs_ms, first),
                  score_predictor("noise floor: 2nd vs 1st measurement", second, first),
                  score_predictor("table (beside) vs 2nd measurement", refitted, second)]
        for score in scores:
            print(line(score))

        print("\nrecalibration: the correction fitted on n whole-network measurements (same parts)")
        order = list(range(len(calibration)))
        random.Random(0).shuffle(order)
        for n in (2, 3, 5, 8, 10, 15):
            if n > len(order):
                break
            correction = fit_correction([beside[i] for i in order[:n]])
            score = score_predictor(f"n = {n}", [correction.apply(r, p) for r, p in zip(raw, params)], first)
            print(f"  {line(score)}")
        print(f"\ntime per prediction {1e6 * predict_s:.0f} us; per measurement {measure_s:.2f} s "
              f"(round medians of a network spread by a median {spread:.1%})")
        return {"scores": [dataclasses.asdict(score) for score in scores],
                "networks": len(specs)}


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
