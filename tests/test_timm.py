"""build_model against a recorded timm (tests/data/timm_fixture.json, from tests/data/record_timm_fixture.py):
the same module tree, state-dict keys and shapes, parameter count and outputs on a fixed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from scaling_search.network.model import build_model, seeded_weights
from scaling_search.network.spec import NetworkSpec
from scaling_search.network.timm_compat import timm_config, timm_gap
from timm_networks import FIXTURE_INPUT, fixture_networks

FIXTURE = json.loads((Path(__file__).parent / "data" / "timm_fixture.json").read_text())
#: Our class where timm's is its base: the depthwise convolution is an nn.Conv2d with a CPU weight gradient by taps.
SUBCLASSES = {"DepthwiseConv2d": "Conv2d"}


@pytest.mark.parametrize("name", sorted(FIXTURE["networks"]))
def test_build_model_has_timms_module_tree_keys_and_outputs(name):
    recorded = FIXTURE["networks"][name]
    spec = NetworkSpec.from_dict(recorded["spec"])
    assert spec == fixture_networks()[name]  # the fixture pins the networks tests/timm_networks.py defines
    model = seeded_weights(build_model(spec), FIXTURE_INPUT["weights_seed"]).eval()
    modules = [[path, SUBCLASSES.get(type(module).__name__, type(module).__name__)]
               for path, module in model.named_modules()]
    assert modules == recorded["modules"]
    assert [[key, list(tensor.shape)] for key, tensor in model.state_dict().items()] == recorded["state"]
    assert sum(p.numel() for p in model.parameters()) == recorded["params"]
    images = torch.randn(*FIXTURE_INPUT["shape"][:2], spec.resolution, spec.resolution,
                         generator=torch.Generator().manual_seed(FIXTURE_INPUT["seed"]))
    with torch.no_grad():
        logits = model(images)
    torch.testing.assert_close(logits, torch.tensor(recorded["logits"]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(FIXTURE["networks"]))
def test_a_timm_state_dict_loads_strictly_and_the_config_says_how_to_build_it(name):
    recorded = FIXTURE["networks"][name]
    spec = NetworkSpec.from_dict(recorded["spec"])
    timm_state = {key: torch.zeros(shape) for key, shape in recorded["state"]}
    model = build_model(spec)
    model.load_state_dict({key: value.to(model.state_dict()[key].dtype) for key, value in timm_state.items()},
                          strict=True)
    config = timm_config(spec)
    assert config["kwargs"]["num_classes"] == spec.num_classes and config["act_layer"] == "silu"
    assert config["norm_kwargs"] == {"eps": 1e-3, "momentum": 0.01}
    assert [len(stage) for stage in config["arch_def"]] == [1] * len(spec.stages)


def test_a_network_timm_would_round_differently_says_why_instead_of_a_timm_block():
    from dataclasses import replace

    from scaling_search.network.family import EFFICIENTNET_B0
    from scaling_search.network.scaling import scale

    odd = scale(EFFICIENTNET_B0, width=0.5)
    odd = replace(odd, stem_channels=20, stages=(replace(odd.stages[0], in_channels=20),) + odd.stages[1:])
    assert "multiples of 8" in timm_gap(odd)
    assert "unavailable" in timm_config(odd) and "arch_def" not in timm_config(odd)
