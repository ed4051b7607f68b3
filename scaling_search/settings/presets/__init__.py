"""Presets are data: TOML files shipped in this package (``smoke``, ``quick``, ``standard``)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from scaling_search.errors import UserError

PRESETS = ("smoke", "quick", "standard")


def preset_path(name: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(f"{name}.toml")))


def load_toml(name_or_path: str) -> dict[str, Any]:
    """A shipped preset by name, or any TOML file by path; one-line errors for a missing or broken file."""
    if name_or_path in PRESETS:
        path = preset_path(name_or_path)
    else:
        path = Path(name_or_path)
        if path.suffix != ".toml" or not path.exists():
            raise UserError(f"unknown preset {name_or_path!r}: choose one of {', '.join(PRESETS)} or give a .toml file")
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"{path}: not valid TOML ({error})") from None
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text, as TOML must be (byte {error.start}); save it as UTF-8") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror})") from None


__all__ = ["PRESETS", "load_toml", "preset_path"]
