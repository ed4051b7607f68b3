from dataclasses import replace

import optuna
import pytest

from scaling_search.cost import count_cost
from scaling_search.family import EFFICIENTNET_B0
from scaling_search.grid import coefficient_grid
from scaling_search.scaling import compound, scale
from scaling_search.search_space import reward, suggest_spec

PROXY = replace(scale(EFFICIENTNET_B0, width=0.5), resolution=32, num_classes=10)


def test_nominal_grid_respects_the_constraint():
    points = coefficient_grid(PROXY, 0.1, 0.05)
    assert points and all(abs(p.alpha * p.beta**2 * p.gamma**2 - 2) <= 0.05 for p in points)
    assert all(min(p.alpha, p.beta, p.gamma) >= 1 for p in points)
    assert (1.2, 1.1, 1.15) not in [(p.alpha, p.beta, p.gamma) for p in points]  # 1.15 is off a 0.1 grid


def test_achieved_constraint_filters_on_rounded_macs():
    points = coefficient_grid(PROXY, 0.1, 0.1, constraint="achieved", resolution_multiple=8)
    base = count_cost(PROXY).macs
    for p in points:
        scaled = compound(PROXY, p.alpha, p.beta, p.gamma, 1, resolution_multiple=8)
        assert count_cost(scaled).macs / base == pytest.approx(p.achieved_ratio, abs=1e-6)
        assert abs(p.achieved_ratio - 2) <= 0.1


def test_no_two_points_build_the_same_network():
    points = coefficient_grid(PROXY, 0.1, 0.2, resolution_multiple=8)
    networks = [compound(PROXY, p.alpha, p.beta, p.gamma, 1, resolution_multiple=8) for p in points]
    assert len(set(networks)) == len(networks)


def test_empty_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="the grid is empty.*raise --grid-tol"):
        coefficient_grid(PROXY, 0.7, 0.001)


def test_suggest_spec_stays_in_the_space():
    for seed in range(10):
        trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask()
        spec = suggest_spec(trial, PROXY)
        assert spec.stages[0].expand_ratio == 1
        for stage, base in zip(spec.stages, PROXY.stages):
            assert stage.kernel in (3, 5) and stage.se_ratio in (0.0, 0.25) and stage.stride == base.stride
            assert max(1, base.repeats - 1) <= stage.repeats <= base.repeats + 1
        assert spec.resolution == PROXY.resolution and spec.num_classes == 10


def test_suggest_spec_of_b0_choices_is_b0():
    params = {f"s{i}_{k}": v for i, s in enumerate(PROXY.stages)
              for k, v in (("kernel", s.kernel), ("expand", s.expand_ratio), ("se", s.se_ratio),
                           ("repeats", s.repeats), ("width", 1.0))}
    assert suggest_spec(optuna.trial.FixedTrial(params), PROXY) == PROXY


def test_reward_is_mnasnet_form():
    assert reward(0.5, 100, 100) == 0.5
    assert reward(0.5, 200, 100) == pytest.approx(0.5 * 2**-0.07)
    assert reward(0.5, 200, 100) < reward(0.5, 100, 100) < reward(0.5, 50, 100)
