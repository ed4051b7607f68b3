"""The network: one frozen spec (:mod:`.spec`) and everything that reads it without changing it.

:mod:`.family` (EfficientNet-B0..B7, the paper's Table 1), :mod:`.scaling` (pure scaling functions),
:mod:`.arch` (timm-style arch strings), :mod:`.layers` (the one layer plan), :mod:`.cost` (exact analytic cost
from that plan), :mod:`.counters` (fvcore/ptflops cross-checks), :mod:`.model` and :mod:`.depthwise` (the
PyTorch builder). Only the builder imports torch; it loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaling_search.network.arch import decode_arch, encode_arch
from scaling_search.network.cost import Cost, count_cost
from scaling_search.network.family import EFFICIENTNET_B0, FAMILY, PAPER_COEFFICIENTS, efficientnet
from scaling_search.network.scaling import compound, round_filters, round_repeats, round_resolution, scale
from scaling_search.network.spec import NetworkSpec, StageSpec, load_spec

if TYPE_CHECKING:
    from scaling_search.network.model import build_model


def __getattr__(name: str) -> Any:
    if name == "build_model":  # torch takes seconds to import; only the parts that build modules pay for it
        from scaling_search.network.model import build_model

        return build_model
    raise AttributeError(f"module 'scaling_search.network' has no attribute {name!r}")


__all__ = ["EFFICIENTNET_B0", "FAMILY", "PAPER_COEFFICIENTS", "Cost", "NetworkSpec", "StageSpec", "build_model",
           "compound", "count_cost", "decode_arch", "efficientnet", "encode_arch", "load_spec", "round_filters",
           "round_repeats", "round_resolution", "scale"]
