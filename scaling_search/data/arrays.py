"""Tensors stored as ``.npy`` files and mapped back into memory (the dataset cache's two primitives)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from scaling_search.atomic import open_atomically


def map_array(path: Path) -> torch.Tensor:
    """A ``.npy`` file as a tensor over a copy-on-write memory map: processes that map the same file share its
    pages (one copy in the page cache) until one of them writes, which nothing here does."""
    return torch.from_numpy(np.load(path, mmap_mode="c"))


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


__all__ = ["exclusive", "map_array", "save_chunks"]
