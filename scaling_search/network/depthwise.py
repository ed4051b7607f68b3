"""The depthwise convolution of an MBConv block, with a weight gradient summed tap by tap where the kernel is
larger than its input.

A proxy network runs its last stages on tiny feature maps: B0 at 32 px has its 5x5 depthwise convolutions on
2x2 and 1x1 inputs, where every window hangs over the zero padding. There oneDNN's backward-weights kernel for
depthwise convolutions takes a slow path: one training step of B0 at 32 px, batch 128, spent 252 of its 427 ms
in the backward passes of the depthwise convolutions whose input is at most 4x4 (``torch.profiler``, the
project's EPYC restricted to AVX2 kernels, torch 2.13.0, 2 threads). The weight gradient of a depthwise
convolution is, per kernel tap ``(i, j)``, a sum over the batch and the output positions of the output gradient
times the input shifted by that tap; where the input is smaller than the kernel that is a handful of small
products (only taps that reach the input count). ``benchmarks/bench_depthwise.py`` (same network and batch):
0.3-1.9 ms per layer by taps where oneDNN took 9.7-35.6 ms with AVX2 kernels, 0.2-1.8 ms where it took
1.4-2.9 ms with AVX-512 kernels; all depthwise backward passes of a step 314 -> 18 ms and 26 -> 10 ms. The input
gradient and the forward pass stay oneDNN's.

Only training on the CPU takes this path (a CUDA step keeps cuDNN, evaluation and latency measurement the plain
convolution); the parameters and the state dict are those of ``nn.Conv2d``. The weight gradient equals oneDNN's
up to float rounding (``tests/test_depthwise.py``), so results differ from the plain convolution's only as a
different summation order makes them differ, and stay deterministic.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _valid_outputs(out_size: int, in_size: int, tap: int, stride: int, padding: int) -> tuple[int, int]:
    """The output positions ``[first, last]`` whose window puts kernel tap ``tap`` on the input, not the padding."""
    first = max(0, -((tap - padding) // stride))  # ceil((padding - tap) / stride)
    last = min(out_size - 1, (in_size - 1 + padding - tap) // stride)
    return first, last


def weight_grad_by_taps(inputs: torch.Tensor, grad_output: torch.Tensor, weight: torch.Tensor, stride: int,
                        padding: int) -> torch.Tensor:
    """The gradient of a depthwise convolution's ``(C, 1, k, k)`` ``weight`` (and in its memory format): for each
    tap, the sum over the batch and the output positions of ``grad_output`` times the input that tap reads (taps
    that read only padding stay 0)."""
    kernel = weight.shape[-1]
    height, width = inputs.shape[2:]
    out_height, out_width = grad_output.shape[2:]
    grad = torch.zeros_like(weight)
    for i in range(kernel):
        h0, h1 = _valid_outputs(out_height, height, i, stride, padding)
        if h0 > h1:
            continue
        rows = slice(h0 * stride + i - padding, h1 * stride + i - padding + 1, stride)
        for j in range(kernel):
            w0, w1 = _valid_outputs(out_width, width, j, stride, padding)
            if w0 > w1:
                continue
            columns = slice(w0 * stride + j - padding, w1 * stride + j - padding + 1, stride)
            grad[:, 0, i, j] = (grad_output[:, :, h0:h1 + 1, w0:w1 + 1] * inputs[:, :, rows, columns]).sum((0, 2, 3))
    return grad


class _DepthwiseByTaps(torch.autograd.Function):
    """``F.conv2d`` of a depthwise convolution; backward: oneDNN's input gradient, the weight gradient by taps."""

    @staticmethod
    def forward(ctx: Any, inputs: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(inputs, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(inputs, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad_output = grad_output.to(inputs.dtype)  # under autocast the output (and its gradient) is bf16
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.ops.aten.convolution_backward(
                grad_output, inputs, weight, None, [stride, stride], [padding, padding], [1, 1], False, [0, 0],
                weight.shape[0], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_weight = weight_grad_by_taps(inputs, grad_output, weight, stride, padding)
        return grad_input, grad_weight, None, None


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (square kernel, zero padding, no bias) whose CPU training pass takes the weight
    gradient by taps where the kernel is larger than the input (see the module docstring)."""

    def __init__(self, channels: int, kernel: int, stride: int) -> None:
        super().__init__(channels, channels, kernel, stride, kernel // 2, groups=channels, bias=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel_size[0]
        if (self.training and torch.is_grad_enabled() and inputs.device.type == "cpu"
                and (kernel > inputs.shape[-2] or kernel > inputs.shape[-1])):
            return _DepthwiseByTaps.apply(inputs, self.weight, self.stride[0], self.padding[0])
        return super().forward(inputs)


__all__ = ["DepthwiseConv2d", "weight_grad_by_taps"]
