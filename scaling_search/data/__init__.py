"""Dataset sources behind one interface, :class:`ImageData`; :func:`load_dataset` picks the reader.

The readers import torch, so they load on first use: reading a preset (``FORMATS``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scaling_search.data.formats import FORMATS

if TYPE_CHECKING:
    from scaling_search.data.base import DataError, ImageData, Split
    from scaling_search.data.loading import infer_format, load_dataset
    from scaling_search.data.synthetic import synthetic_dataset

_LAZY = {"DataError": "base", "ImageData": "base", "Split": "base", "class_balanced_subset": "base",
         "infer_format": "loading", "load_dataset": "loading", "synthetic_dataset": "synthetic"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"scaling_search.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'scaling_search.data' has no attribute {name!r}")


__all__ = ["DataError", "FORMATS", "ImageData", "Split", "infer_format", "load_dataset", "synthetic_dataset"]
