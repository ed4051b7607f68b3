"""Analytic cost model vs fvcore vs ptflops on EfficientNet-B0..B7, measured side by side in one run.

Prints, per model, the median time of each counter, the speed-up of the analytic count over each tracer,
and how far each tracer's MAC count is from the paper convention (conv + linear MACs), in percent.

    python benchmarks/bench_cost.py [--models b0 b1 ...] [--repeats 3]
"""

from __future__ import annotations

from _results import recorded

import argparse
import statistics
import time

import pandas as pd
import torch

from scaling_search.network.counters import count_with
from scaling_search.network.family import FAMILY, efficientnet


def median_seconds(fn, repeats: int, inner: int = 1) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(FAMILY))
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each traced count (median)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for name in args.models:
        spec = efficientnet(name)
        analytic = count_with("analytic", spec)
        row = {"model": name, "res": spec.resolution, "macs": analytic.macs}
        row["analytic_us"] = 1e6 * median_seconds(lambda: count_with("analytic", spec), 5, inner=200)
        for counter in ("fvcore", "ptflops"):
            counted = count_with(counter, spec)
            seconds = median_seconds(lambda: count_with(counter, spec), args.repeats)
            row[f"{counter}_s"] = seconds
            row[f"{counter}_x"] = seconds / (row["analytic_us"] / 1e6)
            row[f"{counter}_mac_diff_%"] = 100.0 * (counted.macs - analytic.macs) / analytic.macs
            row[f"{counter}_params_equal"] = counted.params == analytic.params
        rows.append(row)
        print(f"  {name} done", flush=True)
    frame = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(frame.to_string(index=False))
    print(f"median speed-up of analytic over fvcore:  {frame['fvcore_x'].median():,.0f}x")
    print(f"median speed-up of analytic over ptflops: {frame['ptflops_x'].median():,.0f}x")
    return {"median_speedup_over_fvcore": float(frame["fvcore_x"].median()),
            "median_speedup_over_ptflops": float(frame["ptflops_x"].median()), "models": rows}


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
