"""Exceptions the CLI turns into one-line messages (kept free of heavy imports)."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; carries where it happened."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"training loss became {value} at epoch {epoch}, step {step}; lower the learning rate "
                         "or check the data")
        self.epoch, self.step, self.value = epoch, step, value

    def __reduce__(self) -> tuple[type, tuple[int, int, float]]:  # crosses process boundaries intact
        return (type(self), (self.epoch, self.step, self.value))


__all__ = ["NonFiniteLossError"]
