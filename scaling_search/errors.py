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


__all__ = ["NonFiniteLossError", "UserError"]
