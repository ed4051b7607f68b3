"""Build a PyTorch module from a :class:`~scaling_search.spec.NetworkSpec`.

The layer layout follows the official EfficientNet code and torchvision's ``efficientnet.py`` so that
parameter counts agree exactly: conv layers without bias, BatchNorm after every conv, SiLU activations,
squeeze-excitation with biased 1x1 convs sized from the block's input channels, a residual connection with
stochastic depth when the block keeps shape, dropout before the linear classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from scaling_search.spec import NetworkSpec, load_spec, squeeze_channels

#: Official code: ``batch_norm_momentum=0.99`` (TF decay), i.e. 0.01 in PyTorch's convention; ``epsilon=1e-3``.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


class ConvBNAct(nn.Sequential):
    """Convolution (no bias, 'same' padding for odd kernels), BatchNorm and an optional SiLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
        bn_momentum: float = BN_MOMENTUM,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=bn_momentum),
        ]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018) as used in EfficientNet: pool, 1x1 reduce, SiLU, 1x1, sigmoid."""

    def __init__(self, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.act = nn.SiLU(inplace=True)
        self.expand = nn.Conv2d(squeezed, channels, 1)

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
    """Mobile inverted bottleneck (Sandler et al., 2018) with SE, as in EfficientNet."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel: int,
        stride: int,
        se_ratio: float,
        drop_rate: float,
        bn_momentum: float = BN_MOMENTUM,
    ) -> None:
        super().__init__()
        expanded = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, expanded, 1, bn_momentum=bn_momentum))
        layers.append(ConvBNAct(expanded, expanded, kernel, stride, groups=expanded, bn_momentum=bn_momentum))
        if se_ratio > 0:
            layers.append(SqueezeExcite(expanded, squeeze_channels(in_channels, se_ratio)))
        layers.append(ConvBNAct(expanded, out_channels, 1, activation=False, bn_momentum=bn_momentum))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.drop = StochasticDepth(drop_rate) if self.use_residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_residual:
            out = self.drop(out) + x
        return out


class EfficientNet(nn.Module):
    """The network a :class:`NetworkSpec` describes; ``self.spec`` keeps the (frozen) description."""

    def __init__(self, spec: NetworkSpec, bn_momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.spec = spec
        blocks: list[nn.Module] = []
        total = spec.num_blocks
        index = 0
        for stage in spec.stages:
            for position, block_in in enumerate(stage.block_inputs()):
                blocks.append(
                    MBConv(
                        block_in,
                        stage.out_channels,
                        stage.expand_ratio,
                        stage.kernel,
                        stage.stride if position == 0 else 1,
                        stage.se_ratio,
                        # Official code and torchvision: rate grows linearly with the global block index.
                        drop_rate=spec.drop_connect * index / total,
                        bn_momentum=bn_momentum,
                    )
                )
                index += 1
        self.stem = ConvBNAct(spec.input_channels, spec.stem_channels, 3, 2, bn_momentum=bn_momentum)
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBNAct(spec.stages[-1].out_channels, spec.head_channels, 1, bn_momentum=bn_momentum)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(spec.dropout)
        self.classifier = nn.Linear(spec.head_channels, spec.num_classes)
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


def build_model(spec: NetworkSpec | str | Path, *, bn_momentum: float = BN_MOMENTUM) -> EfficientNet:
    """Build the PyTorch module for a spec, a spec JSON file or an exported model config."""
    return EfficientNet(load_spec(spec), bn_momentum=bn_momentum)


__all__ = ["BN_EPS", "BN_MOMENTUM", "EfficientNet", "MBConv", "build_model"]
