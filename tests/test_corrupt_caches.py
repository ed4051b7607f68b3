"""A damaged machine cache (decoded dataset, resized split, latency table; the plan's is in test_study.py) is
detected and rebuilt, giving the same numbers, never trusted or crashed on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scaling_search.data import load_dataset
from scaling_search.data.decoded import datasets_root
from scaling_search.errors import UserError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    pixels = np.random.default_rng(0).integers(0, 255, (40, 3, 16, 16), dtype=np.uint8)
    labels = np.arange(40) % 4
    np.savez(tmp_path / "data.npz", x_train=pixels, y_train=labels, x_test=pixels[:8], y_test=labels[:8])
    return tmp_path / "data.npz"


def _truncate(path):
    """Half the file, as a full disk leaves it (a new file renamed over it: mappings of the old one stay valid)."""
    half = path.with_name(path.name + ".half")
    half.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    half.replace(path)


def test_a_damaged_decoded_dataset_is_decoded_again_and_rewritten(cache):
    first = load_dataset(str(cache))
    expected = (first.train_images.clone(), first.val_labels.clone())
    [entry] = [p for p in datasets_root().iterdir() if p.is_dir()]
    _truncate(entry / "train_images.npy")
    again = load_dataset(str(cache))
    assert torch.equal(again.train_images, expected[0]) and torch.equal(again.val_labels, expected[1])
    assert np.load(entry / "train_images.npy").shape == tuple(expected[0].shape)  # rebuilt on disk
    (entry / "meta.json").write_text("{")
    assert load_dataset(str(cache)).classes == first.classes


def test_a_damaged_resized_split_is_resized_again_and_rewritten(cache):
    first = load_dataset(str(cache)).split("train", 24).images.clone()
    [resized] = list(datasets_root().glob("*/resized/*.npy"))
    _truncate(resized)
    again = load_dataset(str(cache)).split("train", 24).images
    assert torch.equal(again, first) and np.load(resized).shape == tuple(first.shape)


def test_a_damaged_latency_table_starts_empty_and_asks_for_calibration(tmp_path, monkeypatch, capsys):
    from scaling_search.cli import main
    from scaling_search.latency import LatencyTable

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    table = LatencyTable.open("cpu", 1)
    table.entries["x"], table.calibrated = 1.0, True
    table.save()
    _truncate(table.path)
    assert LatencyTable.open("cpu", 1).entries == {} and not LatencyTable.open("cpu", 1).calibrated
    with pytest.raises(UserError, match="latency calibrate"):
        LatencyTable.open_calibrated("cpu", 1)
    assert main(["latency", "b0", "--predict"]) == 2 and "latency calibrate" in capsys.readouterr().err


def test_a_table_whose_correction_predicts_nothing_is_not_trusted(tmp_path, monkeypatch):
    from scaling_search.latency import Correction, LatencyTable

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    table = LatencyTable.open("cpu", 1)
    table.correction, table.calibrated = Correction(0.0, 0.0, 0.0), True  # would predict 0.0 ms for everything
    table.save()
    assert not LatencyTable.open("cpu", 1).calibrated
