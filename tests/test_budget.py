import math

import pytest

from scaling_search.budget import parse_budget, phi_for_budget


@pytest.mark.parametrize(("text", "kind", "value"), [("2x", "ratio", 2.0), ("1.5x", "ratio", 1.5), ("4X", "ratio", 4.0),
                                                     ("800M", "macs", 800e6), ("1.2G", "macs", 1.2e9),
                                                     ("5000000", "macs", 5e6)])
def test_parse(text, kind, value):
    budget = parse_budget(text)
    assert (budget.kind, budget.value) == (kind, value)


@pytest.mark.parametrize(("text", "message"), [("two", "cannot read budget"), ("0.5x", "below the baseline"),
                                               ("3Q", "unknown unit"), ("0ms", "positive latency")])
def test_bad_budgets(text, message):
    with pytest.raises(ValueError, match=message):
        parse_budget(text)


def test_ratio_phi_is_log2():
    assert phi_for_budget(parse_budget("2x"), 100, lambda phi: 0) == 1.0
    assert phi_for_budget(parse_budget("1.5x"), 100, lambda phi: 0) == pytest.approx(math.log2(1.5))


def test_absolute_budget_bisects_on_achieved_macs():
    def macs(phi):
        return int(100 * 2**phi)

    phi = phi_for_budget(parse_budget("400"), 100, macs)
    assert macs(phi) <= 400 < macs(phi + 0.002)
    with pytest.raises(ValueError, match="below the baseline"):
        phi_for_budget(parse_budget("50"), 100, macs)


def test_latency_budgets_bisect_on_predicted_latency():
    assert parse_budget("25ms").kind == "latency" and parse_budget("0.5s").value == 500.0

    def latency(phi):
        return 10.0 * 1.8**phi

    phi = phi_for_budget(parse_budget("25ms"), 100, lambda p: 0, latency)
    assert latency(phi) <= 25 < latency(phi + 0.002)
    doubled = phi_for_budget(parse_budget("2x"), 100, lambda p: 0, latency)
    assert latency(doubled) == pytest.approx(20, rel=0.01)
    with pytest.raises(ValueError, match="use it with --cost latency"):
        phi_for_budget(parse_budget("25ms"), 100, lambda p: 0)
    with pytest.raises(ValueError, match="use it without --cost latency"):
        phi_for_budget(parse_budget("800M"), 100, lambda p: 0, latency)
