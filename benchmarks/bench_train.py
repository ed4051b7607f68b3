"""Proxy trainer vs a plain PyTorch loop: training images/s on the same model, data and resolution, one run.

The plain loop is what a user would write first: a DataLoader over a TensorDataset of pre-resized float
images, NCHW, default threads, SGD, cross-entropy. Ours: pre-resized cached tensors, batched augmentation,
channels_last, explicit threads, in one process and data-parallel over ``--processes`` single-threaded
processes (:mod:`scaling_search.parallel`). Each side trains ``--epochs`` epochs, interleaved so that machine
noise hits all of them alike; the median epoch throughput (training steps only, as for the plain loop) is
printed with the ratios, and the data-parallel runs' wall time including process start-up.

    python benchmarks/bench_train.py [--data ../shared/data/cifar10.npz] [--subset 3000] [--width 0.5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from scaling_search.data import load_dataset
from scaling_search.family import efficientnet
from scaling_search.model import build_model
from scaling_search.scaling import scale
from scaling_search.train import TrainSettings, train_proxy


def plain_epoch(spec, images, labels, batch_size: int, seed: int) -> float:
    """Images/s of one epoch of the loop a user would write first."""
    torch.manual_seed(seed)
    model = build_model(spec, bn_momentum=0.1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True, drop_last=True)
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10.npz"
    parser.add_argument("--data", default=str(default) if default.exists() else "synthetic")
    parser.add_argument("--subset", type=int, default=3000)
    parser.add_argument("--model", default="b0")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes of the second trainer")
    args = parser.parse_args()

    data = load_dataset(args.data, subset=args.subset)
    spec = replace(scale(efficientnet(args.model), width=args.width), resolution=args.resolution,
                   num_classes=data.num_classes)
    images, labels = data.split("train", args.resolution)
    print(f"{data.describe()}; {args.model} width {args.width} at {args.resolution}px, batch {args.batch_size}; "
          f"torch {torch.__version__}, default threads {torch.get_num_threads()}")

    default_threads = torch.get_num_threads()
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, lr=0.05)
    plain, single, parallel, parallel_wall = [], [], [], []
    for seed in range(args.epochs):
        torch.set_num_threads(default_threads)
        plain.append(plain_epoch(spec, images.clone(), labels, args.batch_size, seed))
        single.append(train_proxy(spec, data, replace(settings, seed=seed)).images_per_s)
        result = train_proxy(spec, data, replace(settings, seed=seed, processes=args.processes))
        parallel.append(result.images_per_s)
        parallel_wall.append(result.wall_s)

    def line(name: str, rates: list[float]) -> float:
        median = statistics.median(rates)
        print(f"{name:<28}: {median:7.1f} images/s (epochs: {', '.join(f'{r:.1f}' for r in rates)})")
        return median

    base = line("plain loop", plain)
    one = line("trainer, 1 process", single)
    many = line(f"trainer, {args.processes} processes x 1 thread", parallel)
    print(f"ratio, 1 process            : {one / base:.2f}x")
    print(f"ratio, {args.processes} processes          : {many / base:.2f}x")
    print(f"{args.processes}-process run wall time  : median {statistics.median(parallel_wall):.1f} s per epoch-run "
          f"(one epoch, evaluation and process start-up included)")


if __name__ == "__main__":
    main()
