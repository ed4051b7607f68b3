import json

import pytest
import torch
from specgen import random_spec

from scaling_search.network.family import EFFICIENTNET_B0, efficientnet
from scaling_search.network.model import DepthwiseSeparableConv, DropPath, InvertedResidual, build_model

# torchvision.models.efficientnet_b0..b7 with 1000 classes: sum(p.numel() for p in model.parameters()).
TORCHVISION_PARAMS = {
    "b0": 5_288_548, "b1": 7_794_184, "b2": 9_109_994, "b3": 12_233_232,
    "b4": 19_341_616, "b5": 30_389_784, "b6": 43_040_704, "b7": 66_347_960,
}


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_param_counts_equal_torchvision(name):
    with torch.device("meta"):
        model = build_model(efficientnet(name))
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("seed", range(5))
def test_random_spec_forward_shape(seed):
    spec = random_spec(seed, max_resolution=48)
    model = build_model(spec).eval()
    out = model(torch.randn(2, spec.input_channels, spec.resolution, spec.resolution))
    assert out.shape == (2, spec.num_classes)


def test_block_structure_follows_spec():
    model = build_model(EFFICIENTNET_B0)
    assert [len(stage) for stage in model.blocks] == [1, 2, 2, 3, 3, 4, 1]  # Table 1's stages, nested as timm's
    blocks = [block for stage in model.blocks for block in stage]
    assert len(blocks) == 16
    first = blocks[0]
    assert isinstance(first, DepthwiseSeparableConv)  # expand ratio 1: no 1x1 expansion
    assert isinstance(blocks[1], InvertedResidual) and blocks[1].conv_pw.out_channels == 96
    assert first.se.conv_reduce.out_channels == 8  # SE from the block's *input* channels: 32 * 0.25
    assert blocks[1].se.conv_reduce.out_channels == 4  # 16 * 0.25, not 96 * 0.25
    assert blocks[1].conv_dw.stride == (2, 2) and blocks[2].conv_dw.stride == (1, 1)
    assert [b.has_skip for b in blocks[:4]] == [False, False, True, False]
    bn = model.bn1
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def test_stochastic_depth_ramps_with_global_block_index():
    model = build_model(EFFICIENTNET_B0)
    blocks = [block for stage in model.blocks for block in stage]
    rates = {i: m.drop_path.rate for i, m in enumerate(blocks) if m.has_skip}
    assert rates[2] == pytest.approx(0.2 * 2 / 16)
    assert rates[15 - 1] == pytest.approx(0.2 * 14 / 16)


def test_stochastic_depth_drops_whole_samples_and_keeps_expectation():
    torch.manual_seed(0)
    layer = DropPath(0.5).train()
    out = layer(torch.ones(4000, 3, 2, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(layer.eval()(torch.ones(3, 3)), torch.ones(3, 3))


def test_build_model_accepts_json_spec_and_exported_config(tmp_path):
    spec = random_spec(3)
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 1, "spec": spec.to_dict()}))
    assert build_model(tmp_path / "spec.json").spec == spec
    assert build_model(str(tmp_path / "model.json")).spec == spec


def test_build_model_bad_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        build_model(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="does not exist"):
        build_model(tmp_path / "missing.json")
