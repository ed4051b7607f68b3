"""Worker processes on this machine: one stage's job run by ``search.workers`` processes on the same storage.

:func:`with_workers` receives the job itself, a picklable callable of a :class:`~.context.StudyContext` (a module
function, or a :func:`functools.partial` of one), and runs it here and in ``workers - 1`` worker processes
(:mod:`scaling_search.search.pool`), each of which rebuilds the context from its :class:`~.context.WorkerRecipe`.
The storage's queue shares the work (:mod:`scaling_search.search.queue`); nothing here knows which stage it runs.
Under :func:`kept_workers` a command's stages reuse the same workers; otherwise a stage spawns its own and ends them.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, Callable, TypeVar

from scaling_search.errors import UserError
from scaling_search.network.spec import NetworkSpec
from scaling_search.search.context import StudyContext
from scaling_search.search.interrupt import interrupt_outside_storage
from scaling_search.search.pool import WorkerPool
from scaling_search.settings.study import SearchSettings, StudyConfig
from scaling_search.training import choose_device, default_threads

T = TypeVar("T")
Job = Callable[[StudyContext], Any]


def check_workers(search: SearchSettings) -> None:
    """Refuse more workers than the cores this process may use, unless ``oversubscribe`` asks for them: each
    worker trains on at least one core, so the extra ones only slow the others down."""
    cores = default_threads()
    if isinstance(search.workers, int) and search.workers > cores and not search.oversubscribe:
        raise UserError(f"--workers {search.workers} is more than the {cores} core(s) this process may use; use "
                        f"--workers {cores} or fewer (or auto), or add --oversubscribe to start them anyway")


def with_execution_plan(config: StudyConfig, proxy: NetworkSpec) -> StudyConfig:
    """``workers = "auto"`` resolved: the machine's measured plan on the CPU (workers, and threads unless set;
    cached after the first measurement), one worker on a GPU or with data-parallel ``processes`` (whose ranks
    take the cores). Results do not depend on it."""
    if config.search.workers != "auto":
        return config
    if choose_device(config.train.device).type != "cpu" or config.train.processes > 1:
        return replace(config, search=replace(config.search, workers=1))
    from scaling_search.training.plan import machine_plan

    plan = machine_plan(proxy, config.train.batch_size)
    return replace(config, search=replace(config.search, workers=plan.workers),
                   train=replace(config.train, threads=config.train.threads or plan.threads), plan=plan.to_dict())


def with_worker_threads(config: StudyConfig) -> StudyConfig:
    """The cores split between workers unless threads were set explicitly (results do not depend on it): two
    1-thread processes train more images/s than one 2-thread process (see ``benchmarks/bench_train.py``)."""
    workers = config.search.workers
    if workers > 1 and config.train.threads is None:
        config = replace(config, train=replace(config.train, threads=max(1, default_threads() // workers)))
    return config


@contextlib.contextmanager
def kept_workers(ctx: StudyContext) -> Iterator[StudyContext]:
    """``ctx`` with a :class:`~.pool.WorkerPool`: every :func:`with_workers` under it (any context derived from it)
    reuses the worker processes an earlier stage finished with; they end when the block does."""
    if ctx.pool is not None:
        yield ctx
        return
    pool = WorkerPool()
    try:
        yield ctx.derive(pool=pool)
    finally:
        pool.close()


def with_workers(ctx: StudyContext, job: Callable[[StudyContext], T]) -> T:
    """``job(ctx)`` here, and ``job`` on a rebuilt context in ``ctx.config.search.workers - 1`` more processes;
    returns this process's result once every worker has finished."""
    workers = ctx.config.search.workers
    if workers <= 1:
        return job(ctx)
    pool = ctx.pool if ctx.pool is not None else WorkerPool()
    # Workers start with SIGINT ignored (kept across exec, so Python installs no handler): Ctrl-C reaches the
    # whole terminal group, and a worker still importing torch would print a 60-line traceback. The parent
    # reports the interruption and stops them; their trials go stale and are retried by the next run.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        extra = pool.take(workers - 1)
    finally:
        signal.signal(signal.SIGINT, previous)
    recipe = ctx.recipe()
    for worker in extra:
        worker.send((recipe, job))

    def interrupted(signum: int, frame: Any) -> None:
        # Stop the workers first: one may be mid-write on the storage, and the parent's own unwinding
        # (Optuna joins the trial's heartbeat thread, which writes to the storage) must not wait on its lock.
        for worker in extra:
            worker.process.terminate()
        interrupt_outside_storage(signum, frame)

    signal.signal(signal.SIGINT, interrupted)
    try:
        result = job(ctx)
        for worker in extra:  # a Ctrl-C while waiting here stops the workers too
            if not worker.wait():  # it ended without finishing (its job raised): reaped, not kept
                worker.stop()
    except BaseException:
        for worker in extra:
            worker.stop()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
    pool.give_back(extra)
    if ctx.pool is None:
        pool.close()
    return result


__all__ = ["Job", "check_workers", "kept_workers", "with_execution_plan", "with_worker_threads", "with_workers"]
