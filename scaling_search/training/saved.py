"""A trained network on disk: ``model.safetensors`` and ``config.json`` in one folder (``train --save DIR``).

The weights are safetensors (the format timm and the Hugging Face hub read), with the state-dict keys of timm's
``EfficientNet`` for the same network. ``config.json`` holds the network's spec (its activation and BatchNorm
settings stated), the ``timm`` block that builds it in timm, a ``pretrained_cfg`` (input size, interpolation,
mean and std, class names), the data it was trained on, the training settings, and the history. The training's
checkpoint (``checkpoint.pt``) stays beside them: rerunning the same command finds the training finished.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from scaling_search.atomic import write_bytes_atomically, write_json_atomically
from scaling_search.data.base import ImageData
from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec
from scaling_search.network.timm_compat import pretrained_cfg, timm_config
from scaling_search.settings.train import RUN_ONLY_FIELDS, TrainSettings
from scaling_search.training.checkpoint import Checkpointer

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SAVED_FORMAT = "scaling-search/trained-model"


def training_fingerprint(spec: NetworkSpec, data: ImageData, settings: TrainSettings) -> dict[str, Any]:
    """What identifies a training for its checkpoint: the network, the settings that change its numbers, and the
    data (name, classes, split sizes)."""
    train = asdict(settings)
    for key in RUN_ONLY_FIELDS:
        train.pop(key)
    return {"network": spec.to_dict(explicit=True), "settings": train,
            "data": {"name": data.name, "classes": list(data.classes), "train": len(data.train_labels),
                     "val": len(data.val_labels)}}


def checkpointer(folder: Path, spec: NetworkSpec, data: ImageData, settings: TrainSettings) -> Checkpointer:
    """The checkpoint of this training under ``folder``; refuses a folder that is a file, before any work."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--save {folder} is a file; give a folder (it is created if missing)")
    return Checkpointer(folder, training_fingerprint(spec, data, settings))


def save_trained(folder: Path, spec: NetworkSpec, data: ImageData, settings: TrainSettings, result: Any,
                 source: str) -> tuple[Path, Path]:
    """Write the finished training's weights (from its last checkpoint) and its config; returns both paths."""
    from safetensors.torch import save

    state = Checkpointer(folder, training_fingerprint(spec, data, settings)).load()
    if state is None:
        raise RuntimeError(f"no checkpoint in {folder} after the training finished")
    weights = {key: tensor.detach().cpu().contiguous() for key, tensor in state.model.items()}
    mean, std = data.pixel_statistics()
    config = {
        "format": SAVED_FORMAT, "format_version": 1, "weights": WEIGHTS_FILE,
        "usage": {"python": f"from scaling_search.training.saved import load_trained; model = load_trained('{folder}')",
                  "onnx": f"scaling-search onnx {folder / CONFIG_FILE} --weights {folder}"},
        "spec": spec.to_dict(explicit=True),
        "timm": timm_config(spec),
        "pretrained_cfg": pretrained_cfg(spec, mean, std, list(data.classes)),
        "data": {"name": data.name, "classes": list(data.classes), "train_images": len(data.train_labels),
                 "val_images": len(data.val_labels), "pixel_mean": mean, "pixel_std": std},
        "train": asdict(settings),
        "trained_from": source,
        "result": result.to_dict(),
    }
    weights_path = write_bytes_atomically(folder / WEIGHTS_FILE, save(weights, metadata={"format": "pt"}))
    return weights_path, write_json_atomically(folder / CONFIG_FILE, config)


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict saved in ``folder`` (one-line errors for a missing or unreadable file)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{folder} holds no {WEIGHTS_FILE}; give the folder 'scaling-search train --save' wrote")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise UserError(f"{path} is not readable safetensors ({error}); save the model again") from None


def load_into(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """``model`` with the weights saved in ``folder``, loaded strictly; refuses weights of another network."""
    try:
        model.load_state_dict(load_weights(folder), strict=True)
    except RuntimeError as error:  # torch's message for missing, unexpected or mis-shaped keys
        first = str(error).splitlines()[0]
        raise UserError(f"the weights in {folder} are not this network's ({first}); give the config they were "
                        "trained with") from None
    return model


def load_trained(folder: str | Path) -> torch.nn.Module:
    """The trained network saved in ``folder``, built from its config and loaded strictly, in eval mode."""
    from scaling_search.network.model import build_model

    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"cannot read {folder / CONFIG_FILE} ({error}); give the folder 'train --save' wrote") from None
    return load_into(build_model(NetworkSpec.from_dict(config["spec"])), folder).eval()


__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "checkpointer", "load_into", "load_trained", "load_weights", "save_trained",
           "training_fingerprint"]
