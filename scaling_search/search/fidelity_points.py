"""The candidates a proxy's fidelity is scored over: the grid's points, and more drawn at the same budget.

Kendall's tau over the 6 to 12 points of a grid says almost nothing: with 3 candidates no tau can be significant
(the smallest permutation p-value is 1/3! = 0.17), and over 6 the bootstrap interval spans about [-1, 1]. So
``fidelity`` scores at least :data:`FIDELITY_CANDIDATES` deployment-scale candidates, all at the study's budget
(``alpha * beta^2 * gamma^2 = 2`` nominal, and achieved deployment MACs within ``grid_tol`` of 2x the
baseline's): the grid's points, then points drawn reproducibly (the study's seed) until there are enough
distinct proxies. A draw splits the budget's doubling between depth, width and resolution by shares from a
symmetric Dirichlet with concentration 1/2, which puts many draws near a single dimension and the rest on
mixes: ``alpha = 2^a``, ``beta = 2^(b/2)``, ``gamma = 2^(c/2)`` with ``a + b + c = 1``. Every candidate is
trained under :data:`FIDELITY_SEEDS` seeds or more in both regimes, so each one's seed spread enters the
intervals (:mod:`scaling_search.search.rank_agreement`).
"""

from __future__ import annotations

from typing import Any

from scaling_search.network.cost import count_cost
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.network.spec import NetworkSpec
from scaling_search.settings.study import StudyConfig

#: The fewest candidates a fidelity is scored over (when the budget holds that many distinct proxies).
FIDELITY_CANDIDATES = 16
#: The fewest seeds each candidate is trained with in both regimes.
FIDELITY_SEEDS = 2
#: The Dirichlet concentration of a draw's shares (below 1: draws gather near single dimensions and the edges).
CONCENTRATION = 0.5
#: Draws tried before giving up on reaching the count (rounding maps many draws onto one network).
MAX_DRAWS = 4000


def fidelity_candidates(grid_points: list[dict[str, Any]], config: StudyConfig, baseline: NetworkSpec,
                        transform: ProxyTransform, count: int = FIDELITY_CANDIDATES) -> list[dict[str, Any]]:
    """The grid's points (each ``{"deployment", "attrs", "params"}`` as the grid stored it), then drawn points at
    the same budget until ``count`` distinct proxies; each drawn one's attrs say ``"source": "drawn"``."""
    import numpy as np

    entries = [{"deployment": p["deployment"], "attrs": {**p["attrs"], "source": "grid"},
                "params": p.get("params") or {k: p["attrs"][k] for k in ("alpha", "beta", "gamma")}}
               for p in grid_points]
    proxies = {to_proxy(NetworkSpec.from_dict(e["deployment"]), transform) for e in entries}
    base_macs = count_cost(baseline).macs
    generator = np.random.default_rng(config.search.seed)
    tolerance = config.search.grid_tol
    for _ in range(MAX_DRAWS):
        if len(entries) >= count:
            break
        depth, width, resolution = generator.dirichlet([CONCENTRATION] * 3)
        alpha, beta, gamma = (round(float(v), 3) for v in (2**depth, 2 ** (width / 2), 2 ** (resolution / 2)))
        scaled = config.deployment.compound(baseline, alpha, beta, gamma, 1.0)
        achieved = count_cost(scaled).macs / base_macs
        proxy = to_proxy(scaled, transform)
        if abs(achieved - 2.0) > tolerance or proxy in proxies:
            continue
        proxies.add(proxy)
        attrs = {"alpha": alpha, "beta": beta, "gamma": gamma, "nominal_ratio": round(alpha * beta**2 * gamma**2, 6),
                 "achieved_ratio": round(achieved, 6), "source": "drawn"}
        entries.append({"deployment": scaled.to_dict(), "attrs": attrs,
                        "params": {"alpha": alpha, "beta": beta, "gamma": gamma}})
    return entries


def regime_points(entries: list[dict[str, Any]], transform: ProxyTransform) -> list[dict[str, Any]]:
    """The candidates (or a stage's stored points) as queue entries whose proxies a regime's ``transform`` makes,
    with the same attributes and params (stages made before points had params get them from their attributes)."""
    from scaling_search.search.candidate import Candidate  # torch loads with the trainer, not with the report
    from scaling_search.search.queue import point

    return [point(Candidate.of(NetworkSpec.from_dict(e["deployment"]), transform), e["attrs"], e.get("params"))
            for e in entries]


__all__ = ["CONCENTRATION", "FIDELITY_CANDIDATES", "FIDELITY_SEEDS", "MAX_DRAWS", "fidelity_candidates",
           "regime_points"]
