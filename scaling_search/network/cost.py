"""Exact analytic cost of a :class:`~scaling_search.network.spec.NetworkSpec`: params, MACs and activations.

Sums over the layer plan (:func:`scaling_search.network.layers.plan_network`), never a module: it costs microseconds and
is pinned by tests against the built model (``sum(p.numel())``), ``torch.utils.flop_counter.FlopCounterMode``
and fvcore. Like pycls's complexity functions (``pycls/models/blocks.py``), each layer has a cost twin; unlike
pycls, the builder and this sum read the same plan, so there is no layout to keep in sync by hand.

Conventions:
    ``macs`` ("paper"): multiply-accumulates of convolutions and linear layers, batch 1 -- what the paper
    calls FLOPS and torchvision reports as ``_ops``; equals ``FlopCounterMode`` / 2.
    ``"fvcore"``: additionally counts what fvcore counts in eval mode -- 2 ops per BatchNorm input element and
    1 per adaptive-average-pool input element.
    ``activations``: output elements of every convolution and linear layer (pycls's and fvcore's definition).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from scaling_search.network.layers import ConvLayer, Layer, PoolLayer, conv_out, plan_network
from scaling_search.network.spec import NetworkSpec

Convention = Literal["paper", "fvcore"]
CONVENTIONS: tuple[str, ...] = ("paper", "fvcore")


@dataclass(frozen=True)
class Cost:
    """Cost of one forward pass at batch 1."""

    params: int
    macs: int
    activations: int


def _conv(layer: ConvLayer, fvcore: bool) -> tuple[int, int, int]:
    """(params, MACs, activations) of one convolution and its BatchNorm."""
    out = layer.output_size
    weights = layer.out_channels * (layer.in_channels // layer.groups) * layer.kernel * layer.kernel
    params = weights + (layer.out_channels if layer.bias else 0) + (2 * layer.out_channels if layer.batchnorm else 0)
    macs = weights * out * out
    if layer.batchnorm and fvcore:
        macs += 2 * layer.out_channels * out * out  # fvcore: eval-mode batch_norm = 2 ops per element (affine)
    return params, macs, layer.out_channels * out * out


def layer_cost(layer: Layer, convention: Convention = "paper") -> Cost:
    """Params, MACs and activations of one layer of the plan (:mod:`scaling_search.network.layers`) at batch 1."""
    fvcore = convention == "fvcore"
    if isinstance(layer, ConvLayer):
        return Cost(*_conv(layer, fvcore))
    if isinstance(layer, PoolLayer):
        # fvcore: adaptive_avg_pool2d = 1 op per input element; no MACs in the paper's convention
        return Cost(0, layer.channels * layer.input_size ** 2 if fvcore else 0, 0)
    weights = layer.in_features * layer.out_features
    return Cost(weights + layer.out_features, weights, layer.out_features)


def count_cost(spec: NetworkSpec, convention: Convention = "paper") -> Cost:
    """Params, MACs and activations of ``spec`` at its own resolution and batch 1, computed from the spec alone.

    Args:
        spec: the network.
        convention: ``"paper"`` counts conv/linear MACs only; ``"fvcore"`` adds BatchNorm and pooling as fvcore does.

    Note:
        ``params`` and ``activations`` do not depend on the convention.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown cost convention {convention!r}: choose one of {', '.join(CONVENTIONS)}")
    params = macs = activations = 0
    for layer in plan_network(spec).layers():
        cost = layer_cost(layer, convention)
        params += cost.params
        macs += cost.macs
        activations += cost.activations
    return Cost(params, macs, activations)


__all__ = ["CONVENTIONS", "Convention", "Cost", "conv_out", "count_cost", "layer_cost"]
