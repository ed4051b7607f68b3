"""A latency table moved to a new machine: how the error falls with the number of whole networks measured there.

``scaling-search latency calibrate --from TABLE.json`` keeps another machine's parts and refits only the
correction on networks measured whole here (:meth:`scaling_search.latency.LatencyTable.adapt`). This benchmark
needs two machines; on one it stands a different configuration of this host in for the source machine: a table
calibrated at ``--source-threads`` threads (default 2) is adapted to ``--threads`` (default 1), which changes
every part's latency by a different factor (convolutions gain from a second thread unevenly). In one run:

1. source: a table calibrated at the source's threads (five B0-family networks and 15 random ones), its parts
   filled for 30 unseen random networks (seed 123), as if the search had run on that machine;
2. target: the 20 calibration networks and the 30 unseen ones measured whole, interleaved, twice (the first is
   the reference; the second, scored against it, is the noise floor); and a table calibrated here from its own
   parts (the cost of not adapting: hundreds of part measurements), its correction fitted beside the reference;
3. the adapted table: the source's parts, the correction fitted on the first n of the 20 calibration networks
   (shuffled, seed 0) as ``adapt`` fits it, for n = 0 (the source's table used as it is) to 20; scored on the
   30 unseen networks with plain MACs beside it.

    python benchmarks/bench_latency_adapt.py [--source-threads 2] [--threads 1] [--rounds 5] [--runs 10]
"""

from __future__ import annotations

from _results import recorded

import argparse
import random
import tempfile
import time
from pathlib import Path

import optuna
import torch

from scaling_search.network.cost import count_cost
from scaling_search.latency import (LatencyTable, calibration_specs, describe_device, fit_correction, fit_relative,
                                    measure_latencies, random_specs, score_predictor)


def line(score) -> str:
    return (f"{score.name:<40} {score.within_10pct:>7.0%} {score.median_abs_error:>10.1%} {score.spearman:>8.3f} "
            f"{score.kendall:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source-threads", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--specs", type=int, default=30, help="unseen networks to score on (default: 30)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    calibration = calibration_specs(samples=15)
    unseen = random_specs(args.specs, seed=123)
    started = time.perf_counter()

    with tempfile.TemporaryDirectory() as cache:
        torch.set_num_threads(args.source_threads)
        source_name = describe_device(torch.device("cpu"))
        source = LatencyTable.open("cpu", 1, cache_dir=Path(cache) / "source")
        source.calibrate(calibration, rounds=args.rounds, runs=args.runs)
        source.fill(unseen)

        torch.set_num_threads(args.threads)
        target_name = describe_device(torch.device("cpu"))
        print(f"source {source_name} ({len(source.entries)} parts) -> target {target_name}; torch {torch.__version__}")
        everything = calibration + unseen
        measurements = [[m.ms for m in measure_latencies(everything, rounds=args.rounds, runs=args.runs)]
                        for _ in range(2)]
        reference, second = measurements[0][len(calibration):], measurements[1][len(calibration):]
        beside = measurements[0][:len(calibration)]
        native = LatencyTable.open("cpu", 1, cache_dir=Path(cache) / "target")
        native_started = time.perf_counter()
        native.fill(everything)
        native_s = time.perf_counter() - native_started
        params = [count_cost(s).params for s in everything]
        native_fit = fit_correction([(native.raw_sum(s, False), p, ms)
                                     for s, p, ms in zip(calibration, params, beside)])
        native_ms = [native_fit.apply(native.raw_sum(s, False), count_cost(s).params) for s in unseen]

        source_raw = [source.raw_sum(s, measure_missing=False) for s in everything]
        macs = [count_cost(s).macs for s in everything]
        macs_fit = fit_relative(list(zip(macs[:len(calibration)], beside)))

        print(f"\n{len(unseen)} unseen networks, reference = 1st measurement on the target"
              f"\n{'':<40} {'+-10%':>7} {'median err':>10} {'rho':>8} {'tau':>8}")
        print(line(score_predictor("n = 0: the source's table as it is",
                                   [source.predict(s, measure_missing=False) for s in unseen], reference)))
        order = list(range(len(calibration)))
        random.Random(0).shuffle(order)
        for n in (2, 3, 5, 10, 15, 20):
            correction = fit_correction([(source_raw[i], params[i], beside[i]) for i in order[:n]])
            predicted = [correction.apply(raw, p) for raw, p in zip(source_raw[len(calibration):],
                                                                  params[len(calibration):])]
            print(line(score_predictor(f"adapted, n = {n} networks measured", predicted, reference)))
        print(line(score_predictor(f"calibrated here ({len(native.entries)} parts, {native_s:.0f} s)", native_ms,
                                   reference)))
        print(line(score_predictor("MACs (fitted on the 20)", [macs_fit[0] * m + macs_fit[1]
                                                               for m in macs[len(calibration):]], reference)))
        print(line(score_predictor("noise floor: 2nd vs 1st measurement", second, reference)))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
