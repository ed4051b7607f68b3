"""Pick a dataset reader from a source and load it, optionally as a class-balanced subset."""

from __future__ import annotations

from pathlib import Path

import torch

from scaling_search.data import synthetic
from scaling_search.data.base import DataError, ImageData, ResizedCache, class_balanced_subset
from scaling_search.data.decoded import decoded_dataset
from scaling_search.data.formats import FORMATS
from scaling_search.data.synthetic import synthetic_dataset


def infer_format(source: str) -> str:
    """``synthetic`` by name; otherwise from the path: ``.npz`` file, CIFAR python directory, or image tree."""
    if source == "synthetic":
        return "synthetic"
    path = Path(source)
    if not path.exists():
        raise DataError(f"{source}: no such file or directory (use --data synthetic or a path to your data)")
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
        raise DataError(f"{source}: cannot tell the data format of this file (give a .npz, or --data-format)")
    if (path / "data_batch_1").exists() or (path / "train").is_file():
        return "cifar"
    return "folder"


def load_dataset(
    source: str = "synthetic",
    *,
    data_format: str | None = None,
    subset: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    synthetic_train_per_class: int = 400,
    synthetic_val_per_class: int = 100,
) -> ImageData:
    """Load a dataset from ``source`` (``"synthetic"`` or a path) and optionally subsample it.

    Args:
        source: ``"synthetic"``, a ``.npz`` file, a CIFAR python directory or an ImageFolder tree.
        data_format: one of :data:`FORMATS` to override the inference from the path.
        subset: keep about this many training images, the same number from every class (seeded); the
            validation split keeps ``subset // 4`` images the same way when it is larger.
        val_fraction: share of each training class held out where the source has no validation split.
        seed: seed for the synthetic renderer, subsets and hold-outs.
    """
    kind = data_format or infer_format(source)
    if kind not in FORMATS:
        raise DataError(f"unknown data format {kind!r}: choose one of {', '.join(FORMATS)}")
    if kind == "synthetic":
        # rendered once per machine too: the key holds the renderer's file (its size and time) and torch's version,
        # whose generator draws the shapes, so a changed renderer or generator renders again
        data = decoded_dataset("synthetic", Path(synthetic.__file__),
                               {"train_per_class": synthetic_train_per_class, "val_per_class": synthetic_val_per_class,
                                "seed": seed, "torch": torch.__version__},
                               lambda: synthetic_dataset(synthetic_train_per_class, synthetic_val_per_class, seed=seed))
    else:
        from scaling_search.data import files

        path = Path(source)
        if not path.exists():
            raise DataError(f"{source}: no such file or directory")
        readers = {"npz": lambda: files.load_npz(path, val_fraction, seed),
                   "folder": lambda: files.load_folder(path, val_fraction, seed),
                   "cifar": lambda: files.load_cifar(path)}
        # decoded once per machine and memory-mapped by every process (scaling_search.data.decoded)
        data = decoded_dataset(kind, path, {"val_fraction": val_fraction, "seed": seed}, readers[kind])
    if subset is not None:
        if subset < data.num_classes:
            raise DataError(f"--subset {subset} is smaller than the {data.num_classes} classes; use at least one per class")
        if subset > len(data.train_labels):
            raise DataError(f"--subset {subset} is larger than the {len(data.train_labels)} training images of "
                            f"{data.name}; use at most {len(data.train_labels)}, or leave it out to keep all")
        train = class_balanced_subset(data.train_labels, subset, data.num_classes, seed)
        val_size = max(data.num_classes, subset // 4)
        val = (class_balanced_subset(data.val_labels, val_size, data.num_classes, seed)
               if val_size < len(data.val_labels) else slice(None))
        disk = data.cache.disk / f"subset{subset}-seed{seed}" if data.cache.disk is not None else None
        data = ImageData(f"{data.name}[subset={subset}]", data.classes, data.train_images[train],
                         data.train_labels[train], data.val_images[val], data.val_labels[val],
                         cache=ResizedCache(disk=disk))
    return data


__all__ = ["infer_format", "load_dataset"]
