"""Stage 3: scale the baseline with the chosen coefficients and write buildable model configs.

An exported config (``model-phi<phi>.json``) holds the full spec, so :func:`scaling_search.build_model` and
``scaling-search cost --config`` accept it directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scaling_search import __version__
from scaling_search.arch import encode_arch
from scaling_search.budget import Budget, phi_for_budget
from scaling_search.cost import count_cost
from scaling_search.scaling import compound
from scaling_search.spec import NetworkSpec

CONFIG_FORMAT = "scaling-search/model-config"
CONFIG_VERSION = 1


def phi_label(phi: float) -> str:
    return f"{phi:.3f}".rstrip("0").rstrip(".")


def model_config(baseline: NetworkSpec, alpha: float, beta: float, gamma: float, phi: float,
                 resolution_multiple: int, budget: Budget | None, metrics: dict[str, Any],
                 provenance: dict[str, Any]) -> dict[str, Any]:
    """The exported description of the baseline scaled to ``phi``, with its cost and where it came from."""
    spec = compound(baseline, alpha, beta, gamma, phi, resolution_multiple=resolution_multiple)
    cost = count_cost(spec)
    base_macs = count_cost(baseline).macs
    return {
        "format": CONFIG_FORMAT,
        "format_version": CONFIG_VERSION,
        "alpha": alpha, "beta": beta, "gamma": gamma, "phi": phi,
        "multipliers": {"depth": alpha**phi, "width": beta**phi, "resolution": gamma**phi},
        "spec": spec.to_dict(),
        "arch": encode_arch(spec),
        "stem_channels": spec.stem_channels,
        "head_channels": spec.head_channels,
        "cost": {"params": cost.params, "macs": cost.macs, "activations": cost.activations},
        "baseline_macs": base_macs,
        "macs_ratio": cost.macs / base_macs,
        "nominal_ratio": (alpha * beta**2 * gamma**2) ** phi,
        "budget": None if budget is None else {
            "text": budget.text, "kind": budget.kind,
            "target_macs": None if budget.kind == "latency" else budget.target_macs(base_macs)},
        "proxy_metrics": metrics,
        "provenance": {"tool": "scaling-search", "version": __version__, **provenance},
    }


def export_models(folder: Path, baseline: NetworkSpec, coefficients: tuple[float, float, float], budget: Budget,
                  family: list[float] | None, resolution_multiple: int, metrics: dict[str, Any],
                  provenance: dict[str, Any], latency: Any = None) -> list[Path]:
    """Write ``model-phi<phi>.json`` for the budget's phi (and each phi of ``family``); atomic writes.

    With ``latency`` (a :class:`~scaling_search.latency.LatencyTable`), phi meets the budget in predicted
    latency and every config records the predicted and the measured latency.
    """
    alpha, beta, gamma = coefficients
    base_macs = count_cost(baseline).macs

    def scaled(phi: float) -> NetworkSpec:
        return compound(baseline, alpha, beta, gamma, phi, resolution_multiple=resolution_multiple)

    latency_at = None if latency is None else (lambda phi: latency.predict(scaled(phi)))
    phis = [phi_for_budget(budget, base_macs, lambda phi: count_cost(scaled(phi)).macs, latency_at)]
    for phi in family or []:
        if phi not in phis:
            phis.append(phi)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for phi in phis:
        config = model_config(baseline, alpha, beta, gamma, phi, resolution_multiple,
                              budget if phi == phis[0] else None, metrics, provenance)
        if latency is not None:
            from scaling_search.latency import measure_latency

            spec = scaled(phi)
            measured = measure_latency(spec, latency.device, batch=latency.batch)
            config["latency"] = {"predicted_ms": latency.predict(spec), "measured_ms": measured.median_ms,
                                 "p10_ms": measured.p10_ms, "p90_ms": measured.p90_ms, "device": measured.device,
                                 "batch": latency.batch, "baseline_predicted_ms": latency.predict(baseline)}
            if budget.kind != "macs" and phi == phis[0]:
                config["budget"]["target_latency_ms"] = budget.target(latency.predict(baseline))
        path = folder / f"model-phi{phi_label(phi)}.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(config, indent=2) + "\n")
        temporary.replace(path)
        written.append(path)
    return written


def parse_family(text: str | None) -> list[float] | None:
    """``"0:7"`` -> phi 0..7; ``"0,1,2.5"`` -> those values."""
    if not text:
        return None
    try:
        if ":" in text:
            low, high = (int(part) for part in text.split(":"))
            if high < low or low < 0:
                raise ValueError
            return [float(p) for p in range(low, high + 1)]
        values = [float(part) for part in text.split(",")]
        if any(v < 0 for v in values):
            raise ValueError
        return values
    except ValueError:
        raise ValueError(f"cannot read --family {text!r}: use a range such as 0:7 or a list such as 0,1,2") from None


__all__ = ["CONFIG_FORMAT", "CONFIG_VERSION", "export_models", "model_config", "parse_family", "phi_label"]
