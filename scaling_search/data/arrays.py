"""Tensors stored as ``.npy`` files and mapped back into memory (the dataset cache's two primitives)."""

from __future__ import annotations

import contextlib
import math
import mmap
import weakref
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from scaling_search.atomic import open_atomically


#: The memory map under each tensor :func:`map_array` returned, by the tensor's data address (an entry goes with
#: its map, which lives as long as the tensor over it).
_MAPS: weakref.WeakValueDictionary[int, mmap.mmap] = weakref.WeakValueDictionary()


def map_array(path: Path) -> torch.Tensor:
    """A ``.npy`` file as a tensor over a copy-on-write memory map: processes that map the same file share its
    pages (one copy in the page cache) until one of them writes, which nothing here does. A truncated or damaged
    file raises ValueError."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(handle)
        offset = handle.tell()
        if fortran_order or dtype.hasobject:
            raise ValueError(f"{path.name}: not a C-ordered array of numbers")
        count = math.prod(shape)
        if count == 0:
            return torch.from_numpy(np.empty(shape, dtype))
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    array = np.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)
    tensor = torch.from_numpy(array)
    _MAPS[tensor.data_ptr()] = mapping
    return tensor


def release_pages(tensor: torch.Tensor) -> None:
    """Hand back the pages of ``tensor``'s memory map that this process has read (``madvise(MADV_DONTNEED)``):
    they leave its resident memory but stay in the page cache, shared with the other processes, and the next read
    maps them again with the same bytes (the file's: nothing writes to the map). Nothing for a tensor
    :func:`map_array` did not return, or where the system has no ``madvise``."""
    mapping = _MAPS.get(tensor.data_ptr())
    if mapping is not None and hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mapping.madvise(mmap.MADV_DONTNEED)


#: How many bytes of a mapped split a process reads between two :func:`release_pages` (:class:`PageBudget`).
RELEASE_BYTES = 64 << 20


class PageBudget:
    """Keeps the pages a process has read of one mapped split within about :data:`RELEASE_BYTES`: :meth:`read`
    counts the rows each batch reads and hands the split's pages back (:func:`release_pages`) each time that many
    more bytes were read. A training at a large proxy resolution reads every page of its split each epoch (a 112-px
    float32 split of 4,200 images is 632 MB); without this each page read stays in the process's resident memory.
    Nothing changes for a split in memory."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images
        row_bytes = images[0].numel() * images.element_size() if len(images) else 1
        self.rows_per_release = max(1, RELEASE_BYTES // max(1, row_bytes))
        self.rows = 0

    def read(self, rows: int) -> None:
        self.rows += rows
        if self.rows >= self.rows_per_release:
            release_pages(self.images)
            self.rows = 0


def save_chunks(path: Path, shape: tuple[int, ...], dtype: torch.dtype, chunks: Iterable[torch.Tensor]) -> None:
    """Write an array of ``shape`` given as ``chunks`` along its first axis as the ``.npy`` file ``path``, atomically
    (readers see the whole file or none; of two processes racing to write it, one's complete copy wins), holding
    one chunk at a time instead of the array: written through the file, not a memory map, so no page of it is
    counted in this process's memory."""
    descr = np.lib.format.dtype_to_descr(np.dtype(torch.empty(0, dtype=dtype).numpy().dtype))
    with open_atomically(path) as out:
        np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
        rows = 0
        for chunk in chunks:
            out.write(chunk.contiguous().numpy().tobytes())
            rows += chunk.shape[0]
        if rows != shape[0]:
            raise ValueError(f"{path.name}: {rows} rows written of {shape[0]}")


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` (created if missing) while the block runs, so that of N
    processes started together one computes a cache entry and the others wait and map it. Where the system has
    no ``fcntl`` (Windows), the block runs unlocked: each process may compute the entry, the numbers are the same.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    created = [folder for folder in (lock.parent, *lock.parent.parents) if not folder.exists()]
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        except BaseException:
            # a failed block (unreadable data) leaves no trace in the cache: the lock file and the folders made
            # for it go. A process waiting on the lock then decodes for itself: duplicate work, same numbers.
            lock.unlink(missing_ok=True)
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only if empty
            raise
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["PageBudget", "exclusive", "map_array", "release_pages", "save_chunks"]
