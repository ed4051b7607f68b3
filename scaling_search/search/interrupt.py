"""Stopping a run (Ctrl-C, SIGTERM) without wedging its storage.

Python raises a signal's exception at whatever line the main thread is on. Raised inside SQLAlchemy or an
Optuna storage, between a write and its commit, it can leave a connection that holds SQLite's write lock and
that nobody commits or rolls back. Optuna then unwinds the trial: its heartbeat thread and its own "tell FAIL"
wait for that lock (60 s each with our busy timeout) and the run ends in ``StorageInternalError`` instead of
stopping. Measured with Optuna 5.0 and SQLAlchemy 2.1: a trial writing user attributes in a loop, one SIGINT at
a random moment, wedged in 2 of 12 tries (64 s, then "AssertionError: Should not reach"); CI's Ctrl-C test
timed out the same way.

So our handlers raise only outside storage code. Inside it they raise at the first line that runs after the
storage call returns to its caller, as a debugger stops at a line: a local trace function on the caller's frame
(the mechanism of :mod:`bdb`). Measured with the test's trial (a write, then a millisecond of its own work, in a
loop): Python's own SIGINT wedged the storage in 25 of 25 tries; these handlers in none. A redelivery of the
signal 50 ms later was tried first and never landed outside storage: the thread that sends it gets the GIL
mostly while SQLite holds the main thread in C, so the handler runs again inside the storage.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any, Callable

#: Modules whose frames mean "inside a storage call": a signal is not raised there.
STORAGE_MODULES = ("sqlalchemy", "optuna.storages", "sqlite3", "psycopg", "psycopg2")

Handler = Callable[[int, "FrameType | None"], None]
TraceFunction = Callable[[FrameType, str, Any], Any]


def _is_storage(frame: FrameType) -> bool:
    module = frame.f_globals.get("__name__", "")
    return any(module == name or module.startswith(name + ".") for name in STORAGE_MODULES)


def _outermost_storage_frame(frame: FrameType | None) -> FrameType | None:
    outermost = None
    while frame is not None:
        if _is_storage(frame):
            outermost = frame
        frame = frame.f_back
    return outermost


def inside_storage_call(frame: FrameType | None) -> bool:
    """Whether any frame on this stack belongs to a :data:`STORAGE_MODULES` module."""
    return _outermost_storage_frame(frame) is not None


def _ignore_new_frames(frame: FrameType, event: str, arg: Any) -> None:
    return None


def raise_outside_storage(signum: int, frame: FrameType | None, error: BaseException) -> None:
    """Raise ``error`` now, or, inside a storage call, in the call's caller as soon as the call has returned."""
    outermost = _outermost_storage_frame(frame)
    if outermost is None or outermost.f_back is None:
        raise error
    caller = outermost.f_back
    previous: TraceFunction | None = sys.gettrace()

    def raise_in_caller(traced: FrameType, event: str, arg: Any) -> TraceFunction:
        if event in ("line", "return", "exception"):
            sys.settrace(previous)
            raise error  # Python stops tracing after a trace function raises; the process is stopping anyway
        return raise_in_caller

    caller.f_trace = raise_in_caller
    caller.f_trace_lines = True
    sys.settrace(previous or _ignore_new_frames)  # line events reach a frame's f_trace only while tracing is on


def interrupt_outside_storage(signum: int, frame: FrameType | None) -> None:
    """A SIGINT handler: ``KeyboardInterrupt``, as Python's own, but never inside a storage call."""
    raise_outside_storage(signum, frame, KeyboardInterrupt())


def install_interrupt_handler() -> Handler | int | None:
    """Make SIGINT raise outside storage calls only (main thread only); returns the handler it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, interrupt_outside_storage)


__all__ = ["STORAGE_MODULES", "inside_storage_call", "install_interrupt_handler", "interrupt_outside_storage",
           "raise_outside_storage"]
