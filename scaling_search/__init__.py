"""scaling-search: EfficientNet-style compound scaling (Tan & Le, 2019) as a working instrument.

The public API: a frozen :class:`NetworkSpec`, the reference :data:`EFFICIENTNET_B0` and family, pure scaling
functions, the proxy function, the model builder and the exact analytic cost model. The search lives in
:mod:`scaling_search.search`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

from scaling_search.network.arch import decode_arch, encode_arch
from scaling_search.network.cost import Cost, count_cost
from scaling_search.network.family import EFFICIENTNET_B0, FAMILY, PAPER_COEFFICIENTS, efficientnet
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.settings.proxy import ProxySettings
from scaling_search.network.scaling import compound, round_filters, round_repeats, round_resolution, scale
from scaling_search.network.spec import NetworkSpec, StageSpec, load_spec

if TYPE_CHECKING:
    from scaling_search.network.model import build_model


def __getattr__(name: str) -> Any:
    # torch takes seconds to import; only the parts that build modules pay for it.
    if name == "build_model":
        from scaling_search.network.model import build_model

        return build_model
    raise AttributeError(f"module 'scaling_search' has no attribute {name!r}")

__all__ = [
    "EFFICIENTNET_B0",
    "FAMILY",
    "PAPER_COEFFICIENTS",
    "Cost",
    "NetworkSpec",
    "ProxySettings",
    "ProxyTransform",
    "StageSpec",
    "__version__",
    "build_model",
    "compound",
    "count_cost",
    "decode_arch",
    "efficientnet",
    "encode_arch",
    "load_spec",
    "round_filters",
    "round_repeats",
    "round_resolution",
    "scale",
    "to_proxy",
]
