"""Budgets (scaling_search/network/budget.py): parsing, and phi by bisection on the achieved deployment cost."""

import random

import pytest

from scaling_search.network.budget import BudgetMiss, fit_phi, parse_budget
from scaling_search.network.cost import count_cost
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.settings.study import DeploymentSettings
from specgen import random_spec

NEAREST = DeploymentSettings()
B0_MACS = count_cost(EFFICIENTNET_B0).macs


@pytest.mark.parametrize(("text", "kind", "value"), [("2x", "ratio", 2.0), ("1.5x", "ratio", 1.5), ("4X", "ratio", 4.0),
                                                     ("0.5x", "ratio", 0.5), ("800M", "macs", 800e6),
                                                     ("1.2G", "macs", 1.2e9), ("5000000", "macs", 5e6),
                                                     ("25ms", "latency", 25.0), ("0.5s", "latency", 500.0)])
def test_parse(text, kind, value):
    budget = parse_budget(text)
    assert (budget.kind, budget.value) == (kind, value)


@pytest.mark.parametrize(("text", "message"), [("two", "cannot read budget"), ("0x", "positive, finite"),
                                               ("3Q", "unknown unit"), ("0ms", "positive, finite"),
                                               ("1e400x", "positive, finite"), ("100000x", "out of reach")])
def test_bad_budgets(text, message):
    with pytest.raises(ValueError, match=message):
        parse_budget(text)


def _macs_of(alpha, beta, gamma, base=EFFICIENTNET_B0, deployment=NEAREST):
    return lambda phi: count_cost(deployment.compound(base, alpha, beta, gamma, phi)).macs


@pytest.mark.parametrize("text", ["2x", "4x", "8x", "0.5x", "800M", "1.2G", "200M"])
def test_every_mac_budget_lands_within_5_percent_on_b0(text):
    budget = parse_budget(text)
    cost = _macs_of(1.2, 1.1, 1.15)
    fit = fit_phi(budget.target(B0_MACS), cost)
    assert abs(cost(fit.phi) / budget.target(B0_MACS) - 1) <= 0.05
    assert fit.achieved == cost(fit.phi) and (fit.phi < 0) == (budget.target(B0_MACS) < B0_MACS)


def test_log2_of_the_ratio_misses_where_bisection_does_not():
    cost = _macs_of(1.2, 1.1, 1.15, deployment=DeploymentSettings(depth_rounding="ceil"))
    assert cost(2.0) / B0_MACS > 4.6  # phi = log2(4) with the official ceil: 4.69x, not 4x
    fit = fit_phi(4 * B0_MACS, cost)
    assert abs(fit.achieved / (4 * B0_MACS) - 1) <= 0.05 and fit.phi < 2


def test_latency_budget_bisects_on_a_latency_function():
    def latency(phi):
        return 10.0 * 1.8**phi

    fit = fit_phi(25.0, latency, what="ms")
    assert latency(fit.phi) == pytest.approx(25.0, rel=0.01)


def test_a_step_the_budget_falls_into_is_refused_with_the_achieved_value():
    def stepped(phi):
        return 100.0 if phi < 1 else 300.0  # rounding jumps from 1x to 3x at phi = 1

    with pytest.raises(BudgetMiss, match=r"the closest is 100 \(-50.0%; 100 at phi 0.999, 300 at phi 1.000\)") as caught:
        fit_phi(200.0, stepped, unit=lambda v: f"{v:.0f}")
    assert caught.value.fit.achieved == 100.0  # equally far either side: the cheaper network
    assert fit_phi(250.0, stepped, tolerance=0.25, unit=str).achieved == 300.0


def test_out_of_reach_both_ways_whatever_the_tolerance():
    with pytest.raises(BudgetMiss, match=r"lies beyond phi = \+16"):
        fit_phi(1e30, _macs_of(1.2, 1.1, 1.15), tolerance=float("inf"))
    with pytest.raises(BudgetMiss, match=r"lies beyond phi = -16"):
        fit_phi(10.0, _macs_of(1.2, 1.1, 1.15), tolerance=float("inf"))


@pytest.mark.parametrize("seed", range(40))
def test_random_baselines_and_budgets_land_within_tolerance_or_are_refused(seed):
    rng = random.Random(seed)
    base = random_spec(seed, max_resolution=256)
    coefficients = (rng.choice([1.0, 1.1, 1.2, 1.5]), rng.choice([1.0, 1.1, 1.2]), rng.choice([1.0, 1.1, 1.15, 1.3]))
    deployment = DeploymentSettings(depth_rounding=rng.choice(["nearest", "ceil"]))
    cost = _macs_of(*coefficients, base=base, deployment=deployment)
    target = count_cost(base).macs * rng.choice([0.5, 1.5, 2.0, 3.0, 4.0, 10.0])
    try:
        fit = fit_phi(target, cost)
    except BudgetMiss as miss:
        assert abs(miss.fit.relative_error) > 0.05
        assert f"{miss.fit.achieved:,.0f}" in str(miss)  # the refusal names the achieved value
        return
    assert abs(cost(fit.phi) / target - 1) <= 0.05
    assert fit.phi == round(fit.phi, 3)
