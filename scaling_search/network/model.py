"""Build a PyTorch module from a :class:`~scaling_search.network.spec.NetworkSpec`, layer by layer from its plan
(:func:`scaling_search.network.layers.plan_network`).

The layer layout follows the official EfficientNet code and torchvision's ``efficientnet.py`` so that
parameter counts agree exactly: conv layers without bias, BatchNorm after every conv, SiLU activations,
squeeze-excitation with biased 1x1 convs sized from the block's input channels, a residual connection with
stochastic depth when the block keeps shape, dropout before the linear classifier.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
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


def _bn(layer: ConvLayer, bn_momentum: float) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(layer.out_channels, eps=BN_EPS, momentum=bn_momentum)


def _act(layer: ConvLayer) -> nn.Module:
    return nn.SiLU(inplace=True) if layer.activation else nn.Identity()


class ConvBNAct(nn.Sequential):
    """A planned convolution, its BatchNorm and its SiLU (the stem and the head), as ``conv``, ``bn``, ``act``."""

    def __init__(self, layer: ConvLayer, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__(OrderedDict(conv=_conv(layer), bn=_bn(layer, bn_momentum), act=_act(layer)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018) as used in EfficientNet: pool, 1x1 reduce, SiLU, 1x1, sigmoid."""

    def __init__(self, plan: SqueezeExcitePlan) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = _conv(plan.reduce)
        self.act = nn.SiLU(inplace=True)
        self.expand = _conv(plan.expand)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.expand(self.act(self.reduce(self.pool(x))))
        return x * torch.sigmoid(scale)


class StochasticDepth(nn.Module):
    """Drop the whole residual branch per sample with probability ``rate`` while training (Huang et al., 2016)."""

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


class MBConv(nn.Module):
    """Mobile inverted bottleneck (Sandler et al., 2018) with SE, as in EfficientNet, built from its
    :class:`~scaling_search.network.layers.BlockPlan`; layers named as timm's: ``conv_pw, bn1, act1, conv_dw, bn2, act2,
    se, conv_pwl, bn3`` (``conv_pw``/``bn1``/``act1`` are identities when the block does not expand)."""

    def __init__(self, plan: BlockPlan, drop_rate: float = 0.0, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        identity = nn.Identity
        pw = plan.conv_pw
        self.conv_pw = _conv(pw) if pw else identity()
        self.bn1 = _bn(pw, bn_momentum) if pw else identity()
        self.act1 = _act(pw) if pw else identity()
        self.conv_dw = _conv(plan.conv_dw)
        self.bn2 = _bn(plan.conv_dw, bn_momentum)
        self.act2 = _act(plan.conv_dw)
        self.se = SqueezeExcite(plan.se) if plan.se else identity()
        self.conv_pwl = _conv(plan.conv_pwl)
        self.bn3 = _bn(plan.conv_pwl, bn_momentum)
        self.use_residual = plan.residual
        self.drop = StochasticDepth(drop_rate) if self.use_residual else identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv_pw(x)))
        out = self.se(self.act2(self.bn2(self.conv_dw(out))))
        out = self.bn3(self.conv_pwl(out))
        if self.use_residual:
            out = self.drop(out) + x
        return out


class EfficientNet(nn.Module):
    """The network a :class:`NetworkSpec` describes; ``self.spec`` keeps the (frozen) description."""

    def __init__(self, spec: NetworkSpec, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.spec = spec
        plan = plan_network(spec)
        total = len(plan.blocks)
        self.stem = ConvBNAct(plan.stem, bn_momentum)
        # Official code and torchvision: the stochastic-depth rate grows linearly with the global block index.
        self.blocks = nn.Sequential(*(MBConv(block, spec.drop_connect * block.index / total, bn_momentum)
                                      for block in plan.blocks))
        self.head = ConvBNAct(plan.head.conv, bn_momentum)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        x = torch.flatten(self.pool(x), 1)
        return self.classifier(self.dropout(x))


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the convolution before it, in place, and put ``model`` in eval mode.

    Deployment runtimes (ONNX Runtime, TensorRT, TFLite) run inference this way: eval-mode BatchNorm is an
    affine map per channel that the convolution's weights and bias absorb. Outputs match the eval-mode model
    up to float rounding; use the folded model for inference and latency only.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in list(model.modules()):
        if isinstance(module, ConvBNAct):
            pairs = [("conv", "bn")]
        elif isinstance(module, MBConv):
            pairs = [("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")]
        else:
            continue
        for conv_name, bn_name in pairs:
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(module, bn_name, nn.Identity())
    return model


def build_model(spec: NetworkSpec | str | Path, *, bn_momentum: float = BN_MOMENTUM) -> EfficientNet:
    """Build the PyTorch module for a spec, a spec JSON file or an exported model config."""
    return EfficientNet(load_spec(spec), bn_momentum=bn_momentum)


__all__ = ["BN_EPS", "BN_MOMENTUM", "ConvBNAct", "EfficientNet", "MBConv", "build_model", "fold_batchnorm"]
