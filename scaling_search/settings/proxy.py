"""``[proxy]``: how a study shrinks its deployment-scale candidates (:func:`scaling_search.network.proxy.to_proxy`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scaling_search.errors import UserError


#: What a proxy's input can be made from (:attr:`ProxySettings.images`).
PROXY_IMAGES = ("native", "shrunk", "matched")


def information_pixels(images: str, native: int, factor: float, deployment: int, base_deployment: int) -> int | None:
    """The resolution a candidate's proxy input is first resampled to (None: straight from the native images).

    ``native``: the data's resolution; ``factor``: the proxy's resolution over the deployment network's;
    ``deployment`` and ``base_deployment``: the candidate's and the baseline's deployment resolutions. The
    deployment network sees ``min(native, deployment)`` pixels of information. ``"shrunk"`` gives the proxy
    ``factor`` times that; ``"matched"`` gives the baseline's proxy all the information its resolution holds
    (``min(native, factor * base_deployment)``) and each candidate's proxy that times the deployment information's
    growth over the baseline's, so a step adds information to the proxy only where it adds it to the deployment
    network. None where that is no fewer pixels than the native images or the proxy's own resolution.
    """
    seen = min(native, deployment)
    if images == "shrunk":
        pixels = factor * seen
    elif images == "matched":
        base_seen = min(native, base_deployment)
        pixels = min(native, factor * base_deployment) * seen / base_seen
    else:
        return None
    pixels = max(1, round(pixels))
    # at or above the proxy's own resolution, resizing straight from the native images loses as much
    return pixels if pixels < min(native, round(factor * deployment)) else None


@dataclass(frozen=True)
class ProxySettings:
    """How a study shrinks deployment-scale candidates into the networks it trains (a preset's ``[proxy]``).

    Attributes:
        resolution: input resolution, in pixels, of the deployment *baseline's* proxy. Every candidate's
            resolution is multiplied by ``resolution / deployment baseline resolution`` (224 -> 40 is 0.179).
        width: width factor applied to every candidate's channels.
        depth: depth factor applied to every stage's repeats (1 keeps them; below 1 can merge depth steps).
        images: what a proxy's input is made from (:func:`information_pixels`): ``"native"``, the data's images
            resized straight to the proxy's resolution; ``"shrunk"``, the images first resampled by the proxy's
            resolution factor (96-px images become 17 px for 40 of 224), so every resolution step changes the
            proxy's input information in the ratio it changes the deployment network's; ``"matched"``, the images
            first resampled so that a resolution step adds information to the proxy exactly where it adds it to the
            deployment network, and the baseline's proxy keeps all it can see. Where deployment upsamples the
            native images (96 px to 224..314) and the proxy does not (40..56 px), a native proxy's resolution step
            recovers detail the deployment network never lacked.
    """

    resolution: int = 40
    width: float = 0.5
    depth: float = 1.0
    images: str = "native"

    def __post_init__(self) -> None:
        if self.images not in PROXY_IMAGES:
            raise UserError(f"[proxy] images must be one of {', '.join(PROXY_IMAGES)}, got {self.images!r}")
        for name, value in (("resolution", self.resolution),):
            if isinstance(value, bool) or not isinstance(value, int):
                raise UserError(f"[proxy] {name} must be a whole number of pixels, got {value!r}")
        for name, value in (("width", self.width), ("depth", self.depth)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise UserError(f"[proxy] {name} must be a number, got {value!r}")
            if not 0 < value <= 1:
                raise UserError(f"[proxy] {name} must be in (0, 1] (a proxy is never larger), got {value}")


__all__ = ["PROXY_IMAGES", "ProxySettings", "information_pixels"]
