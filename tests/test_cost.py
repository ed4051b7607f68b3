import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from specgen import random_spec

from scaling_search.network.cost import count_cost
from scaling_search.network.counters import count_with
from scaling_search.network.family import FAMILY, efficientnet
from scaling_search.network.model import build_model

GOLDEN = json.loads((Path(__file__).parent / "data" / "golden_cost.json").read_text())
NAMES = list(FAMILY)
RANDOM_SEEDS = range(100, 160)  # 60 random specs


@pytest.mark.parametrize("name", NAMES)
def test_golden_values(name):
    spec = efficientnet(name)
    cost, fv = count_cost(spec), count_cost(spec, "fvcore")
    golden = GOLDEN[name]
    assert (spec.resolution, cost.params, cost.macs, cost.activations, fv.macs) == (
        golden["resolution"], golden["params"], golden["macs"], golden["activations"], golden["fvcore_macs"])


def test_b0_is_the_papers_0_39_billion():
    assert count_cost(efficientnet("b0")).macs == 385_814_752


@pytest.mark.parametrize("name", NAMES)
def test_macs_equal_flop_counter_mode_on_family(name):
    spec = efficientnet(name)
    traced = count_with("torch", spec)
    cost = count_cost(spec)
    assert (cost.macs, cost.params) == (traced.macs, traced.params)


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_spec_matches_flop_counter_and_module(seed):
    spec = random_spec(seed)
    traced = count_with("torch", spec)
    cost = count_cost(spec)
    assert cost.macs == traced.macs
    assert cost.params == traced.params


@pytest.mark.parametrize("seed", RANDOM_SEEDS)
def test_random_spec_matches_fvcore(seed):
    spec = random_spec(seed)
    counted = count_with("fvcore", spec)
    assert count_cost(spec, "fvcore").macs == counted.macs
    assert count_cost(spec).activations == counted.activations


@pytest.mark.parametrize("name", ["b0", "b1", "b2", "b3"])
def test_family_matches_fvcore(name):
    spec = efficientnet(name)
    counted = count_with("fvcore", spec)
    assert (count_cost(spec, "fvcore").macs, count_cost(spec).activations) == (counted.macs, counted.activations)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["b5", "b7"])  # b4 and b6 take the same path at sizes in between (5 s each)
def test_large_family_matches_fvcore(name):
    # Their widths and depths at 160 px: fvcore traces real tensors, and B7 at its 600 px took the suite's peak
    # memory to 4.6 GB; the count's exactness does not depend on the resolution (B0..B3 run at theirs above).
    spec = replace(efficientnet(name), resolution=160)
    counted = count_with("fvcore", spec)
    assert (count_cost(spec, "fvcore").macs, count_cost(spec).activations) == (counted.macs, counted.activations)


def test_params_equal_real_module_including_trainable_only():
    spec = random_spec(7)
    model = build_model(spec)
    assert count_cost(spec).params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert torch.is_tensor(next(model.buffers()))  # BN running stats are buffers, not parameters


def test_macs_grow_with_each_dimension():
    base = count_cost(efficientnet("b0")).macs
    from scaling_search.network.scaling import scale

    b0 = efficientnet("b0")
    assert count_cost(scale(b0, width=2.0)).macs > 3 * base
    assert count_cost(scale(b0, depth=2.0)).macs > 1.5 * base
    assert count_cost(scale(b0, resolution=2.0)).macs == pytest.approx(4 * base, rel=0.01)


def test_unknown_convention():
    with pytest.raises(ValueError, match="unknown cost convention"):
        count_cost(efficientnet("b0"), "tflops")  # type: ignore[arg-type]
