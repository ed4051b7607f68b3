"""Resumable training: the whole state of a training, saved at every epoch's end and when interrupted.

A :class:`TrainingState` holds what the next step depends on: the weights and BatchNorm statistics, the
optimizer's state, the step count (the learning rate is a function of it), every random generator (the global
one draws dropout and stochastic depth, the loop's own draws the order and the augmentation), the epochs'
history, and within an epoch the order, the batches done, their losses and correct counts. Resuming restores
all of it, so an interrupted training continues with the same numbers as one that never stopped, on the same
machine, thread count and settings.

A checkpoint is written whole or not at all (:mod:`scaling_search.atomic`) to ``<folder>/checkpoint.pt``, with a
fingerprint of the network, the settings and the data; a checkpoint of another training is refused in one line.
A SIGINT or SIGTERM during a checkpointed training is deferred to the end of the running step
(:func:`deferred_interrupts`), the state is saved there, and :class:`KeyboardInterrupt` is raised.
"""

from __future__ import annotations

import contextlib
import io
import pickle
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from scaling_search.atomic import write_bytes_atomically
from scaling_search.errors import UserError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "scaling-search/training-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class TrainingState:
    """Where a training stands: ``epoch`` epochs finished, ``batch`` batches of the next one done."""

    epoch: int
    batch: int
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    train_seconds: float
    order: torch.Tensor | None = None
    losses: list[float] = field(default_factory=list)
    correct: int = 0


@dataclass
class Checkpointer:
    """Saves and loads the :class:`TrainingState` of one training under ``folder``.

    Attributes:
        folder: where ``checkpoint.pt`` lives (``train --save DIR``).
        fingerprint: what identifies the training (network, settings, data); a checkpoint made with another is
            refused rather than resumed.
    """

    folder: Path
    fingerprint: dict[str, Any]
    interrupted: threading.Event = field(default_factory=threading.Event)

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def load(self) -> TrainingState | None:
        """The saved state, or None when there is none; a corrupt file or another training's is refused."""
        if not self.path.exists():
            return None
        try:
            body = torch.load(self.path, map_location="cpu", weights_only=True)  # tensors and data, never code
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:  # truncated, foreign
            raise UserError(f"{self.path} is not a readable checkpoint ({type(error).__name__}); delete it to start "
                            "the training again") from None
        if not isinstance(body, dict) or body.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{self.path} is not a scaling-search training checkpoint; choose another --save folder")
        if body.get("version") != CHECKPOINT_VERSION:
            raise UserError(f"{self.path} has checkpoint version {body.get('version')!r}; this tool reads "
                            f"{CHECKPOINT_VERSION}; delete it to start again")
        if body["fingerprint"] != self.fingerprint:
            changed = sorted(key for key in self.fingerprint if body["fingerprint"].get(key) != self.fingerprint[key])
            raise UserError(f"{self.path} holds a training of another {', '.join(changed) or 'kind'}; use the same "
                            "flags to resume it, or another --save folder to start a new one")
        return TrainingState(**body["state"])

    def save(self, state: TrainingState) -> None:
        buffer = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "fingerprint": self.fingerprint,
                    "state": state.__dict__}, buffer)
        write_bytes_atomically(self.path, buffer.getvalue())


def rng_state(generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """Every random state a training step draws from."""
    state = {"global": torch.get_rng_state(), "loop": generator.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, torch.Tensor], generator: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["global"])
    generator.set_state(state["loop"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def deferred_interrupts(event: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``event`` instead of interrupting (the loop checks it between steps); the previous
    handlers come back on exit. Outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def defer(signum: int, frame: Any) -> None:
        event.set()

    previous = {sig: signal.signal(sig, defer) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


__all__ = ["CHECKPOINT_FILE", "Checkpointer", "TrainingState", "deferred_interrupts", "rng_state", "set_rng_state"]
