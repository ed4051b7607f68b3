"""Worker processes that serve one stage's job after another: a command's stages share them instead of each
stage spawning its own.

:func:`scaling_search.search.workers.with_workers` runs a stage's job in this process and in ``workers - 1``
others. A worker spawned for a stage starts the interpreter, imports torch and the study's modules, maps the data
and opens the storage before it trains, while this process already trains: at the stage's end one core waits for
it. A :class:`WorkerPool` kept for a command (:func:`scaling_search.search.workers.kept_workers`) hands a stage the
workers an earlier stage has finished with; each job still rebuilds its context from its recipe, so what a stage
computes does not depend on which process ran it before.

A worker stops with SIGTERM from its parent (on Ctrl-C or an error) and then exits normally, releasing what it
holds; it stops too when its parent exits without stopping it (SIGKILL): a worker never goes on training unseen.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

import optuna

from scaling_search.search.interrupt import raise_outside_storage

#: What a worker is sent for one stage: ``(recipe, job)``, the job run on ``recipe.build()``.
Task = tuple[Any, Any]


def _serve(connection: Connection) -> None:
    """A worker's loop: run each ``(recipe, job)`` it receives on a context rebuilt from the recipe, answer when it
    is done, and return on ``None`` or when the parent's end of the pipe closes. A job that raises ends the
    process (its traceback printed); its parent sees the pipe close."""
    signal.signal(signal.SIGTERM, _exit_quietly)
    _exit_with_parent()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    while True:
        try:
            task = connection.recv()
        except EOFError:
            return
        if task is None:
            return
        recipe, job = task
        job(recipe.build())
        connection.send(True)


def _exit_quietly(signum: int, frame: Any) -> None:
    raise_outside_storage(signum, frame, SystemExit(0))


def _exit_with_parent() -> None:
    """Send this process SIGTERM when its parent process exits (a daemon thread waits on the parent's sentinel)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Worker:
    """One spawned process serving tasks, one at a time (:func:`_serve`)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=_serve, args=(child_end,))
        self.process.start()
        child_end.close()  # the child's end lives in the child alone: its exit closes the pipe

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def send(self, task: Task) -> None:
        self.connection.send(task)

    def wait(self) -> bool:
        """Block until the task sent last is done; False where the process ended first."""
        try:
            self.connection.recv()
            return True
        except (EOFError, OSError):
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 30 s (still importing, or stuck)."""
        self.process.terminate()
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()

    def close(self) -> None:
        """Ask an idle worker to exit, and wait for it (stopped if it does not within 30 s)."""
        try:
            self.connection.send(None)
        except OSError:  # already gone
            pass
        self.process.join(timeout=30)
        self.stop()


class WorkerPool:
    """Idle workers between a command's stages: :meth:`take` hands out live ones first and spawns the rest;
    :meth:`give_back` keeps those that finished their stage; :meth:`close` ends them."""

    def __init__(self) -> None:
        self.idle: list[Worker] = []

    def take(self, count: int) -> list[Worker]:
        """``count`` workers, each idle: kept ones first, new ones spawned for the rest. Call with SIGINT ignored, so
        that a new worker starts with it ignored (a Ctrl-C reaches the whole terminal group)."""
        for worker in [w for w in self.idle if not w.alive]:
            worker.stop()  # reaped
        live = [w for w in self.idle if w.alive]
        taken, self.idle = live[:count], live[count:]
        taken.extend(Worker() for _ in range(count - len(taken)))
        return taken

    def give_back(self, workers: list[Worker]) -> None:
        self.idle.extend(w for w in workers if w.alive)

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for worker in idle:
            worker.close()


__all__ = ["Task", "Worker", "WorkerPool"]
