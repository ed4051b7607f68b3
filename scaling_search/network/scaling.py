"""Depth, width and resolution scaling as pure functions of a :class:`~scaling_search.network.spec.NetworkSpec`.

The rounding rules are those of the official TensorFlow implementation
(``tensorflow/tpu/models/official/efficientnet/efficientnet_model.py``: ``round_filters``,
``round_repeats``), which torchvision's ``efficientnet.py`` reproduces; following them exactly is what makes
our B0..B7 parameter counts equal torchvision's.
"""

from __future__ import annotations

import math
from dataclasses import replace

from scaling_search.network.spec import NetworkSpec

#: Channel counts are multiples of this (official ``depth_divisor``).
CHANNEL_DIVISOR = 8
#: Tolerance that keeps float noise (``5 * 1.4 == 7.000000000000001``) from adding a whole block.
_CEIL_EPS = 1e-9


def round_filters(channels: float, divisor: int = CHANNEL_DIVISOR) -> int:
    """Round a (scaled) channel count to the nearest multiple of ``divisor``, never below 90% of it.

    Official code: ``new = max(divisor, int(c + divisor / 2) // divisor * divisor)``, then one more
    ``divisor`` if the result fell under ``0.9 * c``.
    """
    if not channels > 0:
        raise ValueError(f"channel count must be positive, got {channels}")
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * channels:
        rounded += divisor
    return int(rounded)


#: How scaled repeats are rounded: ``"ceil"`` is the official rule; ``"nearest"`` keeps depth fine-grained.
DEPTH_ROUNDINGS = ("ceil", "nearest")


def round_repeats(repeats: int, depth: float, rule: str = "ceil") -> int:
    """Scale a stage's block count by ``depth``.

    ``"ceil"`` is the official ``round_repeats`` (and torchvision's): it reproduces B0..B7 exactly, but at B0's
    1-4 blocks per stage any depth in (1, 1.25] adds a block to every stage (16 -> 23 blocks, 1.48x MACs).
    ``"nearest"`` rounds half up, at least one block: measured on B0's compound grid (step 0.1, nominal product
    within 0.1 of 2) the achieved MACs ratio then follows ``alpha * beta**2 * gamma**2`` within a median 3.1%
    instead of 21%, and the paper's (1.2, 1.1, 1.15) at phi = 1 costs 2.05x B0 instead of 2.57x.
    """
    if rule == "ceil":
        return int(math.ceil(repeats * depth - _CEIL_EPS))
    if rule == "nearest":
        return max(1, int(math.floor(repeats * depth + 0.5 + _CEIL_EPS)))
    raise ValueError(f"depth rounding must be one of {', '.join(DEPTH_ROUNDINGS)}, got {rule!r}")


def round_resolution(resolution: float, multiple: int = 1) -> int:
    """Round a scaled input resolution to the nearest multiple of ``multiple`` (at least one multiple).

    The paper does not state a rule (its B1..B7 resolutions are hand-picked); at proxy sizes rounding to a
    multiple of 8 keeps every stride-2 stage's feature map exact.
    """
    if multiple < 1:
        raise ValueError(f"resolution multiple must be >= 1, got {multiple}")
    return max(multiple, int(round(resolution / multiple)) * multiple)


def check_multiplier(name: str, value: float) -> None:
    """Refuse a multiplier that is not a positive, finite number (one message for every scaling function)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} multiplier must be a positive number, got {value!r}")


def scale(
    spec: NetworkSpec,
    *,
    depth: float = 1.0,
    width: float = 1.0,
    resolution: float = 1.0,
    resolution_multiple: int = 1,
    depth_rounding: str = "ceil",
) -> NetworkSpec:
    """Scale a network in depth (blocks per stage), width (channels) and input resolution.

    Widths of the stem, every stage and the head use :func:`round_filters`; repeats use
    :func:`round_repeats` with ``depth_rounding``; resolution uses :func:`round_resolution`. Expand ratios, kernels, strides, SE
    ratios and regularisation rates are kept. A multiplier of exactly 1 leaves that dimension unchanged.
    """
    check_multiplier("depth", depth)
    check_multiplier("width", width)
    check_multiplier("resolution", resolution)

    def filters(channels: int) -> int:
        return channels if width == 1.0 else round_filters(channels * width)

    stages = tuple(
        replace(
            stage,
            in_channels=filters(stage.in_channels),
            out_channels=filters(stage.out_channels),
            repeats=round_repeats(stage.repeats, depth, depth_rounding),
        )
        for stage in spec.stages
    )
    new_resolution = (
        spec.resolution if resolution == 1.0 else round_resolution(spec.resolution * resolution, resolution_multiple)
    )
    return replace(
        spec,
        stem_channels=filters(spec.stem_channels),
        stages=stages,
        head_channels=filters(spec.head_channels),
        resolution=new_resolution,
    )


def compound(
    spec: NetworkSpec,
    alpha: float,
    beta: float,
    gamma: float,
    phi: float,
    *,
    resolution_multiple: int = 1,
    depth_rounding: str = "ceil",
) -> NetworkSpec:
    """Compound scaling (paper, Eq. 3): depth ``alpha**phi``, width ``beta**phi``, resolution ``gamma**phi``.

    With ``alpha * beta**2 * gamma**2 ~= 2`` the MACs grow by about ``2**phi``; the paper's B0 coefficients
    are alpha=1.2, beta=1.1, gamma=1.15 (Section 4).
    """
    return scale(
        spec,
        depth=alpha**phi,
        width=beta**phi,
        resolution=gamma**phi,
        resolution_multiple=resolution_multiple,
        depth_rounding=depth_rounding,
    )


__all__ = ["CHANNEL_DIVISOR", "DEPTH_ROUNDINGS", "check_multiplier", "compound", "round_filters", "round_repeats", "round_resolution", "scale"]
