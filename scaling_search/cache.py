"""Where this machine's caches live: latency tables, decoded datasets and execution plans (no heavy imports)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$SCALING_SEARCH_CACHE``, else ``$XDG_CACHE_HOME/scaling-search``, else ``~/.cache/scaling-search``."""
    return Path(os.environ.get("SCALING_SEARCH_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "scaling-search"))


__all__ = ["cache_root"]
