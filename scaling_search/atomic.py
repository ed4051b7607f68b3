"""Files written whole or not at all: a failed or interrupted run never leaves a half-written report or config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_text_atomically(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path


def write_json_atomically(path: Path, body: Any) -> Path:
    """``body`` as indented JSON, written atomically."""
    return write_text_atomically(path, json.dumps(body, indent=2) + "\n")


__all__ = ["write_json_atomically", "write_text_atomically"]
