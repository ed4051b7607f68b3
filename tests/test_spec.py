import json

import pytest
from specgen import random_spec

from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.spec import NetworkSpec, StageSpec


def test_b0_matches_paper_table_1():
    stages = EFFICIENTNET_B0.stages
    assert [s.out_channels for s in stages] == [16, 24, 40, 80, 112, 192, 320]
    assert [s.repeats for s in stages] == [1, 2, 2, 3, 3, 4, 1]
    assert [s.kernel for s in stages] == [3, 3, 5, 3, 5, 5, 3]
    assert [s.expand_ratio for s in stages] == [1, 6, 6, 6, 6, 6, 6]
    assert [s.stride for s in stages] == [1, 2, 2, 2, 1, 2, 1]
    assert EFFICIENTNET_B0.total_stride == 32
    assert EFFICIENTNET_B0.num_blocks == 16


def test_spec_is_frozen():
    with pytest.raises(AttributeError):
        EFFICIENTNET_B0.resolution = 300  # type: ignore[misc]


@pytest.mark.parametrize("seed", range(20))
def test_json_round_trip_is_exact(seed):
    spec = random_spec(seed)
    assert NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_to_dict_is_versioned():
    data = EFFICIENTNET_B0.to_dict()
    assert data["format"] == "scaling-search/network-spec" and data["version"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 99}, "version 99 is not supported"),
        ({"format": "other"}, "not a network spec"),
        ({"colour": "red"}, "unknown network spec field"),
        ({"stages": "x"}, "'stages' must be a list"),
        ({"resolution": 0}, "resolution must be >= 1"),
        ({"dropout": 1.5}, "dropout must be in [0, 1)"),
    ],
)
def test_from_dict_rejects_bad_input_with_a_clear_message(change, message):
    data = {**EFFICIENTNET_B0.to_dict(), **change}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        NetworkSpec.from_dict(data)


def test_stage_channels_must_chain():
    stage = StageSpec(expand_ratio=6, kernel=3, stride=1, in_channels=16, out_channels=24, repeats=1)
    with pytest.raises(ValueError, match="stage 0 takes 16 channels but receives 32"):
        NetworkSpec(stem_channels=32, stages=(stage,), head_channels=64, resolution=32)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("kernel", 4, "kernel must be odd"), ("stride", 3, "stride must be 1 or 2"), ("repeats", 0, "repeats must be >= 1"),
     ("se_ratio", -0.1, "se_ratio must be in")],
)
def test_stage_validation(field, value, message):
    kwargs = dict(expand_ratio=6, kernel=3, stride=1, in_channels=16, out_channels=24, repeats=1, se_ratio=0.25)
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        StageSpec(**kwargs)
