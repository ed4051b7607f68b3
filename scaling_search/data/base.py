"""The one interface every dataset source produces: decoded uint8 images, resized once per resolution."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from scaling_search.data.arrays import exclusive, map_array, save_chunks
from scaling_search.errors import UserError

#: Images are resized in chunks of this many to bound peak memory (antialiased interpolation works image by image,
#: so the numbers do not depend on it).
_RESIZE_CHUNK = 512
#: Part of every resized split's file name in the disk cache: bump it when :meth:`ImageData._resized` changes
#: what it computes, so that no process maps a split resized the old way.
RESIZE_FORMAT = 1


class Split(NamedTuple):
    """Normalised float32 images (N, C, R, R) and int64 labels (N,) at one resolution."""

    images: torch.Tensor
    labels: torch.Tensor


class ResizedCache:
    """The resized, normalised splits of one dataset, least recently used first out, within ``max_bytes``.

    A study trains proxies at many resolutions (each grid point's gamma gives its own); keeping every one
    would hold gigabytes that no later trial reads. Entries of the resolution being inserted are never evicted
    for it (a trial needs its train and val splits together), so one resolution larger than the bound still
    fits; ``max_bytes = 0`` keeps only the resolution in use. Splits mapped from the disk cache are never kept
    beyond the resolution in use: mapping a file again costs nothing (the page cache holds it), while every page
    of a kept mapping that training touched counts in the process's resident memory.
    """

    def __init__(self, max_bytes: int = 1 << 30, disk: Path | None = None) -> None:
        self.max_bytes = max_bytes
        self.disk = disk  # a folder of the machine's dataset cache (scaling_search.data.decoded), or None
        self.entries: OrderedDict[tuple[str, int], Split] = OrderedDict()
        self.stats: tuple[torch.Tensor, torch.Tensor] | None = None  # the train split's mean and std (a few bytes)
        self.resized = 0  # splits computed (a test counts them)
        self.resampled: dict[int, ImageData] = {}  # native px -> the data resampled to it

    @property
    def nbytes(self) -> int:
        return sum(split.images.numel() * split.images.element_size() for split in self.entries.values())

    def get(self, key: tuple[str, int]) -> Split | None:
        if key in self.entries:
            self.entries.move_to_end(key)
        return self.entries.get(key)

    def _file(self, key: tuple[str, int]) -> Path:
        assert self.disk is not None
        return self.disk / f"{key[0]}-{key[1]}px-v{RESIZE_FORMAT}.npy"

    def load_or_compute(self, key: tuple[str, int], shape: tuple[int, ...],
                        chunks: Callable[[], Iterator[torch.Tensor]]) -> torch.Tensor:
        """A split's float32 images of ``shape``: from the disk cache, memory-mapped, when a process or an earlier
        run wrote them; else computed as ``chunks()`` (along the first axis), written there one chunk at a time and
        mapped back (the pages every process then shares). Of processes asking together, one computes and the
        others wait for its file. Without a writable disk cache: computed into memory and kept there."""
        if self.disk is None:
            return _assembled(shape, chunks())
        path = self._file(key)
        try:
            if path.exists():
                try:
                    return map_array(path)
                except ValueError:  # truncated or damaged: computed again and rewritten below
                    pass
            self.disk.mkdir(parents=True, exist_ok=True)
            with exclusive(path.with_suffix(".lock")):
                try:
                    return map_array(path)  # another process wrote it while this one waited
                except (OSError, ValueError):
                    save_chunks(path, shape, torch.float32, chunks())
            return map_array(path)
        except (OSError, ValueError):
            self.disk = None  # unwritable: this dataset stays in memory from here on
            return _assembled(shape, chunks())

    def put(self, key: tuple[str, int], split: Split) -> None:
        self.resized += 1
        self.entries[key] = split
        limit = 0 if self.disk is not None else self.max_bytes
        for old in [k for k in self.entries if k[1] != key[1]]:  # least recently used first
            if self.nbytes <= limit:
                break
            del self.entries[old]


def _assembled(shape: tuple[int, ...], chunks: Iterator[torch.Tensor]) -> torch.Tensor:
    out = torch.empty(shape)
    start = 0
    for chunk in chunks:
        out[start:start + chunk.shape[0]] = chunk
        start += chunk.shape[0]
    return out


class DataError(UserError):
    """Bad input data: the message names the file or array and what is wrong with it."""


@dataclass(frozen=True, eq=False)
class ImageData:
    """A decoded classification dataset with a train and a validation split.

    Images are kept once, as uint8 NCHW at their native resolution; :meth:`split` resizes a split to a
    requested resolution once (antialiased bilinear), normalises it with the train set's per-channel mean and
    std, and keeps the result in a bounded cache (:class:`ResizedCache`), so training touches no per-image
    Python code.
    """

    name: str
    classes: tuple[str, ...]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    cache: ResizedCache = field(default_factory=ResizedCache, repr=False, compare=False)

    def __post_init__(self) -> None:
        for split in ("train", "val"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4:
                raise DataError(f"{self.name}: {split} images must be uint8 (N, C, H, W), got {images.dtype} "
                                f"{tuple(images.shape)}")
            if images.shape[0] != labels.shape[0]:
                raise DataError(f"{self.name}: {images.shape[0]} {split} images but {labels.shape[0]} labels")
            if images.shape[0] == 0:
                raise DataError(f"{self.name}: the {split} split is empty")
            if labels.min() < 0 or labels.max() >= len(self.classes):
                raise DataError(f"{self.name}: {split} labels must lie in 0..{len(self.classes) - 1}")
        train_shape, val_shape = tuple(self.train_images.shape[1:]), tuple(self.val_images.shape[1:])
        if train_shape != val_shape:
            raise DataError(f"{self.name}: validation images are (C, H, W) = {val_shape} but training images "
                            f"{train_shape}; give both splits with the same channels and size")
        if len(self.classes) < 2:
            raise DataError(f"{self.name}: found only one class; classification needs at least two")
        if len(torch.unique(self.train_labels)) < 2:
            raise DataError(f"{self.name}: the train split holds a single class; it needs at least two")
        unseen = sorted(set(torch.unique(self.val_labels).tolist()) - set(torch.unique(self.train_labels).tolist()))
        if unseen:
            names = ", ".join(self.classes[i] for i in unseen[:5]) + (" ..." if len(unseen) > 5 else "")
            raise DataError(f"{self.name}: the validation split has class(es) the train split lacks ({names}); "
                            "every validated class needs training images")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_train_share(self, share: float, seed: int) -> ImageData:
        """The same data with ``share`` of the training images (the same count from every class, seeded) and the
        whole validation split: a proxy of less data, scored on the same validation images."""
        keep = class_balanced_subset(self.train_labels, round(share * len(self.train_labels)), self.num_classes, seed)
        if len(keep) < self.num_classes:
            raise DataError(f"{self.name}: a train share of {share:g} keeps {len(keep)} images, fewer than the "
                            f"{self.num_classes} classes; raise it")
        return ImageData(f"{self.name}[train x{share:g}]", self.classes, self.train_images[keep],
                         self.train_labels[keep], self.val_images, self.val_labels)

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def native_resolution(self) -> int:
        return int(self.train_images.shape[-1])

    def pixel_statistics(self) -> tuple[list[float], list[float]]:
        """The per-channel mean and std every split is normalised with, in pixel units (0..255): the train
        split's (an inference pipeline feeding a trained network uses the same)."""
        mean, std = self._normalisation()
        return mean.flatten().tolist(), std.flatten().tolist()

    def _normalisation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The train split's per-channel mean and std, computed once."""
        if self.cache.stats is None:
            self.cache.stats = self._stats()
        return self.cache.stats

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        images = self.train_images
        total = torch.zeros(images.shape[1], dtype=torch.float64)
        square = torch.zeros_like(total)
        for start in range(0, images.shape[0], _RESIZE_CHUNK):
            chunk = images[start:start + _RESIZE_CHUNK].double()
            total += chunk.sum((0, 2, 3))
            square += (chunk**2).sum((0, 2, 3))
        count = images.shape[0] * images.shape[2] * images.shape[3]
        mean = total / count
        std = (square / count - mean**2).clamp_min(1e-6).sqrt()
        return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)

    def resampled(self, native: int) -> ImageData:
        """The same images resampled to ``native`` pixels (antialiased, as uint8), normalised with this data's
        statistics (the deployment network's): what a proxy sees where ``[proxy] images`` limits its input
        information (:func:`scaling_search.settings.proxy.information_pixels`). Kept once per size; the data itself
        where ``native`` keeps every pixel."""
        if native >= self.native_resolution:
            return self
        if native not in self.cache.resampled:
            def resample(images: torch.Tensor) -> torch.Tensor:
                out = torch.empty(images.shape[0], images.shape[1], native, native, dtype=torch.uint8)
                for start in range(0, images.shape[0], _RESIZE_CHUNK):
                    chunk = F.interpolate(images[start:start + _RESIZE_CHUNK].float(), size=(native, native),
                                          mode="bilinear", antialias=True, align_corners=False)
                    out[start:start + _RESIZE_CHUNK] = chunk.round().clamp(0, 255).to(torch.uint8)
                return out

            shrunk = ImageData(f"{self.name}[native {native}px]", self.classes, resample(self.train_images),
                               self.train_labels, resample(self.val_images), self.val_labels)
            shrunk.cache.stats = self._normalisation()  # the deployment network's normalisation
            self.cache.resampled[native] = shrunk
        return self.cache.resampled[native]

    def split(self, which: str, resolution: int) -> Split:
        """The ``"train"`` or ``"val"`` split at ``resolution``, normalised; computed once, then cached."""
        if which not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {which!r}")
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution}")
        key = (which, resolution)
        cached = self.cache.get(key)
        if cached is None:
            source = getattr(self, f"{which}_images")
            shape = (source.shape[0], source.shape[1], resolution, resolution)
            images = self.cache.load_or_compute(key, shape, lambda: self._resized(which, resolution))
            cached = Split(images, getattr(self, f"{which}_labels"))
            self.cache.put(key, cached)
        return cached

    def _resized(self, which: str, resolution: int) -> Iterator[torch.Tensor]:
        """The split resized and normalised, :data:`_RESIZE_CHUNK` images at a time."""
        mean, std = self._normalisation()
        source = getattr(self, f"{which}_images")
        for start in range(0, source.shape[0], _RESIZE_CHUNK):
            chunk = source[start:start + _RESIZE_CHUNK].float()
            if chunk.shape[-1] != resolution or chunk.shape[-2] != resolution:
                chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear",
                                      antialias=True, align_corners=False)
            yield (chunk - mean) / std

    def describe(self) -> str:
        return (f"{self.name}: {self.num_classes} classes, {len(self.train_labels)} train / "
                f"{len(self.val_labels)} val images, native {self.native_resolution}px, {self.channels} channel(s)")


def class_balanced_subset(labels: torch.Tensor, per_class_total: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of about ``per_class_total`` examples, the same count from every class (seeded, sorted)."""
    generator = torch.Generator().manual_seed(seed)
    per_class = max(1, per_class_total // num_classes)
    chosen = []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        order = torch.randperm(len(members), generator=generator)
        chosen.append(members[order[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def holdout_split(labels: torch.Tensor, fraction: float, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified (train_indices, val_indices) holding out ``fraction`` of each class (at least one each)."""
    if not 0 < fraction < 1:
        raise ValueError(f"val fraction must be between 0 and 1, got {fraction}")
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held = max(1, int(round(len(members) * fraction))) if len(members) > 1 else 0
        val.append(members[:held])
        train.append(members[held:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(val)).values
