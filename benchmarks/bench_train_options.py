"""What else could make proxy training faster on this CPU: each option timed side by side with the trainer's
current choice, interleaved over rounds, medians printed with the ratio (issue #16's list).

* evaluation batch size: the validation pass after every epoch, at 125 / 250 / 500 (the presets') / 1250;
* BatchNorm folded into the convolutions for that pass (what oneDNN fusion would do in eval);
* channels_last against NCHW for the training steps;
* ``torch.compile`` of the training step: its compile time, and the steps it takes to pay that back.

The network is the quick preset's proxy of B0 (width 0.5, 40 px, batch 64); images are random (speed does
not depend on them).

    python benchmarks/bench_train_options.py [--rounds 5] [--steps 20] [--compile]
"""

from __future__ import annotations

from _results import recorded

import argparse
import copy
import statistics
import time
from dataclasses import replace

import torch

from scaling_search.network.family import efficientnet
from scaling_search.latency import describe_device
from scaling_search.network.model import build_model, fold_batchnorm
from scaling_search.network.scaling import scale


def _train_steps(model, images, labels, steps: int) -> float:
    """Images/s of ``steps`` SGD steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * len(labels) / (time.perf_counter() - started)


@torch.no_grad()
def _evaluate(model, images, batch_size: int) -> float:
    """Images/s of one validation pass in batches of ``batch_size``."""
    model.eval()
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        model(images[start:start + batch_size]).argmax(1)
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--val-images", type=int, default=1250)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes)")
    args = parser.parse_args()
    spec = replace(scale(efficientnet("b0", 10), width=0.5), resolution=40)
    batch = 64
    generator = torch.Generator().manual_seed(0)
    train_nchw = torch.randn(batch, 3, 40, 40, generator=generator)
    train_cl = train_nchw.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (batch,), generator=generator)
    val = torch.randn(args.val_images, 3, 40, 40, generator=generator).contiguous(memory_format=torch.channels_last)
    print(f"B0 width 0.5 at 40 px, batch {batch}, {args.val_images} validation images, {args.rounds} rounds; torch "
          f"{torch.__version__}; {describe_device(torch.device('cpu'))} ({torch.backends.cpu.get_cpu_capability()})")

    torch.manual_seed(0)
    trained = build_model(spec).to(memory_format=torch.channels_last)
    _train_steps(trained, train_cl, labels, 10)  # BatchNorm statistics that are not the initial ones
    folded = fold_batchnorm(copy.deepcopy(trained)).to(memory_format=torch.channels_last)
    nchw = copy.deepcopy(trained).to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        trained.eval()
        agree = (trained(val).argmax(1) == folded(val).argmax(1)).float().mean().item()

    evals = {f"eval batch {b}": (lambda b=b: _evaluate(trained, val, b)) for b in (125, 250, 500, 1250)}
    evals["eval batch 500, BatchNorm folded"] = lambda: _evaluate(folded, val, 500)
    trains = {"train channels_last (the trainer's)": lambda: _train_steps(trained, train_cl, labels, args.steps),
              "train NCHW": lambda: _train_steps(nchw, train_nchw, labels, args.steps)}
    rates: dict[str, list[float]] = {name: [] for name in [*evals, *trains]}
    for _ in range(args.rounds):
        for name, run in {**evals, **trains}.items():
            rates[name].append(run())
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, rate in medians.items():
        reference = medians["eval batch 500"] if name.startswith("eval") else \
            medians["train channels_last (the trainer's)"]
        print(f"{name:<38}: {rate:8.1f} images/s  ({rate / reference:.2f}x the current choice)")
    print(f"folded BatchNorm predicts the same class for {agree:.1%} of the validation images")

    if args.compile:
        torch.manual_seed(0)
        eager = build_model(spec).to(memory_format=torch.channels_last)
        compiled_model = copy.deepcopy(eager)
        started = time.perf_counter()
        compiled = torch.compile(compiled_model)
        _train_steps(compiled, train_cl, labels, 1)  # compiles forward and backward
        compile_s = time.perf_counter() - started
        eager_rates, compiled_rates = [], []
        for _ in range(args.rounds):
            eager_rates.append(_train_steps(eager, train_cl, labels, args.steps))
            compiled_rates.append(_train_steps(compiled, train_cl, labels, args.steps))
        e, c = statistics.median(eager_rates), statistics.median(compiled_rates)
        print(f"torch.compile: {compile_s:.1f} s to compile; {c:.1f} vs {e:.1f} images/s eager ({c / e:.2f}x)")
        if c > e:
            per_step_saved = batch / e - batch / c
            print(f"  pays back after {compile_s / per_step_saved:,.0f} steps "
                  f"(a quick-preset grid point trains about {3 * 5000 // batch} steps)")
        else:
            print("  never pays back: the compiled step is not faster")


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
