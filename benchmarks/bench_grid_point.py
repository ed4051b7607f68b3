"""What one grid point of a preset costs on this machine, and what its whole stage 2 would: one point trained
exactly as a study's stage 2 trains it (the preset's data, proxy and training, ``repeats`` seeds), timed.

The point defaults to the paper's B0 coefficients (alpha 1.2, beta 1.1, gamma 1.15; Section 4.2), scaled at
phi = 1 at deployment scale and shrunk by the preset's proxy like every grid point. The estimate of stage 2 is
this point's time times the number of grid points, which is an estimate only: grid points differ in cost by
their proxies' MACs (printed beside it, as the grid's MACs relative to this point's).

    python benchmarks/bench_grid_point.py --preset standard --device cuda
    python benchmarks/bench_grid_point.py --preset quick [--alpha 1.2 --beta 1.1 --gamma 1.15]
"""

from __future__ import annotations

from _results import recorded

import argparse
import statistics
import time
from dataclasses import replace

import torch

from scaling_search.network.cost import count_cost
from scaling_search.latency import describe_device
from scaling_search.search.candidate import Candidate
from scaling_search.settings.study import load_study_config
from scaling_search.search.grid import grid_of
from scaling_search.training import choose_device, train_proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="standard", help="smoke, quick, standard or a .toml file")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    parser.add_argument("--alpha", type=float, default=1.2)
    parser.add_argument("--beta", type=float, default=1.1)
    parser.add_argument("--gamma", type=float, default=1.15)
    parser.add_argument("--cuda-graph", default="auto", choices=("auto", "on", "off"),
                        help="capture the training step as a CUDA graph (auto: on CUDA)")
    args = parser.parse_args()
    config = load_study_config(args.preset, {"train": {"device": args.device, "cuda_graph": args.cuda_graph}},
                               name="bench-grid-point",
                               storage="sqlite:///:memory:")
    device = choose_device(config.train.device)
    started = time.perf_counter()
    data = config.data.load()
    load_s = time.perf_counter() - started
    network = config.deployment_network(data.num_classes, data.channels)
    transform = config.proxy_transform(network)
    candidate = Candidate.of(config.deployment.compound(network, args.alpha, args.beta, args.gamma, 1.0), transform)
    grid = grid_of(config, network, transform)
    proxy_macs = count_cost(candidate.proxy).macs
    grid_macs = [count_cost(Candidate.of(config.deployment.compound(network, p.alpha, p.beta, p.gamma, 1.0),
                                         transform).proxy).macs for p in grid.points]
    print(f"preset {args.preset} on {describe_device(device)}, torch {torch.__version__}; {data.describe()} "
          f"(loaded in {load_s:.1f} s)")
    print(f"point alpha {args.alpha} beta {args.beta} gamma {args.gamma}: deployment "
          f"{candidate.deployment.resolution} px {count_cost(candidate.deployment).macs / 1e6:.0f}M MACs; proxy "
          f"{candidate.proxy.resolution} px {proxy_macs / 1e6:.1f}M MACs; {config.train.epochs} epochs, batch "
          f"{config.train.batch_size}, {config.search.repeats} seed(s), cuda_graph {args.cuda_graph}")

    walls, rates = [], []
    for repeat in range(config.search.repeats):
        settings = replace(config.train, seed=config.train.seed + repeat)
        result = train_proxy(candidate.proxy, data, settings, progress=True)
        walls.append(result.wall_s)
        rates.append(result.images_per_s)
        print(f"  seed {settings.seed}: val top-1 {result.val_top1:.2%}, {result.wall_s:.1f} s, "
              f"{result.images_per_s:.0f} training images/s ({result.device})")
    point_s = sum(walls)
    relative = [m / proxy_macs for m in grid_macs]
    print(f"one grid point: {point_s:.1f} s ({config.search.repeats} seed(s), median {statistics.median(rates):.0f} "
          f"images/s)")
    print(f"stage 2: {len(grid.points)} grid points x {point_s:.1f} s = about {len(grid.points) * point_s / 60:.1f} "
          f"min at {config.search.workers} worker(s) (grid proxies' MACs {min(relative):.2f}-{max(relative):.2f}x "
          f"this point's)")


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
