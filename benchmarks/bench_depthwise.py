"""Depthwise backward per layer: oneDNN's input and weight gradients against oneDNN's input gradient plus the
weight gradient by taps (:mod:`scaling_search.network.depthwise`), for every depthwise convolution of one network.

Each layer gets its own input shape (from a forward pass of the network at ``--resolution``, batch
``--batch``), channels_last as the trainer runs it; both sides are timed alternately, median of ``--repeats``,
and the two weight gradients are compared. Layers the model sends through the taps (kernel larger than the
input) are starred; the totals add up the layers as the model runs them and as oneDNN alone would.

    python benchmarks/bench_depthwise.py [--resolution 32] [--width 1.0] [--batch 128]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_depthwise.py   # AVX2 kernels
"""

from __future__ import annotations

from _results import recorded

import argparse
import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from scaling_search.network.depthwise import DepthwiseConv2d, weight_grad_by_taps
from scaling_search.network.family import efficientnet
from scaling_search.latency import describe_device
from scaling_search.network.model import build_model
from scaling_search.network.scaling import scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="b0")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    spec = replace(scale(efficientnet(args.model), width=args.width), resolution=args.resolution, num_classes=10)
    model = build_model(spec).to(memory_format=torch.channels_last)
    shapes: list[tuple[DepthwiseConv2d, torch.Size]] = []
    hooks = [module.register_forward_hook(lambda module, inputs, _: shapes.append((module, inputs[0].shape)))
             for module in model.modules() if isinstance(module, DepthwiseConv2d)]
    with torch.no_grad():
        model(torch.randn(args.batch, 3, args.resolution, args.resolution).contiguous(memory_format=torch.channels_last))
    for hook in hooks:
        hook.remove()
    print(f"{args.model} width {args.width} at {args.resolution} px, batch {args.batch}; torch {torch.__version__}; "
          f"{describe_device(torch.device('cpu'))} ({torch.backends.cpu.get_cpu_capability()})")

    backward = torch.ops.aten.convolution_backward
    total_onednn = total_model = 0.0
    for module, shape in shapes:
        kernel, stride, padding = module.kernel_size[0], module.stride[0], module.padding[0]
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(shape, generator=generator).contiguous(memory_format=torch.channels_last)
        weight = module.weight.detach()
        grad_output = torch.randn(F.conv2d(inputs, weight, None, stride, padding, 1, shape[1]).shape,
                                  generator=generator).contiguous(memory_format=torch.channels_last)

        def onednn(mask: list[bool]) -> tuple[torch.Tensor, ...]:
            return backward(grad_output, inputs, weight, None, [stride] * 2, [padding] * 2, [1, 1], False, [0, 0],
                            shape[1], mask)

        def by_taps() -> torch.Tensor:
            onednn([True, False, False])
            return weight_grad_by_taps(inputs, grad_output, weight, stride, padding)

        sides = {"onednn": lambda: onednn([True, True, False]), "taps": by_taps}
        times: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(2):
            for run in sides.values():
                run()
        for _ in range(args.repeats):
            for name, run in sides.items():
                started = time.perf_counter()
                run()
                times[name].append(1000 * (time.perf_counter() - started))
        onednn_ms, taps_ms = (statistics.median(times[name]) for name in sides)
        expected = onednn([True, True, False])[1]
        error = ((by_taps() - expected).abs().max() / expected.abs().max()).item()
        taken = kernel > shape[2] or kernel > shape[3]
        total_onednn += onednn_ms
        total_model += taps_ms if taken else onednn_ms
        print(f"{'*' if taken else ' '} {shape[1]:>5} ch {shape[2]:>3}x{shape[3]:<3} k{kernel} s{stride}: "
              f"oneDNN {onednn_ms:7.2f} ms, by taps {taps_ms:7.2f} ms (largest difference {error:.1e} of the largest gradient)")
    print(f"all depthwise backward passes of one step: oneDNN alone {total_onednn:.1f} ms, as the model runs them "
          f"(* by taps) {total_model:.1f} ms")


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
