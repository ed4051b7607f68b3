"""Many proxy trainings one after another in one process (as a stage's worker or the parent trains them), with and
without handing the C heap's free pages back after each (``release_free_memory``: glibc's ``malloc_trim``); each
variant in a process of its own, both at once (memory, not time, is compared).

The networks are eight grid points of the quick preset's B0 at the proxy of an 80-px reference (the largest
resolution ``bench_memory.py`` trains at: 80 to 112 px), each trained ``--steps`` steps at batch 64 on random
images and evaluated once at batch 128, one thread. Printed: the anonymous memory left after each training, and the
process's peak RSS.

    python benchmarks/bench_heap.py [--resolution 80] [--steps 6]
"""

from __future__ import annotations

from _results import recorded

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = [(1, 1, 1.4), (1.2, 1.1, 1.2), (1.4, 1, 1.2), (2, 1, 1), (1, 1.4, 1), (1.1, 1.2, 1.1), (1.6, 1.1, 1),
          (1.7, 1.1, 1)]

CHILD = """
import json, resource, sys
from dataclasses import replace
sys.path.insert(0, {root!r})
import torch
from scaling_search.network.model import build_model
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.settings.study import load_study_config
from scaling_search.training.resources import release_free_memory

def anon_mb():
    status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
    return int(status["RssAnon"].split()[0]) / 1024

torch.set_num_threads(1)
config = load_study_config("quick", {{}}, "x", "sqlite:///unused.db")
base = replace(config.deployment.network_spec(), num_classes=10)
proxy = replace(config.proxy, resolution={resolution})
left = []
for alpha, beta, gamma in {points!r}:
    spec = to_proxy(config.deployment.compound(base, alpha, beta, gamma, 1.0), ProxyTransform.for_baseline(proxy, base))
    model = build_model(spec, bn_momentum=0.1).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    shape = (spec.resolution, spec.resolution)
    for _ in range({steps}):
        images = torch.randn(64, 3, *shape).contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.cross_entropy(model(images), torch.randint(0, 10, (64,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        model(torch.randn(128, 3, *shape).contiguous(memory_format=torch.channels_last))
    del model, optimizer, images, loss
    if {release}:
        release_free_memory()
    left.append([spec.resolution, anon_mb()])
print(json.dumps({{"left_mb": left, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=80)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with recorded("bench_heap") as results:
        children = {release: subprocess.Popen(
            [sys.executable, "-c", CHILD.format(root=str(ROOT), resolution=args.resolution, points=POINTS,
                                                steps=args.steps, release=release)],
            stdout=subprocess.PIPE, text=True) for release in (False, True)}
        rows = {}
        for release, child in children.items():
            out, _ = child.communicate()
            if child.returncode:
                raise SystemExit(f"the child (release={release}) failed with exit {child.returncode}")
            rows["released" if release else "kept"] = json.loads(out.strip().splitlines()[-1])
        for name, row in rows.items():
            left = ", ".join(f"{mb:,.0f}" for _, mb in row["left_mb"])
            print(f"{name:8s}: anonymous MB after each of {len(POINTS)} trainings: {left}; peak RSS "
                  f"{row['peak_mb']:,.1f} MB", flush=True)
        kept, released = rows["kept"], rows["released"]
        print(f"released against kept: peak RSS {released['peak_mb'] / kept['peak_mb']:.2f}x, memory left after the "
              f"last training {released['left_mb'][-1][1] / kept['left_mb'][-1][1]:.2f}x")
        results.update({"resolution": args.resolution, "steps": args.steps, "points": POINTS, "runs": rows})


if __name__ == "__main__":
    main()
