"""``scaling-search onnx`` and scaling_search/network/onnx_export.py: BatchNorm folded, a dynamic batch axis, named
input and output, and ONNX Runtime's outputs checked against PyTorch's with weights that make them differ."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from scaling_search.cli import main
from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.errors import UserError
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.model import build_model, seeded_weights
from scaling_search.network.onnx_export import INPUT_NAME, OUTPUT_NAME, TOLERANCE, export_onnx
from scaling_search.network.scaling import scale
from scaling_search.training import TrainSettings, train_proxy
from scaling_search.training.saved import checkpointer, save_trained

SMALL = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=10)


def test_an_export_has_a_dynamic_batch_folded_batchnorm_and_agrees_with_torch(tmp_path):
    model = seeded_weights(build_model(SMALL))
    result = export_onnx(model, SMALL.resolution, tmp_path / "small.onnx")
    assert result.within_tolerance and set(result.max_abs_diff) == {1, 7}
    graph = onnx.load(str(tmp_path / "small.onnx")).graph
    assert [i.name for i in graph.input] == [INPUT_NAME] and [o.name for o in graph.output] == [OUTPUT_NAME]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not any(node.op_type == "BatchNormalization" for node in graph.node)  # folded into the convolutions
    session = onnxruntime.InferenceSession(str(tmp_path / "small.onnx"), providers=["CPUExecutionProvider"])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model.eval()(images).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})[0]
    assert np.abs(got - expected).max() <= TOLERANCE and np.abs(expected).max() > 0.1  # outputs that compare


def test_the_command_exports_trained_weights_and_refuses_another_networks(tmp_path, capsys):
    data = synthetic_dataset(8, 3, seed=0)
    settings = TrainSettings(epochs=1, batch_size=32, threads=1)
    result = train_proxy(SMALL, data, settings, checkpoint=checkpointer(tmp_path / "trained", SMALL, data, settings))
    _, config = save_trained(tmp_path / "trained", SMALL, data, settings, result, "small")
    assert main(["onnx", str(config), "--weights", str(tmp_path / "trained"), "--output", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "trained weights" in out and "ONNX Runtime and PyTorch agree" in out and "batch 7" in out
    other = tmp_path / "other.json"
    other.write_text(json.dumps(replace(SMALL, num_classes=5).to_dict()))
    assert main(["onnx", str(other), "--weights", str(tmp_path / "trained"), "--output", str(tmp_path / "o.onnx")]) == 2
    assert "are not this network's" in capsys.readouterr().err and not (tmp_path / "o.onnx").exists()


def test_a_missing_runtime_names_the_extra(tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def without_onnxruntime(name, *args):
        if name == "onnxruntime":
            raise ImportError(name=name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_onnxruntime)
    with pytest.raises(UserError, match=r'needs onnxruntime: pip install "scaling-search\[onnx\]"'):
        export_onnx(build_model(SMALL), 32, tmp_path / "x.onnx")


def test_an_export_that_disagrees_with_torch_is_not_written(tmp_path, monkeypatch):
    from scaling_search.network import onnx_export

    monkeypatch.setattr(onnx_export, "TOLERANCE", -1.0)  # nothing can agree within a negative tolerance
    result = export_onnx(seeded_weights(build_model(SMALL)), SMALL.resolution, tmp_path / "x.onnx")
    assert not result.within_tolerance and not (tmp_path / "x.onnx").exists()
