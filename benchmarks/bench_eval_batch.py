"""One proxy training on the CPU at two evaluation batch sizes, each in a process of its own, one after the other:
the memory it adds to the process (peak RSS after the training less before it) and its wall time.

The network is the quick preset's B0 at gamma 1.4, its proxy at ``--resolution`` px (80 by default: the largest
resolution ``bench_memory.py`` trains at, where evaluation at batch 500 was a large part of the peak), on the
same generated 64-px data as ``bench_memory.py`` (4,200 train + 1,400 val images), one epoch, one thread,
splits held in memory.

    python benchmarks/bench_eval_batch.py [--resolution 80] [--batches 500 128]
"""

from __future__ import annotations

from _results import recorded
from bench_memory import NATIVE, TRAIN_PER_CLASS, VAL_PER_CLASS

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
from dataclasses import replace
sys.path.insert(0, {root!r})
from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.settings.study import load_study_config
from scaling_search.training import train_proxy

data = synthetic_dataset({train}, {val}, seed=0, resolution={native})
config = load_study_config("quick", {{"train": {{"epochs": 1, "threads": 1, "eval_batch_size": {batch}}}}}, "x",
                           "sqlite:///unused.db")
network = config.deployment.compound(replace(config.deployment.network_spec(), num_classes=10), 1.0, 1.0, 1.4, 1.0)
spec = to_proxy(network, ProxyTransform.for_baseline(replace(config.proxy, resolution={resolution}), network))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
result = train_proxy(spec, data, config.train)
print(json.dumps({{"added_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before,
                  "seconds": time.perf_counter() - started, "val_top1": result.val_top1}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=80)
    parser.add_argument("--batches", type=int, nargs="+", default=[500, 128])
    args = parser.parse_args()
    with recorded("bench_eval_batch") as results:
        rows = {}
        for batch in args.batches:
            code = CHILD.format(root=str(ROOT), batch=batch, resolution=args.resolution, train=TRAIN_PER_CLASS,
                                val=VAL_PER_CLASS, native=NATIVE)
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            rows[batch] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"evaluation batch {batch:4d}: +{rows[batch]['added_mb']:7.1f} MB peak RSS over the start, "
                  f"{rows[batch]['seconds']:5.1f} s, val top-1 {rows[batch]['val_top1']:.4f}", flush=True)
        first, last = args.batches[0], args.batches[-1]
        print(f"batch {last} against {first}: {rows[last]['added_mb'] / rows[first]['added_mb']:.2f}x the added "
              f"memory, {rows[last]['seconds'] / rows[first]['seconds']:.2f}x the time")
        results.update({"resolution": args.resolution, "runs": rows})


if __name__ == "__main__":
    main()
