"""Cost counters that build and trace the model, beside the analytic one.

These are the references the analytic model (:mod:`scaling_search.network.cost`) is tested against and what
``scaling-search cost --counter`` offers. They are slow (they build and run the network) and each counts by
its own convention:

* ``analytic`` -- :func:`scaling_search.network.cost.count_cost`, conv + linear MACs.
* ``torch`` -- ``torch.utils.flop_counter.FlopCounterMode`` / 2 on the meta device (no memory, no compute).
* ``fvcore`` -- ``fvcore.nn.FlopCountAnalysis`` in eval mode (adds BatchNorm and pooling).
* ``ptflops`` -- ``ptflops.get_model_complexity_info`` with its PyTorch-module backend (adds BatchNorm,
  activations, pooling and biases); it has no activation count.
"""

from __future__ import annotations

import logging
import warnings
from typing import Callable, NamedTuple

from scaling_search.network.cost import count_cost
from scaling_search.network.spec import NetworkSpec


class Count(NamedTuple):
    """What a counter reports for one network at batch 1 (``activations`` is None where it has none)."""

    params: int
    macs: int
    activations: int | None


def _analytic(spec: NetworkSpec) -> Count:
    cost = count_cost(spec)
    return Count(cost.params, cost.macs, cost.activations)


def _torch(spec: NetworkSpec) -> Count:
    import torch

    from scaling_search.network.model import build_model
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(spec).eval()
        image = torch.empty(1, spec.input_channels, spec.resolution, spec.resolution)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(image)
    params = sum(p.numel() for p in model.parameters())
    return Count(params, counter.get_total_flops() // 2, None)


def _fvcore(spec: NetworkSpec) -> Count:
    import torch

    from scaling_search.network.model import build_model
    from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

    model = build_model(spec).eval()
    image = torch.zeros(1, spec.input_channels, spec.resolution, spec.resolution)
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # it logs every op it skips (sigmoid, mul, ...)
    flops = FlopCountAnalysis(model, image).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    acts = ActivationCountAnalysis(model, image).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    params = sum(p.numel() for p in model.parameters())
    return Count(params, int(flops.total()), int(acts.total()))


def _ptflops(spec: NetworkSpec) -> Count:
    from scaling_search.network.model import build_model
    from ptflops import get_model_complexity_info

    model = build_model(spec).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, params = get_model_complexity_info(
            model,
            (spec.input_channels, spec.resolution, spec.resolution),
            as_strings=False,
            print_per_layer_stat=False,
            backend="pytorch",
        )
    return Count(int(params or 0), int(macs or 0), None)


COUNTERS: dict[str, Callable[[NetworkSpec], Count]] = {
    "analytic": _analytic,
    "torch": _torch,
    "fvcore": _fvcore,
    "ptflops": _ptflops,
}


def count_with(counter: str, spec: NetworkSpec) -> Count:
    """Count ``spec`` with the named counter (``analytic``, ``torch``, ``fvcore`` or ``ptflops``)."""
    if counter not in COUNTERS:
        raise ValueError(f"unknown counter {counter!r}: choose one of {', '.join(COUNTERS)}")
    return COUNTERS[counter](spec)


__all__ = ["COUNTERS", "Count", "count_with"]
