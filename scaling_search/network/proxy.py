"""The proxy: one pure, named function from a deployment-scale spec to the spec that is actually trained.

Every candidate of a study (stage-1 sample, grid point, ablation point, family member) is defined at
*deployment scale*: the network a user will train and ship (B0 at 224 px by default). Its costs, the
``alpha * beta**2 * gamma**2 ~= 2`` constraint, budgets and exports are computed there. Accuracy is measured
on :func:`to_proxy` of it: the same network shrunk in resolution and width (and optionally depth) by factors
that are fixed once per study from the deployment baseline, so every candidate is shrunk alike.

Rounding is chosen so the proxy never erases a difference it exists to measure: a candidate's proxy moves
away from the baseline's proxy in the direction (per stage width, per stage depth, resolution) that its
deployment spec does. Deployment widths are multiples of 8 (official ``round_filters``); the proxy rounds
``width * c`` to the nearest multiple of ``proxy_channel_divisor(width)``, the largest power of two not above
``8 * width``, so each 8-channel step at deployment scale stays a distinct proxy width. (Rounding to 8 at
width 0.5 mapped B0's 16 and 24 channels, and beta = 1.1's, to the same proxy: the direction was lost.)
Resolutions round to the nearest pixel: the network takes any size at or above its total stride, and a
multiple-of-8 rule lost every resolution step below ``gamma = 1.2`` at a 40 px proxy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from scaling_search.errors import UserError
from scaling_search.network.scaling import CHANNEL_DIVISOR
from scaling_search.network.spec import NetworkSpec

if TYPE_CHECKING:
    from scaling_search.settings.proxy import ProxySettings


@dataclass(frozen=True)
class ProxyTransform:
    """The factors of :func:`to_proxy`, fixed for a study by its deployment baseline.

    Attributes:
        proxy_resolution / base_resolution: the resolution ratio, kept as integers so it is exact.
        width: channel factor.
        depth: repeats factor.
    """

    proxy_resolution: int
    base_resolution: int
    width: float = 1.0
    depth: float = 1.0

    @classmethod
    def for_baseline(cls, settings: ProxySettings, baseline: NetworkSpec) -> ProxyTransform:
        """The transform that trains ``baseline`` at ``settings.resolution`` pixels; refuses a too-small proxy."""
        if settings.resolution < baseline.total_stride:
            raise UserError(
                f"[proxy] resolution {settings.resolution} px is below the network's total stride "
                f"({baseline.total_stride}); use at least {baseline.total_stride}")
        if settings.resolution > baseline.resolution:
            raise UserError(
                f"[proxy] resolution {settings.resolution} px exceeds the deployment resolution "
                f"{baseline.resolution} px; a proxy is never larger (lower [proxy] resolution or raise --resolution)")
        return cls(settings.resolution, baseline.resolution, float(settings.width), float(settings.depth))

    @property
    def resolution_factor(self) -> float:
        return self.proxy_resolution / self.base_resolution

    @property
    def channel_divisor(self) -> int:
        return proxy_channel_divisor(self.width)


def proxy_channel_divisor(width: float) -> int:
    """The largest power of two at most ``8 * width`` (and at most 8): each deployment 8-channel step survives."""
    divisor = 1
    while divisor * 2 <= min(CHANNEL_DIVISOR, CHANNEL_DIVISOR * width + 1e-9):
        divisor *= 2
    return divisor


def _half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def proxy_channels(channels: int, width: float, divisor: int) -> int:
    """``width * channels`` to the nearest multiple of ``divisor`` (at least one): strictly monotone on
    deployment widths that differ by 8 or more, unlike ``round_filters``' 90% rule."""
    if width == 1.0:
        return channels
    return max(divisor, _half_up(channels * width / divisor) * divisor)


def proxy_resolution(resolution: int, transform: ProxyTransform) -> int:
    """The deployment resolution times the study's factor, to the nearest pixel (exact integer arithmetic)."""
    numerator = resolution * transform.proxy_resolution
    return max(1, (2 * numerator + transform.base_resolution) // (2 * transform.base_resolution))


def to_proxy(spec: NetworkSpec, transform: ProxyTransform) -> NetworkSpec:
    """The network trained to measure the deployment-scale ``spec``: the proxy of the two-scales design.

    Resolution times ``transform.resolution_factor`` (nearest pixel), every width times ``transform.width``
    (nearest multiple of :func:`proxy_channel_divisor`), every stage's repeats times ``transform.depth``
    (nearest, at least 1). Kernels, strides, expand and SE ratios, classes and regularisation rates are kept.
    """
    divisor = transform.channel_divisor

    def channels(value: int) -> int:
        return proxy_channels(value, transform.width, divisor)

    def repeats(value: int) -> int:
        return value if transform.depth == 1.0 else max(1, _half_up(value * transform.depth))

    stages = tuple(
        replace(stage, in_channels=channels(stage.in_channels), out_channels=channels(stage.out_channels),
                repeats=repeats(stage.repeats))
        for stage in spec.stages
    )
    return replace(spec, stem_channels=channels(spec.stem_channels), stages=stages,
                   head_channels=channels(spec.head_channels), resolution=proxy_resolution(spec.resolution, transform))


__all__ = ["ProxyTransform", "proxy_channel_divisor", "proxy_channels", "proxy_resolution",
           "to_proxy"]
