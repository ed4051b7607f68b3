"""Resumable training (scaling_search/training/checkpoint.py, saved.py and ``train --save``): an interrupted
training continues with the same numbers and weights as one that never stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pytest
import torch

from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.errors import UserError
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.scaling import scale
from scaling_search.training import TrainSettings, train_proxy
from scaling_search.training.checkpoint import CHECKPOINT_FILE
from scaling_search.training.saved import checkpointer, load_trained, save_trained

TINY = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=10)
FAST = TrainSettings(epochs=3, batch_size=32, threads=1, eval_batch_size=100)


class InterruptAfter(threading.Event):
    """A Ctrl-C that arrives after ``checks`` steps (the loop asks once per step and once per epoch's end)."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.left = checks

    def is_set(self) -> bool:
        self.left -= 1
        return self.left < 0 or super().is_set()


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(8, 3, seed=0)


def _weights(folder):
    return torch.load(folder / CHECKPOINT_FILE, weights_only=False)["state"]["model"]


def _uninterrupted(tmp_path, data):
    folder = tmp_path / "whole"
    result = train_proxy(TINY, data, FAST, checkpoint=checkpointer(folder, TINY, data, FAST))
    return result, _weights(folder)


@pytest.mark.parametrize("checks", [2, 3, 4, 6])  # at epoch 1's end, within epoch 2, at its end, within 3
def test_a_training_interrupted_anywhere_resumes_to_the_same_numbers_and_weights(tmp_path, data, checks):
    whole, whole_weights = _uninterrupted(tmp_path, data)
    folder = tmp_path / "stopped"
    stopping = checkpointer(folder, TINY, data, FAST)
    stopping.interrupted = InterruptAfter(checks)
    with pytest.raises(KeyboardInterrupt):
        train_proxy(TINY, data, FAST, checkpoint=stopping)
    saved = torch.load(folder / CHECKPOINT_FILE, weights_only=False)["state"]
    assert (saved["epoch"], saved["batch"]) != (0, 0) and saved["epoch"] < FAST.epochs
    resumed = train_proxy(TINY, data, FAST, checkpoint=checkpointer(folder, TINY, data, FAST))
    assert [h.train_loss for h in resumed.history] == [h.train_loss for h in whole.history]
    assert [h.val_top1 for h in resumed.history] == [h.val_top1 for h in whole.history]
    weights = _weights(folder)
    assert weights.keys() == whole_weights.keys()
    assert all(torch.equal(weights[key], whole_weights[key]) for key in weights)


def test_a_finished_training_is_found_finished_and_saved_as_safetensors_with_its_config(tmp_path, data):
    folder = tmp_path / "model"
    first = train_proxy(TINY, data, FAST, checkpoint=checkpointer(folder, TINY, data, FAST))
    again = train_proxy(TINY, data, FAST, checkpoint=checkpointer(folder, TINY, data, FAST))
    assert again.history == first.history
    weights, config_path = save_trained(folder, TINY, data, FAST, again, "tiny")
    config = json.loads(config_path.read_text())
    assert config["data"]["classes"] == list(data.classes) and len(config["result"]["history"]) == FAST.epochs
    assert config["spec"]["activation"] == "silu" and config["spec"]["bn_eps"] == 1e-3
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 32, 32] and cfg["num_classes"] == 10 and len(cfg["mean"]) == 3
    assert all(0 < m < 1 for m in cfg["mean"]) and cfg["label_names"] == list(data.classes)
    model = load_trained(folder)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in _weights(folder).items())


def test_a_checkpoint_of_another_training_or_a_broken_one_is_refused_in_one_line(tmp_path, data):
    folder = tmp_path / "model"
    train_proxy(TINY, data, replace(FAST, epochs=1), checkpoint=checkpointer(folder, TINY, data, replace(FAST, epochs=1)))
    with pytest.raises(UserError, match="holds a training of another settings"):
        train_proxy(TINY, data, FAST, checkpoint=checkpointer(folder, TINY, data, FAST))
    (folder / CHECKPOINT_FILE).write_bytes(b"\x00" * 10)
    with pytest.raises(UserError, match="is not a readable checkpoint"):
        train_proxy(TINY, data, FAST, checkpoint=checkpointer(folder, TINY, data, FAST))
    with pytest.raises(UserError, match="is a file"):
        checkpointer(folder / CHECKPOINT_FILE, TINY, data, FAST)
    with pytest.raises(UserError, match="one process"):
        train_proxy(TINY, data, replace(FAST, processes=2), checkpoint=checkpointer(tmp_path / "p", TINY, data, FAST))


def _train_command(folder, *extra):
    return [sys.executable, "-m", "scaling_search", "train", "b0", "--width", "0.25", "--depth", "0.34",
            "--resolution", "32", "--preset", "smoke", "--epochs", "3", "--batch-size", "16", "--threads", "1",
            "--no-progress", "--format", "json", "--save", str(folder), *extra]


def _epochs_saved(folder) -> int:
    try:
        return torch.load(folder / CHECKPOINT_FILE, weights_only=False)["state"]["epoch"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT])
def test_train_save_killed_or_interrupted_in_epoch_two_finishes_as_an_uninterrupted_run(tmp_path, how):
    env = {**os.environ, "SCALING_SEARCH_CACHE": str(tmp_path / "cache")}
    whole = subprocess.run(_train_command(tmp_path / "whole"), capture_output=True, text=True, env=env, timeout=600)
    assert whole.returncode == 0, whole.stderr
    folder = tmp_path / "stopped"
    process = subprocess.Popen(_train_command(folder), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env)
    deadline = time.monotonic() + 600
    while _epochs_saved(folder) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(how)  # during epoch 2
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == (-signal.SIGKILL if how == signal.SIGKILL else 130), stderr
    if how == signal.SIGINT:
        assert "re-run the same command to resume" in stderr
    resumed = subprocess.run(_train_command(folder), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    first, again = json.loads(whole.stdout.split("saved:")[0]), json.loads(resumed.stdout.split("saved:")[0])
    assert again[0]["val_top1"] == first[0]["val_top1"]
    assert [h["train_loss"] for h in again[0]["history"]] == [h["train_loss"] for h in first[0]["history"]]
    assert (folder / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
