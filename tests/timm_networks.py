"""The networks the timm fixture pins (tests/data/record_timm_fixture.py records it, tests/test_timm.py checks it):
EfficientNet-B0, B0 compound-scaled by the paper's coefficients at phi = 1, and a network of the stage-1 search
space (sampled with a fixed seed, then scaled as a study scales its baseline)."""

from __future__ import annotations

from dataclasses import replace

import optuna

from scaling_search.network.family import EFFICIENTNET_B0, PAPER_COEFFICIENTS
from scaling_search.network.scaling import compound
from scaling_search.network.spec import NetworkSpec
from scaling_search.search.space import suggest_spec

#: A fixed input: batch and channels (the resolution is each network's own, made small), its seed, the weights'.
FIXTURE_INPUT = {"shape": [2, 3], "seed": 1, "weights_seed": 0}
#: Small resolutions keep the fixture's forward passes fast; weights do not depend on the resolution.
RESOLUTION = 64


def fixture_networks() -> dict[str, NetworkSpec]:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7)).ask()
    searched = compound(suggest_spec(trial, EFFICIENTNET_B0), 1.2, 1.1, 1.0, phi=1.0, depth_rounding="nearest")
    return {
        "b0": replace(EFFICIENTNET_B0, resolution=RESOLUTION),
        "b0-compound-phi1": replace(compound(EFFICIENTNET_B0, *PAPER_COEFFICIENTS, phi=1.0), resolution=RESOLUTION,
                                    num_classes=10),
        "searched": replace(searched, resolution=RESOLUTION, num_classes=10, dropout=0.3),
    }
