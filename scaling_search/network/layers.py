"""The layer plan: one pure function from a spec to the ordered layers of its network.

The builder (:mod:`scaling_search.network.model`), the analytic cost model (:mod:`scaling_search.network.cost`) and the latency
table (:mod:`scaling_search.latency`) all read the network's layout from :func:`plan_network`, so the MBConv
layout and the stride rule live here and nowhere else.

Layout (the official EfficientNet code and torchvision's ``efficientnet.py``; names as timm's
``DepthwiseSeparableConv``/``InvertedResidual``): a 3x3 stride-2 stem; per block an optional 1x1 expansion
``conv_pw``, the depthwise ``conv_dw`` (stride only in a stage's first block), squeeze-and-excitation ``se``
sized from the block's *input* channels, and the linear 1x1 projection ``conv_pwl``; a residual connection when
the block keeps its shape; a 1x1 head convolution, global pooling and the classifier. Every convolution is
bias-free and followed by BatchNorm, except the SE convolutions (biased, no BatchNorm); SiLU everywhere but
after ``conv_pwl``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from scaling_search.network.spec import NetworkSpec, StageSpec, squeeze_channels


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output size of a conv with padding ``kernel // 2``: ``ceil(size / stride)`` for odd kernels."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@dataclass(frozen=True)
class ConvLayer:
    """One convolution on a square ``input_size`` input, with its BatchNorm and activation flags."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    input_size: int
    bias: bool = False
    batchnorm: bool = True
    activation: bool = True  # SiLU after the (BatchNorm of the) convolution

    @property
    def output_size(self) -> int:
        return conv_out(self.input_size, self.kernel, self.stride)

    @property
    def kind(self) -> str:
        if self.groups == 1:
            return "conv"
        return "dwconv" if self.groups == self.in_channels == self.out_channels else "groupconv"


@dataclass(frozen=True)
class PoolLayer:
    """Global average pooling of ``channels`` maps of ``input_size`` x ``input_size``."""

    channels: int
    input_size: int
    kind: str = "pool"


@dataclass(frozen=True)
class LinearLayer:
    """The classifier: a biased linear layer."""

    in_features: int
    out_features: int
    kind: str = "linear"


Layer = ConvLayer | PoolLayer | LinearLayer


@dataclass(frozen=True)
class SqueezeExcitePlan:
    """SE (Hu et al., 2018) as EfficientNet uses it: pool, biased 1x1 reduce, SiLU, biased 1x1 expand, sigmoid."""

    pool: PoolLayer
    reduce: ConvLayer
    expand: ConvLayer

    def layers(self) -> tuple[Layer, ...]:
        return (self.pool, self.reduce, self.expand)


@dataclass(frozen=True)
class BlockPlan:
    """One MBConv block (Sandler et al., 2018; Tan & Le, 2019 Table 1): its layers in order and its residual."""

    index: int  # global block index (stochastic depth grows with it)
    stage: int
    conv_pw: ConvLayer | None  # None when expand_ratio == 1
    conv_dw: ConvLayer
    se: SqueezeExcitePlan | None
    conv_pwl: ConvLayer
    residual: bool

    @property
    def in_channels(self) -> int:
        return (self.conv_pw or self.conv_dw).in_channels

    @property
    def out_channels(self) -> int:
        return self.conv_pwl.out_channels

    @property
    def input_size(self) -> int:
        return (self.conv_pw or self.conv_dw).input_size

    @property
    def output_size(self) -> int:
        return self.conv_pwl.output_size

    def layers(self) -> tuple[Layer, ...]:
        body: list[Layer] = [self.conv_pw] if self.conv_pw is not None else []
        body.append(self.conv_dw)
        if self.se is not None:
            body.extend(self.se.layers())
        body.append(self.conv_pwl)
        return tuple(body)


@dataclass(frozen=True)
class HeadPlan:
    """The 1x1 head convolution, global pooling and the classifier."""

    conv: ConvLayer
    pool: PoolLayer
    classifier: LinearLayer

    def layers(self) -> tuple[Layer, ...]:
        return (self.conv, self.pool, self.classifier)


@dataclass(frozen=True)
class NetworkPlan:
    """The layers of a spec's network, grouped as the builder builds them."""

    stem: ConvLayer
    blocks: tuple[BlockPlan, ...]
    head: HeadPlan

    def layers(self) -> Iterator[Layer]:
        """Every layer in the order a forward pass runs them."""
        yield self.stem
        for block in self.blocks:
            yield from block.layers()
        yield from self.head.layers()


def plan_block(index: int, stage_index: int, stage: StageSpec, in_channels: int, stride: int,
               input_size: int) -> BlockPlan:
    """The layers of one MBConv block of ``stage`` taking ``in_channels`` maps of ``input_size``."""
    expanded = in_channels * stage.expand_ratio
    conv_pw = ConvLayer(in_channels, expanded, 1, 1, 1, input_size) if stage.expand_ratio != 1 else None
    conv_dw = ConvLayer(expanded, expanded, stage.kernel, stride, expanded, input_size)
    size = conv_dw.output_size
    se = None
    if stage.se_ratio > 0:
        squeezed = squeeze_channels(in_channels, stage.se_ratio)
        se = SqueezeExcitePlan(PoolLayer(expanded, size),
                               ConvLayer(expanded, squeezed, 1, 1, 1, 1, bias=True, batchnorm=False),
                               ConvLayer(squeezed, expanded, 1, 1, 1, 1, bias=True, batchnorm=False,
                                         activation=False))
    conv_pwl = ConvLayer(expanded, stage.out_channels, 1, 1, 1, size, activation=False)
    residual = stride == 1 and in_channels == stage.out_channels
    return BlockPlan(index, stage_index, conv_pw, conv_dw, se, conv_pwl, residual)


def plan_network(spec: NetworkSpec) -> NetworkPlan:
    """The ordered layers of ``spec``'s network at ``spec.resolution``: a pure function of the spec.

    A stage's first block takes the stage's ``in_channels`` and its ``stride``; the other ``repeats - 1`` blocks
    map ``out_channels -> out_channels`` with stride 1, as in the official code.
    """
    stem = ConvLayer(spec.input_channels, spec.stem_channels, 3, 2, 1, spec.resolution)
    size = stem.output_size
    blocks: list[BlockPlan] = []
    for stage_index, stage in enumerate(spec.stages):
        for position, block_in in enumerate(stage.block_inputs()):
            block = plan_block(len(blocks), stage_index, stage, block_in, stage.stride if position == 0 else 1, size)
            blocks.append(block)
            size = block.output_size
    conv = ConvLayer(spec.stages[-1].out_channels, spec.head_channels, 1, 1, 1, size)
    head = HeadPlan(conv, PoolLayer(spec.head_channels, size), LinearLayer(spec.head_channels, spec.num_classes))
    return NetworkPlan(stem, tuple(blocks), head)


__all__ = ["BlockPlan", "ConvLayer", "HeadPlan", "Layer", "LinearLayer", "NetworkPlan", "PoolLayer",
           "SqueezeExcitePlan", "conv_out", "plan_block", "plan_network"]
