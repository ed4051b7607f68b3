"""Proxy trainer vs a plain PyTorch loop: training images/s on the same model, data and resolution, one run.

The plain loop is what a user would write first: a DataLoader over a TensorDataset of pre-resized float
images, NCHW, default threads, SGD, cross-entropy. Ours: pre-resized cached tensors, batched augmentation,
channels_last, explicit threads. Each side trains ``--epochs`` epochs; the median epoch throughput is printed
with the ratio.

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


def plain_loop(spec, images, labels, epochs: int, batch_size: int) -> list[float]:
    torch.manual_seed(0)
    model = build_model(spec, bn_momentum=0.1).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True, drop_last=True)
    rates = []
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(y)
        rates.append(seen / (time.perf_counter() - start))
    return rates


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
    args = parser.parse_args()

    data = load_dataset(args.data, subset=args.subset)
    spec = replace(scale(efficientnet(args.model), width=args.width), resolution=args.resolution,
                   num_classes=data.num_classes)
    images, labels = data.split("train", args.resolution)
    print(f"{data.describe()}; {args.model} width {args.width} at {args.resolution}px, batch {args.batch_size}; "
          f"torch {torch.__version__}, default threads {torch.get_num_threads()}")

    plain = plain_loop(spec, images.clone(), labels, args.epochs, args.batch_size)
    ours = []
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, lr=0.05)
    for seed in range(args.epochs):
        ours.append(train_proxy(spec, data, replace(settings, seed=seed)).images_per_s)
    plain_median, ours_median = statistics.median(plain), statistics.median(ours)
    print(f"plain loop : {plain_median:7.1f} images/s (epochs: {', '.join(f'{r:.1f}' for r in plain)})")
    print(f"trainer    : {ours_median:7.1f} images/s (epochs: {', '.join(f'{r:.1f}' for r in ours)})")
    print(f"ratio      : {ours_median / plain_median:.2f}x")


if __name__ == "__main__":
    main()
