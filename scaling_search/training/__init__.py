"""Proxy training: the recipe (:class:`scaling_search.settings.TrainSettings`), the loop (:mod:`.loop`), data parallelism on the CPU
(:mod:`.distributed`) and what the machine offers (:mod:`.resources`).

The loop imports torch, so names load on first use: reading and checking a preset's ``[train]`` table
(:class:`TrainSettings`) stays light, as the command line needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scaling_search.settings.train import OPTIMIZERS, TrainSettings
    from scaling_search.training.loop import (EpochMetrics, LossLog, TrainResult, evaluate, learning_rate,
                                              place_images, recompute_bn_statistics, run_training, train_proxy)
    from scaling_search.training.resources import (available_memory_bytes, check_resolution, check_trainable,
                                                   choose_device, default_threads, describe_device,
                                                   training_memory_bytes)

_LAZY = {
    "OPTIMIZERS": "scaling_search.settings.train", "TrainSettings": "scaling_search.settings.train",
    "EpochMetrics": "loop", "LossLog": "loop", "TrainResult": "loop", "evaluate": "loop", "learning_rate": "loop",
    "place_images": "loop", "recompute_bn_statistics": "loop", "run_training": "loop", "train_proxy": "loop",
    "available_memory_bytes": "resources", "check_resolution": "resources", "check_trainable": "resources",
    "choose_device": "resources", "default_threads": "resources", "describe_device": "resources",
    "training_memory_bytes": "resources",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module = _LAZY[name]
        return getattr(importlib.import_module(module if "." in module else f"scaling_search.training.{module}"), name)
    raise AttributeError(f"module 'scaling_search.training' has no attribute {name!r}")


__all__ = ["OPTIMIZERS", "EpochMetrics", "LossLog", "TrainResult", "TrainSettings", "available_memory_bytes",
           "check_resolution", "check_trainable", "choose_device", "default_threads", "describe_device", "evaluate",
           "learning_rate", "place_images", "recompute_bn_statistics", "run_training", "train_proxy",
           "training_memory_bytes"]
