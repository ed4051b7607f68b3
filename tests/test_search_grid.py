"""Stage 2's grid (scaling_search/search/grid.py) at deployment scale, and the stage-1 search space."""

from dataclasses import replace

import optuna
import pytest

from scaling_search.network.cost import count_cost
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.proxy import ProxyTransform, to_proxy
from scaling_search.settings import ProxySettings
from scaling_search.settings.study import DeploymentSettings
from scaling_search.search.grid import coefficient_grid
from scaling_search.search.space import reward, suggest_spec

B0 = replace(EFFICIENTNET_B0, num_classes=10)
PROXY = replace(B0, resolution=40)  # the stage-1 space tests need any base
QUICK = ProxyTransform.for_baseline(ProxySettings(resolution=40, width=0.5), B0)
NEAREST = DeploymentSettings()


def test_grid_meets_the_constraint_on_deployment_macs():
    grid = coefficient_grid(B0, QUICK, 0.1, 0.1)
    base = count_cost(B0).macs
    assert len(grid.points) == 12 and sum(p.alpha > 1 and (p.beta > 1 or p.gamma > 1) for p in grid.points) >= 5
    for p in grid.points:
        assert min(p.alpha, p.beta, p.gamma) >= 1
        assert abs(p.alpha * p.beta**2 * p.gamma**2 - 2) <= 0.1
        scaled = NEAREST.compound(B0, p.alpha, p.beta, p.gamma, 1)
        assert scaled.resolution >= 224
        assert count_cost(scaled).macs / base == pytest.approx(p.achieved_ratio, abs=1e-6)
        assert abs(p.achieved_ratio - 2) <= 0.1


def test_official_ceil_depth_leaves_only_single_dimension_points_on_b0():
    grid = coefficient_grid(B0, QUICK, 0.1, 0.1, deployment=DeploymentSettings(depth_rounding="ceil"))
    assert [(p.alpha, p.beta, p.gamma) for p in grid.points] == [(1.0, 1.0, 1.4), (1.0, 1.4, 1.0), (2.0, 1.0, 1.0)]


def test_points_with_the_same_proxy_are_trained_once_and_reported():
    coarse = ProxyTransform.for_baseline(ProxySettings(resolution=32, width=0.125), B0)
    grid = coefficient_grid(B0, coarse, 0.05, 0.1)
    proxies = [to_proxy(NEAREST.compound(B0, p.alpha, p.beta, p.gamma, 1), coarse) for p in grid.points]
    assert len(set(proxies)) == len(proxies)
    assert grid.collisions, "a 32 px, width 0.125 proxy merges some of a 0.05 grid's points"
    for collision in grid.collisions:
        kept = to_proxy(NEAREST.compound(B0, *collision.kept, 1), coarse)
        assert to_proxy(NEAREST.compound(B0, *collision.dropped, 1), coarse) == kept
        assert collision.kept in [tuple(p[:3]) for p in grid.points]


def test_empty_grid_is_a_clear_error():
    with pytest.raises(ValueError, match="the grid is empty.*raise --grid-tol"):
        coefficient_grid(B0, QUICK, 0.7, 0.001)


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
