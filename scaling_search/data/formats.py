"""The dataset formats :func:`scaling_search.data.load_dataset` reads (no heavy imports: presets validate it)."""

FORMATS = ("synthetic", "npz", "folder", "cifar")

__all__ = ["FORMATS"]
