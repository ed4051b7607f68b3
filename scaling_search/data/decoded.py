"""Decoded datasets on disk, memory-mapped: a dataset is decoded once per machine, not once per process.

Every grid worker (``--workers N``) and every data-parallel rank loads the study's data itself. Without this
each decoded the source again (Pillow over every file of an image folder, the renderer for the synthetic set) and
held its own copy of the uint8 images and of every resized split. Here the first process writes the decoded arrays
as ``.npy`` files under ``<cache>/datasets/<key>/``; later ones map them (copy-on-write), so the operating system
keeps one copy in its page cache for all of them, and a training hands back the pages it has read
(:class:`scaling_search.data.arrays.PageBudget`). Resized, normalised splits are written the same way, one file per
split and resolution, the first time any process computes one (:class:`scaling_search.data.base.ResizedCache`).

The key is a hash of the source's path and of every file's size and modification time, the reader and its
hold-out settings: a changed file makes a new entry. The numbers are the ones an in-memory load computes, bit
for bit (tests/test_data.py). ``<cache>`` is ``$SCALING_SEARCH_CACHE`` (default ``~/.cache/scaling-search``);
deleting ``<cache>/datasets`` is always safe. A cache that cannot be written (read-only, full disk) is skipped:
the data is then held in memory as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from scaling_search.cache import cache_root
from scaling_search.data.arrays import exclusive, map_array
from scaling_search.data.base import DataError, ImageData, ResizedCache

#: Bump when the layout of an entry changes: old entries are then ignored.
CACHE_FORMAT = 1
_ARRAYS = ("train_images", "train_labels", "val_images", "val_labels")


def datasets_root() -> Path:
    return cache_root() / "datasets"


def fingerprint(path: Path) -> list[tuple[str, int, int]]:
    """(relative name, size, modification time in ns) of ``path`` or of every file under it, sorted."""
    path = path.resolve()
    if path.is_file():
        stat = path.stat()
        return [(path.name, stat.st_size, stat.st_mtime_ns)]
    found = []
    for folder, _, names in os.walk(path):
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            found.append((os.path.relpath(os.path.join(folder, name), path), stat.st_size, stat.st_mtime_ns))
    return sorted(found)


def dataset_key(kind: str, path: Path, options: dict[str, object]) -> str:
    body = {"format": CACHE_FORMAT, "kind": kind, "path": str(path.resolve()), "options": options,
            "files": fingerprint(path)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def _load_entry(folder: Path) -> ImageData | None:
    """The cached dataset in ``folder``, or None where there is none or it is damaged (truncated arrays, broken
    metadata, arrays that no longer fit together): a damaged entry is never trusted."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {name: map_array(folder / f"{name}.npy") for name in _ARRAYS}
        return ImageData(meta["name"], tuple(meta["classes"]), **arrays, cache=ResizedCache(disk=folder / "resized"))
    except (OSError, ValueError, KeyError, TypeError, DataError):
        return None


def _write_entry(folder: Path, data: ImageData) -> None:
    """Write every array and the metadata into a temporary folder, then rename it into place in one step."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        for name in _ARRAYS:
            np.save(staging / f"{name}.npy", getattr(data, name).numpy())
        (staging / "meta.json").write_text(json.dumps({"name": data.name, "classes": list(data.classes)}))
        try:
            staging.rename(folder)
        except OSError:  # another process wrote the entry first: keep theirs
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def decoded_dataset(kind: str, path: Path, options: dict[str, object], decode: Callable[[], ImageData]) -> ImageData:
    """``decode()``'s dataset, from the machine's cache when an entry for this source exists, else decoded
    and written there, then mapped (so this process shares its pages with the next ones too)."""
    folder = datasets_root() / dataset_key(kind, path, options)
    data = _load_entry(folder)
    if data is not None:
        return data
    try:
        with exclusive(folder.with_suffix(".lock")):  # workers started together: one decodes, the others wait
            data = _load_entry(folder)
            if data is not None:
                return data
            data = decode()
            if folder.exists():  # a damaged entry: rebuilt, not kept
                shutil.rmtree(folder, ignore_errors=True)
            _write_entry(folder, data)
    except OSError:
        return data if data is not None else decode()  # no cache here: the decoded copy stays in memory
    return _load_entry(folder) or data


__all__ = ["CACHE_FORMAT", "dataset_key", "datasets_root", "decoded_dataset", "fingerprint"]
