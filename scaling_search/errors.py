"""Exceptions the CLI turns into one-line messages (kept free of heavy imports)."""

from __future__ import annotations


class UserError(ValueError):
    """A user's mistake (bad input, settings or budget): the CLI prints it as one line and exits with 2.

    It subclasses ValueError so library callers that catch ValueError keep working; the CLI catches this type
    (and the ValueErrors of validation), while a bug keeps its traceback.
    """


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; carries where it happened."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"training loss became {value} at epoch {epoch}, step {step}; lower the learning rate "
                         "or check the data")
        self.epoch, self.step, self.value = epoch, step, value

    def __reduce__(self) -> tuple[type, tuple[int, int, float]]:  # crosses process boundaries intact
        return (type(self), (self.epoch, self.step, self.value))


def no_room_left(error: BaseException) -> str | None:
    """Where ``error`` (or an error it was raised from, as Optuna's storage wraps SQLite's) is a device without
    room left, a sentence naming the file; else None. A full disk is the machine's state, not a bug: it is
    reported in one line, and every write is atomic (``scaling_search.atomic``, SQLite's journal), so nothing
    saved changed."""
    import errno

    codes = {getattr(errno, "ENOSPC", 28), getattr(errno, "EDQUOT", 122)}  # out of space, out of quota
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in codes:
            where = f" ({current.filename})" if current.filename else ""
            return f"no space left on the device{where}"
        if "database or disk is full" in str(current):  # SQLite's SQLITE_FULL, through SQLAlchemy and Optuna
            return "no space left on the device holding the study's SQLite storage"
        current = current.__cause__ or current.__context__
    return None


__all__ = ["NonFiniteLossError", "UserError", "no_room_left"]
