"""``[proxy]``: how a study shrinks its deployment-scale candidates (:func:`scaling_search.network.proxy.to_proxy`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling_search.errors import UserError


@dataclass(frozen=True)
class ProxySettings:
    """How a study shrinks deployment-scale candidates into the networks it trains (a preset's ``[proxy]``).

    Attributes:
        resolution: input resolution, in pixels, of the deployment *baseline's* proxy. Every candidate's
            resolution is multiplied by ``resolution / deployment baseline resolution`` (224 -> 40 is 0.179).
        width: width factor applied to every candidate's channels.
        depth: depth factor applied to every stage's repeats (1 keeps them; below 1 can merge depth steps).
        shrink_data: the proxies train on the data's images resampled by the same resolution factor
            (:meth:`scaling_search.data.base.ImageData.shrunk`: 96-px images become 17 px for 40 of 224), so the
            proxy sees what the deployment network sees: where deployment upsamples the native images (96 to
            224..314 px), a resolution step adds no information there, and none at the proxy either. False: every
            proxy resizes the native images directly, and a resolution step from 40 to 56 px recovers detail the
            deployment network never lacked.
    """

    resolution: int = 40
    width: float = 0.5
    depth: float = 1.0
    shrink_data: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.shrink_data, bool):
            raise UserError(f"[proxy] shrink_data must be true or false, got {self.shrink_data!r}")
        for name, value in (("resolution", self.resolution),):
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"[proxy] {name} must be a whole number of pixels, got {value!r}")
        for name, value in (("width", self.width), ("depth", self.depth)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"[proxy] {name} must be a number, got {value!r}")
            if not 0 < value <= 1:
                raise UserError(f"[proxy] {name} must be in (0, 1] (a proxy is never larger), got {value}")


__all__ = ["ProxySettings"]
