"""Build a PyTorch module from a :class:`~scaling_search.network.spec.NetworkSpec`, layer by layer from its plan
(:func:`scaling_search.network.layers.plan_network`).

The layer layout follows the official EfficientNet code (conv layers without bias, BatchNorm after every conv,
SiLU, squeeze-excitation with biased 1x1 convs sized from the block's input channels, a residual with stochastic
depth when the block keeps shape, dropout before the linear classifier), so parameter counts equal
torchvision's. The module tree and the state-dict keys are timm's ``EfficientNet`` for the same network
(``timm/models/efficientnet.py``, ``_efficientnet_blocks.py``): ``conv_stem, bn1, blocks.<stage>.<block>,
conv_head, bn2, global_pool, classifier``; an expand-ratio-1 block is timm's ``DepthwiseSeparableConv``
(``conv_dw, bn1, aa, se, conv_pw, bn2, drop_path``), any other its ``InvertedResidual`` (``conv_pw, bn1, conv_dw,
bn2, aa, se, conv_pwl, bn3, drop_path``); BatchNorm carries its activation (``BatchNormAct2d``: ``drop``, ``act``).
So weights load into timm with ``load_state_dict(strict=True)`` and back (``tests/test_timm.py`` checks a
recorded timm fixture).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from scaling_search.network.depthwise import DepthwiseConv2d
from scaling_search.network.layers import BlockPlan, ConvLayer, SqueezeExcitePlan, plan_network
from scaling_search.network.spec import NetworkSpec, load_spec

#: Official code: ``batch_norm_momentum=0.99`` (TF decay), i.e. 0.01 in PyTorch's convention; ``epsilon=1e-3``.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def _conv(layer: ConvLayer) -> nn.Conv2d:
    if layer.groups > 1 and layer.groups == layer.in_channels == layer.out_channels and not layer.bias:
        return DepthwiseConv2d(layer.in_channels, layer.kernel, layer.stride)
    return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.kernel // 2,
                     groups=layer.groups, bias=layer.bias)


class BatchNormAct2d(nn.BatchNorm2d):
    """BatchNorm followed by its activation (SiLU, or none), as timm's ``BatchNormAct2d``: a ``BatchNorm2d``
    (its state-dict keys unchanged) with ``drop`` and ``act`` children."""

    def __init__(self, num_features: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM,
                 apply_act: bool = True) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.drop = nn.Identity()
        self.act = nn.SiLU(inplace=True) if apply_act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(super().forward(x)))


class BatchNormSettings(NamedTuple):
    """Every BatchNorm of a network: epsilon and momentum (PyTorch's convention)."""

    eps: float = BN_EPS
    momentum: float = BN_MOMENTUM


def _bn(layer: ConvLayer, bn: BatchNormSettings) -> BatchNormAct2d:
    return BatchNormAct2d(layer.out_channels, bn.eps, bn.momentum, apply_act=layer.activation)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018) as used in EfficientNet: pool, 1x1 reduce, SiLU, 1x1, sigmoid."""

    def __init__(self, plan: SqueezeExcitePlan) -> None:
        super().__init__()
        self.conv_reduce = _conv(plan.reduce)
        self.act1 = nn.SiLU(inplace=True)
        self.conv_expand = _conv(plan.expand)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.conv_expand(self.act1(self.conv_reduce(F.adaptive_avg_pool2d(x, 1))))
        return x * self.gate(scale)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016): drop the whole residual branch per sample with probability ``rate``
    while training, scaling the kept ones by ``1 / (1 - rate)``."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate else nn.Identity()


class DepthwiseSeparableConv(nn.Module):
    """An MBConv block of expand ratio 1 (timm's ``ds`` block): depthwise conv, SE, pointwise projection."""

    def __init__(self, plan: BlockPlan, drop_rate: float = 0.0, bn: BatchNormSettings = BatchNormSettings()) -> None:
        super().__init__()
        self.has_skip = plan.residual
        self.conv_dw = _conv(plan.conv_dw)
        self.bn1 = _bn(plan.conv_dw, bn)
        self.aa = nn.Identity()
        self.se = SqueezeExcite(plan.se) if plan.se else nn.Identity()
        self.conv_pw = _conv(plan.conv_pwl)
        self.bn2 = _bn(plan.conv_pwl, bn)
        self.drop_path = _drop_path(drop_rate)

    def zero_init_last(self) -> None:
        """The projection's BatchNorm scale at zero, so the residual branch starts as nothing (Goyal et al., 2017)."""
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_pw(self.se(self.aa(self.bn1(self.conv_dw(x))))))
        return self.drop_path(out) + x if self.has_skip else out


class InvertedResidual(nn.Module):
    """Mobile inverted bottleneck (Sandler et al., 2018) with SE, as in EfficientNet (timm's ``ir`` block)."""

    def __init__(self, plan: BlockPlan, drop_rate: float = 0.0, bn: BatchNormSettings = BatchNormSettings()) -> None:
        super().__init__()
        if plan.conv_pw is None:
            raise ValueError("a block without expansion is a DepthwiseSeparableConv (see make_block)")
        self.has_skip = plan.residual
        self.conv_pw = _conv(plan.conv_pw)
        self.bn1 = _bn(plan.conv_pw, bn)
        self.conv_dw = _conv(plan.conv_dw)
        self.bn2 = _bn(plan.conv_dw, bn)
        self.aa = nn.Identity()
        self.se = SqueezeExcite(plan.se) if plan.se else nn.Identity()
        self.conv_pwl = _conv(plan.conv_pwl)
        self.bn3 = _bn(plan.conv_pwl, bn)
        self.drop_path = _drop_path(drop_rate)

    def zero_init_last(self) -> None:
        """The projection's BatchNorm scale at zero, so the residual branch starts as nothing (Goyal et al., 2017)."""
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv_dw(self.bn1(self.conv_pw(x))))
        out = self.bn3(self.conv_pwl(self.se(self.aa(out))))
        return self.drop_path(out) + x if self.has_skip else out


Block = DepthwiseSeparableConv | InvertedResidual


def make_block(plan: BlockPlan, drop_rate: float = 0.0, bn: BatchNormSettings = BatchNormSettings()) -> Block:
    """The module of one planned block: timm's ``DepthwiseSeparableConv`` without expansion, else its
    ``InvertedResidual``."""
    kind = InvertedResidual if plan.conv_pw is not None else DepthwiseSeparableConv
    return kind(plan, drop_rate, bn)


def conv_bn_act(layer: ConvLayer, bn: BatchNormSettings = BatchNormSettings()) -> nn.Sequential:
    """A planned convolution and its BatchNorm with activation, as one module (the stem or head alone)."""
    return nn.Sequential(_conv(layer), _bn(layer, bn))


class SelectAdaptivePool2d(nn.Module):
    """Global average pooling, flattened (timm's ``SelectAdaptivePool2d(pool_type="avg", flatten=True)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flatten(self.pool(x))


class EfficientNet(nn.Module):
    """The network a :class:`NetworkSpec` describes; ``self.spec`` keeps the (frozen) description."""

    def __init__(self, spec: NetworkSpec, bn_momentum: float | None = None) -> None:
        super().__init__()
        self.spec = spec
        bn = BatchNormSettings(spec.bn_eps, spec.bn_momentum if bn_momentum is None else bn_momentum)
        self.drop_rate = spec.dropout
        plan = plan_network(spec)
        total = len(plan.blocks)
        self.conv_stem = _conv(plan.stem)
        self.bn1 = _bn(plan.stem, bn)
        # Official code, torchvision and timm: the stochastic-depth rate grows linearly with the global block index.
        stages = [nn.Sequential(*(make_block(block, spec.drop_connect * block.index / total, bn)
                                  for block in plan.blocks if block.stage == stage))
                  for stage in range(len(spec.stages))]
        self.blocks = nn.Sequential(*stages)
        self.conv_head = _conv(plan.head.conv)
        self.bn2 = _bn(plan.head.conv, bn)
        self.global_pool = SelectAdaptivePool2d()
        self.classifier = nn.Linear(plan.head.classifier.in_features, plan.head.classifier.out_features)
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision's EfficientNet initialisation: Kaiming fan-out convs, uniform(+-1/sqrt(out)) classifier.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                bound = 1.0 / module.out_features**0.5
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(self.global_pool(x), p=self.drop_rate, training=self.training)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


#: The (convolution, BatchNorm) pairs of each module kind, in order.
_CONV_BN_PAIRS: tuple[tuple[type[nn.Module], tuple[tuple[str, str], ...]], ...] = (
    (EfficientNet, (("conv_stem", "bn1"), ("conv_head", "bn2"))),
    (InvertedResidual, (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"))),
    (DepthwiseSeparableConv, (("conv_dw", "bn1"), ("conv_pw", "bn2"))),
)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the convolution before it, in place, and put ``model`` in eval mode; each
    BatchNorm is replaced by its activation.

    Deployment runtimes (ONNX Runtime, TensorRT, TFLite) run inference this way: eval-mode BatchNorm is an
    affine map per channel that the convolution's weights and bias absorb. Outputs match the eval-mode model
    up to float rounding; use the folded model for inference and latency only.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in list(model.modules()):
        pairs: tuple[tuple[str, str], ...] = ()
        if isinstance(module, nn.Sequential) and len(module) == 2 and isinstance(module[1], BatchNormAct2d):
            pairs = (("0", "1"),)  # conv_bn_act
        for kind, kind_pairs in _CONV_BN_PAIRS:
            if isinstance(module, kind):
                pairs = kind_pairs
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, BatchNormAct2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, bn.act)
    return model


@torch.no_grad()
def seeded_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter and BatchNorm statistic of ``model`` drawn from a generator seeded with ``seed``, in
    state-dict order, at scales that keep a deep network's outputs of order 1: convolution and linear weights
    normal with variance ``2 / fan_in``, BatchNorm scales and variances uniform in [0.5, 1.5], biases and means
    normal with std 0.1. Two models with the same state-dict keys and shapes get the same weights whatever
    their classes, so outputs can be compared (an untrained EfficientNet's outputs are near 1e-11 and compare
    nothing)."""
    generator = torch.Generator().manual_seed(seed)
    for key, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        name = key.rsplit(".", 1)[-1]
        if name in ("running_var",) or (name == "weight" and tensor.dim() == 1):
            values = 0.5 + torch.rand(tensor.shape, generator=generator)
        elif name == "weight":
            fan_in = tensor[0].numel()
            values = torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        else:  # biases and running means
            values = 0.1 * torch.randn(tensor.shape, generator=generator)
        tensor.copy_(values)
    return model


def build_model(spec: NetworkSpec | str | Path, *, bn_momentum: float | None = None) -> EfficientNet:
    """Build the PyTorch module for a spec, a spec JSON file or an exported model config (``bn_momentum``
    overrides the spec's, as proxy training does)."""
    return EfficientNet(load_spec(spec), bn_momentum=bn_momentum)


__all__ = ["BN_EPS", "BN_MOMENTUM", "BatchNormAct2d", "BatchNormSettings", "Block", "DepthwiseSeparableConv", "DropPath", "EfficientNet",
           "InvertedResidual", "SelectAdaptivePool2d", "SqueezeExcite", "build_model", "conv_bn_act",
           "fold_batchnorm", "make_block", "seeded_weights"]
