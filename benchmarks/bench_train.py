"""Proxy trainer vs a plain PyTorch loop: training images/s on the same model, data and resolution, one run.

The plain loop is what a user would write first: a DataLoader over a TensorDataset of pre-resized float
images, NCHW, fp32, default threads, SGD, cross-entropy (on CUDA, each batch copied to the GPU). Ours:
pre-resized cached tensors, batched augmentation, channels_last, explicit threads; on the CPU in one process
and data-parallel over ``--processes`` single-threaded processes (:mod:`scaling_search.training.distributed`), with
DistributedDataParallel's bucketed all-reduce and, side by side, with one flat all-reduce after backward; on CUDA with
AMP (bf16), the images on the GPU (:func:`scaling_search.training.place_images`) and each step's forward and backward
pass replayed as one CUDA graph (:mod:`scaling_search.training.cuda_graph`). The plain loop trains the model
:func:`scaling_search.build_model` builds, as a user would, so it has the depthwise convolutions whose weight
gradient is summed by taps on tiny inputs (:mod:`scaling_search.network.depthwise`); on the CPU two more lines show
what they are worth: the plain loop and the one-process trainer with oneDNN's depthwise backward instead
("stock depthwise"). Each side trains
``--epochs`` epochs, interleaved so that machine noise hits all of them alike; the median epoch throughput
(training steps only, as for the plain loop) is printed with the ratios.

On CUDA the first round is a warm-up (CUDA context, cuDNN heuristics) and is dropped, and more lines say where
a difference comes from: the plain loop with bf16 autocast, then with channels_last too; the trainer without the
CUDA graph (every kernel launched from Python), with the images in host memory instead of on the GPU, and with
channels_last off (auto turns it on where the step is a CUDA graph). The first epoch's training loss of the
trainer with and without the graph, both in NCHW, is printed side by side: the graph must not change what is
trained.

    python benchmarks/bench_train.py [--data ../shared/data/cifar10.npz] [--subset 3000] [--width 0.5]
    python benchmarks/bench_train.py --device cuda   # 64 px, batch 256, 10000 images unless given
"""

from __future__ import annotations

from _results import recorded

import argparse
import statistics
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from unittest.mock import patch

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import scaling_search.training.loop as train_module

from scaling_search.data import load_dataset
from scaling_search.network.depthwise import DepthwiseConv2d
from scaling_search.network.family import efficientnet
from scaling_search.network.model import build_model
from scaling_search.network.scaling import scale
from scaling_search.latency import describe_device
from scaling_search.training import TrainSettings, train_proxy


def plain_epoch(spec, images, labels, batch_size: int, seed: int, device: torch.device,
                bf16: bool = False, channels_last: bool = False) -> float:
    """Images/s of one epoch of the loop a user would write first (``bf16``, ``channels_last``: the lines a
    CUDA user adds next)."""
    torch.manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(spec, bn_momentum=0.1).train().to(device, memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True, drop_last=True)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    start, seen = time.perf_counter(), 0
    for x, y in loader:
        x, y = x.to(device).contiguous(memory_format=memory_format), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
    synchronize()
    return seen / (time.perf_counter() - start)


def trainer_epoch(spec, data, settings: TrainSettings, images_on_gpu: bool = True):
    """One run of the proxy trainer; ``images_on_gpu=False`` keeps the images in host memory."""
    if images_on_gpu:
        return train_proxy(spec, data, settings)
    with patch.object(train_module, "place_images", partial(train_module.place_images, share=0.0)):
        return train_proxy(spec, data, settings)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10.npz"
    parser.add_argument("--data", default=str(default) if default.exists() else "synthetic")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--subset", type=int, help="training images (default: 3000 on the CPU, 10000 on CUDA)")
    parser.add_argument("--model", default="b0")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--resolution", type=int, help="px (default: 32 on the CPU, 64 on CUDA)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, help="images per step (default: 128 on the CPU, 256 on CUDA)")
    parser.add_argument("--processes", type=int, default=2, help="data-parallel processes of the second CPU trainer")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    subset = args.subset or (10000 if cuda else 3000)
    resolution = args.resolution or (64 if cuda else 32)
    batch_size = args.batch_size or (256 if cuda else 128)
    device = torch.device(args.device)

    data = load_dataset(args.data, subset=subset, synthetic_train_per_class=max(400, subset // 10))
    spec = replace(scale(efficientnet(args.model), width=args.width), resolution=resolution,
                   num_classes=data.num_classes)
    images, labels = data.split("train", resolution)
    where = describe_device(device) if cuda else \
        f"{describe_device(device)} ({torch.backends.cpu.get_cpu_capability()}; 't' = default threads)"
    print(f"{data.describe()}; {args.model} width {args.width} at {resolution}px, batch {batch_size}; "
          f"torch {torch.__version__}; {where}")

    default_threads = torch.get_num_threads()
    settings = TrainSettings(epochs=1, batch_size=batch_size, lr=0.05, device=args.device)
    names = ["plain loop", "trainer, 1 process"]
    if cuda:
        names += ["plain loop + bf16", "plain loop + bf16 + channels_last", "trainer, no CUDA graph",
                  "trainer, images in host memory", "trainer, channels_last off"]
    else:  # data-parallel with DistributedDataParallel (the trainer's default), then with a flat all-reduce
        names += [f"trainer, {args.processes} processes x 1 thread", "  same, flat all-reduce after backward",
                  "plain loop, stock depthwise", "trainer, 1 process, stock depthwise"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    parallel_wall: list[float] = []
    losses: list[tuple[float, float]] = []  # CUDA: the trainer's loss with and without the CUDA graph
    warmup = 1 if cuda else 0
    for seed in range(args.epochs + warmup):
        torch.set_num_threads(default_threads)
        seeded = replace(settings, seed=seed)
        epoch = {"plain loop": plain_epoch(spec, images.clone(), labels, batch_size, seed, device),
                 "trainer, 1 process": trainer_epoch(spec, data, seeded).images_per_s}
        if cuda:
            epoch["plain loop + bf16"] = plain_epoch(spec, images.clone(), labels, batch_size, seed, device, True)
            epoch["plain loop + bf16 + channels_last"] = plain_epoch(spec, images.clone(), labels, batch_size, seed,
                                                                     device, True, True)
            eager = trainer_epoch(spec, data, replace(seeded, cuda_graph="off"))  # auto: NCHW without the graph
            epoch["trainer, no CUDA graph"] = eager.images_per_s
            epoch["trainer, images in host memory"] = trainer_epoch(spec, data, seeded, False).images_per_s
            graphed_nchw = trainer_epoch(spec, data, replace(seeded, channels_last="off"))
            epoch["trainer, channels_last off"] = graphed_nchw.images_per_s
            losses.append((graphed_nchw.train_loss, eager.train_loss))  # the same layout: only the graph differs
        else:
            result = train_proxy(spec, data, replace(seeded, processes=args.processes))
            epoch[names[2]] = result.images_per_s
            parallel_wall.append(result.wall_s)
            with patch.object(train_module, "GRADIENT_SYNC", "flat"):
                flat = train_proxy(spec, data, replace(seeded, processes=args.processes))
            epoch[names[3]] = flat.images_per_s
            if flat.history[-1].train_loss != result.history[-1].train_loss:
                raise SystemExit("DDP and the flat all-reduce trained different numbers: a bug")
            with patch.object(DepthwiseConv2d, "forward", nn.Conv2d.forward):  # oneDNN's backward everywhere
                epoch[names[4]] = plain_epoch(spec, images.clone(), labels, batch_size, seed, device)
                epoch[names[5]] = trainer_epoch(spec, data, seeded).images_per_s
        if seed >= warmup:
            for name, rate in epoch.items():
                rates[name].append(rate)

    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, values in rates.items():
        print(f"{name:<38}: {medians[name]:7.1f} images/s (epochs: {', '.join(f'{r:.1f}' for r in values)})")
    base = medians["plain loop"]
    for name in names[1:]:
        print(f"ratio, {name:<31}: {medians[name] / base:.2f}x")
    for seed, (with_graph, without) in enumerate(losses):
        print(f"seed {seed}: training loss (NCHW) with the CUDA graph {with_graph:.5f}, without {without:.5f}")
    if parallel_wall:
        print(f"{args.processes}-process run wall time: median {statistics.median(parallel_wall):.1f} s per epoch-run "
              f"(one epoch, evaluation and process start-up included)")
    return {"median_images_per_s": medians, "ratio_to_plain_loop": {name: medians[name] / base for name in names[1:]}}


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
