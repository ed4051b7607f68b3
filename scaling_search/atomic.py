"""Files written whole or not at all: a failed or interrupted run never leaves a half-written report or config.

Each write goes to a temporary file of its own beside the target (a unique name, so concurrent writers never
collide), which is renamed over the target (atomic on POSIX) or removed if the write fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO


def check_writable_folder(folder: Path, flag: str = "--output") -> Path:
    """Refuse, before any work, a folder that files cannot be written into: a file, one under a file, or one
    under a folder this process cannot write (``flag`` names it in the message). Creates nothing."""
    from scaling_search.errors import UserError

    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder} is a file; give a folder")
    ancestor = folder
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{flag} {folder}: {ancestor} is a file; give another folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder}: {ancestor} is not writable; give another folder")
    return folder


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def open_atomically(path: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through: a unique temporary beside it, renamed over ``path`` when the block
    ends, removed if it fails. A failed write() names ``path`` (a full disk says which file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, _file_mode())  # mkstemp makes files private; a report or config is an ordinary file
        with os.fdopen(handle, "wb") as file:
            yield file
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        if error.filename is None:  # a failed write() names no file: name the one being written
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_bytes_atomically(path: Path, data: bytes) -> Path:
    """Write ``data`` to a unique temporary file beside ``path``, then rename it over ``path``."""
    with open_atomically(path) as file:
        file.write(data)
    return path


def write_text_atomically(path: Path, text: str) -> Path:
    """``text`` (UTF-8) written atomically."""
    return write_bytes_atomically(path, text.encode())


def write_json_atomically(path: Path, body: Any, indent: int | None = 2, sort_keys: bool = False) -> Path:
    """``body`` as JSON (indented, with a final newline at the default indent), written atomically."""
    text = json.dumps(body, indent=indent, sort_keys=sort_keys)
    return write_text_atomically(path, text + "\n" if indent == 2 else text)


def write_csv_atomically(path: Path, frame: Any) -> Path:
    """A pandas DataFrame as CSV without its index, written atomically."""
    return write_text_atomically(path, frame.to_csv(index=False))


__all__ = ["check_writable_folder", "open_atomically", "write_bytes_atomically", "write_csv_atomically", "write_json_atomically", "write_text_atomically"]
