"""Exact analytic cost of a :class:`~scaling_search.spec.NetworkSpec`: params, MACs and activations.

Walks the spec, never a module: it costs microseconds and is pinned by tests against the built model
(``sum(p.numel())``), ``torch.utils.flop_counter.FlopCounterMode`` and fvcore. Like pycls's complexity
functions (``pycls/models/blocks.py``), each layer has a cost twin; unlike pycls, both the builder and this
walker read the same frozen spec, so there is nothing to keep in sync by hand.

Conventions:
    ``macs`` ("paper"): multiply-accumulates of convolutions and linear layers, batch 1 -- what the paper
    calls FLOPS and torchvision reports as ``_ops``; equals ``FlopCounterMode`` / 2.
    ``"fvcore"``: additionally counts what fvcore counts in eval mode -- 2 ops per BatchNorm input element and
    1 per adaptive-average-pool input element.
    ``activations``: output elements of every convolution and linear layer (pycls's and fvcore's definition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scaling_search.spec import NetworkSpec, squeeze_channels

Convention = Literal["paper", "fvcore"]
CONVENTIONS: tuple[str, ...] = ("paper", "fvcore")


@dataclass(frozen=True)
class Cost:
    """Cost of one forward pass at batch 1."""

    params: int
    macs: int
    activations: int


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a conv with padding ``kernel // 2``: ``ceil(size / stride)`` for odd kernels."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


class _Tally:
    """Running totals of one walk (plain ints: the walk must run in microseconds)."""

    __slots__ = ("params", "macs", "activations", "fvcore")

    def __init__(self, fvcore: bool) -> None:
        self.params = self.macs = self.activations = 0
        self.fvcore = fvcore

    def conv(self, size: int, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
             bias: bool = False, bn: bool = True) -> int:
        """Add one conv (+ BatchNorm) on a ``size`` x ``size`` input; returns the output size."""
        out = conv_out(size, kernel, stride)
        weights = cout * (cin // groups) * kernel * kernel
        self.params += weights + (cout if bias else 0) + (2 * cout if bn else 0)
        self.macs += weights * out * out
        if bn and self.fvcore:
            self.macs += 2 * cout * out * out  # fvcore: eval-mode batch_norm = 2 ops per element (affine)
        self.activations += cout * out * out
        return out

    def pool(self, elements: int) -> None:
        if self.fvcore:
            self.macs += elements  # fvcore: adaptive_avg_pool2d = 1 op per input element

    def block(self, size: int, cin: int, cout: int, expand: int, kernel: int, stride: int, se_ratio: float) -> int:
        """Add one MBConv block (the layers of :class:`scaling_search.model.MBConv`); returns the output size."""
        expanded = cin * expand
        if expand != 1:
            size = self.conv(size, cin, expanded, 1)
        size = self.conv(size, expanded, expanded, kernel, stride, groups=expanded)
        if se_ratio > 0:
            squeezed = squeeze_channels(cin, se_ratio)
            self.pool(expanded * size * size)
            self.conv(1, expanded, squeezed, 1, bias=True, bn=False)
            self.conv(1, squeezed, expanded, 1, bias=True, bn=False)
        return self.conv(size, expanded, cout, 1)


def count_cost(spec: NetworkSpec, convention: Convention = "paper") -> Cost:
    """Params, MACs and activations of ``spec`` at its own resolution and batch 1, computed from the spec alone.

    Args:
        spec: the network.
        convention: ``"paper"`` counts conv/linear MACs only; ``"fvcore"`` adds BatchNorm and pooling as fvcore does.

    Note:
        ``params`` and ``activations`` do not depend on the convention.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown cost convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    tally = _Tally(fvcore=convention == "fvcore")
    size = tally.conv(spec.resolution, spec.input_channels, spec.stem_channels, 3, 2)
    for stage in spec.stages:
        for position, block_in in enumerate(stage.block_inputs()):
            stride = stage.stride if position == 0 else 1
            size = tally.block(size, block_in, stage.out_channels, stage.expand_ratio, stage.kernel, stride,
                               stage.se_ratio)
    size = tally.conv(size, spec.stages[-1].out_channels, spec.head_channels, 1)
    tally.pool(spec.head_channels * size * size)
    # classifier: Linear(head, classes) with bias
    tally.params += spec.head_channels * spec.num_classes + spec.num_classes
    tally.macs += spec.head_channels * spec.num_classes
    tally.activations += spec.num_classes
    return Cost(tally.params, tally.macs, tally.activations)


__all__ = ["CONVENTIONS", "Convention", "Cost", "conv_out", "count_cost"]
