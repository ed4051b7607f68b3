"""Data-parallel proxy training on the CPU: ``processes`` single-threaded ranks that split every batch.

Why: on a small CPU the convolutions of a proxy network (depthwise 3x3/5x5, narrow 1x1 at batch 64-128) use a
second thread poorly: on this project's 2-core machine two independent 1-thread trainings of B0 at width 0.5
and 32 px ran at ~185 images/s each while one 2-thread training ran at ~188. Two ranks that each take half of
every batch and average their gradients (gloo all-reduce, one flat buffer per step) recover part of that:
``benchmarks/bench_train.py`` (B0 at width 1.0, 32 px, batch 128) measured 143 vs 131 and 153 vs 119 images/s
against one 2-thread process, 1.32x and 1.48x a plain PyTorch loop.

What a run with ``processes = P`` computes (deterministic for a fixed ``P``):

* every rank builds the same initial network (same seed) and walks the same shuffled order; rank ``r`` takes
  the ``r``-th of ``P`` equal chunks of each global batch and augments it with its own seeded generator;
* gradients and the loss are averaged across ranks each step, so the update is that of the global batch's
  mean loss; BatchNorm normalises each rank's chunk with that chunk's statistics (as DistributedDataParallel
  does without SyncBatchNorm), and the running statistics are averaged across ranks before every evaluation;
* validation is split between the ranks and the correct counts summed.

The parent process takes no part in the training: it spawns the ranks, relays rank 0's per-epoch metrics to
``on_epoch`` (so Optuna's pruning works as in one process), and stops every rank when ``on_epoch`` raises or a
rank fails.
"""

from __future__ import annotations

import os
import pickle
import queue as queue_module
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class SingleProcess:
    """The collective operations of a one-process run: all no-ops."""

    rank = 0
    world = 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training steps call (the model itself, or a wrapper that syncs its gradients)."""
        return model

    def average_step(self, model: nn.Module, loss: torch.Tensor) -> float:
        """Average gradients across ranks (where :meth:`wrap`'s module has not already); return the global mean
        loss of this step."""
        return float(loss.detach())

    def average_buffers(self, model: nn.Module) -> None:
        """Average BatchNorm running statistics across ranks."""

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        return value


def _all_reduce_mean(tensors: list[torch.Tensor], world: int) -> None:
    """Replace each tensor by its mean over the ranks, in one all-reduce of one flat buffer."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset:offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


class GlooGroup(SingleProcess):
    """Gradient, buffer and metric averaging over an initialised gloo process group."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def average_step(self, model: nn.Module, loss: torch.Tensor) -> float:
        loss_value = loss.detach().reshape(1).float().clone()
        _all_reduce_mean([p.grad for p in model.parameters() if p.grad is not None] + [loss_value], self.world)
        return float(loss_value)

    def average_buffers(self, model: nn.Module) -> None:
        _all_reduce_mean([b for b in model.buffers() if b.is_floating_point()], self.world)

    def sum(self, value: torch.Tensor) -> torch.Tensor:
        value = value.clone()
        dist.all_reduce(value)
        return value


class DDPGroup(GlooGroup):
    """DistributedDataParallel's gradient averaging: bucketed all-reduces overlapped with the backward pass.

    ``forward_sync_buffers=False``: BatchNorm keeps each rank's running statistics until :meth:`average_buffers`
    averages them before an evaluation, as :class:`GlooGroup` does (DDP's default would copy rank 0's at every
    forward). ``gradient_as_bucket_view``: gradients live in DDP's buckets, saving a copy per step. Gradients are the same mean as :class:`GlooGroup`'s flat all-reduce: halving is exact in floating
    point, so with two ranks both give bit-identical training (tests/test_parallel.py).
    """

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, forward_sync_buffers=False, gradient_as_bucket_view=True)

    def average_step(self, model: nn.Module, loss: torch.Tensor) -> float:
        loss_value = loss.detach().reshape(1).float().clone()
        _all_reduce_mean([loss_value], self.world)  # DDP has averaged the gradients during backward
        return float(loss_value)


GRADIENT_SYNC = {"ddp": DDPGroup, "flat": GlooGroup}


def _rank_main(rank: int, world: int, store_path: str, threads: int, job: dict[str, Any], messages: Any) -> None:
    """One rank: join the group, train, post rank 0's epochs and result (or any rank's error) to the parent.

    ``job["loop"]`` is the training loop (:func:`scaling_search.training.loop.run_training`), passed in by the caller so
    this module never imports the trainer that imports it.
    """
    run_training = job["loop"]
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", store=dist.FileStore(store_path, world), rank=rank, world_size=world)
    try:
        def on_epoch(epoch: int, metrics: Any) -> None:
            if rank == 0:
                messages.put(("epoch", epoch, metrics))

        group = GRADIENT_SYNC[job.get("gradient_sync", "ddp")](rank, world)
        result = run_training(job["spec"], job["tensors"], job["settings"], group, on_epoch,
                              progress=job["progress"] and rank == 0, device=torch.device("cpu"),
                              threads=threads * world)
        if rank == 0:
            messages.put(("done", result))
    except BaseException as error:  # relayed to the parent, which raises it
        try:
            pickle.dumps(error)
        except Exception:  # an exception that cannot cross processes still reaches the parent, as text
            error = RuntimeError(f"training process {rank} failed: {error!r}")
        messages.put(("error", rank, error))
    finally:
        dist.destroy_process_group()


def process_context() -> Any:
    """Where ranks (and the execution plan's probes) come from: forked from a server process that has imported
    torch and the trainer once (``forkserver``), where the system has one; a fresh interpreter per rank
    (``spawn``) elsewhere. A spawned
    rank imports torch again before it trains: about 2-3 s a rank on a busy 2-core machine, paid by every
    data-parallel trial. The server forks from a clean, single-threaded state, never from the caller's.
    Measured (AMD EPYC, 2 cores; /tmp-style script timing a 1-epoch 2-rank training 4 times each): start-up
    and teardown beyond the training itself, median 7.4 s spawned, 2.9 s forked (5.1 s the first time, which
    starts the server)."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return torch.multiprocessing.get_context("spawn")
    context = torch.multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "torch.distributed", "scaling_search.training.loop"])
    return context


def train_data_parallel(job: dict[str, Any], processes: int, threads_per_process: int,
                        on_epoch: Callable[[int, Any], None] | None, poll_s: float = 0.5) -> Any:
    """Run ``job`` (loop, spec, tensors, settings, progress) on ``processes`` CPU ranks; return rank 0's result."""
    context = process_context()
    messages = context.Queue()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scaling-search-gloo-") as folder:
        store_path = os.path.join(folder, "store")
        ranks = [context.Process(target=_rank_main, args=(rank, processes, store_path, threads_per_process, job,
                                                         messages), daemon=True)
                 for rank in range(processes)]
        for process in ranks:
            process.start()
        result = None
        try:
            while result is None:
                try:
                    message = messages.get(timeout=poll_s)
                except queue_module.Empty:
                    dead = [p for p in ranks if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"a training process exited with code {dead[0].exitcode} before it "
                                           "reported (its error is printed above; a negative code is the signal "
                                           "that killed it); rerun with processes = 1 to debug") from None
                    if all(p.exitcode is not None for p in ranks) and messages.empty():
                        time.sleep(poll_s)  # a message put just before exiting may still be in flight
                        if messages.empty():
                            raise RuntimeError("the training processes exited without a result; rerun with "
                                               "processes = 1 to debug") from None
                    continue
                if message[0] == "epoch" and on_epoch is not None:
                    on_epoch(message[1], message[2])
                elif message[0] == "error":
                    raise message[2]
                elif message[0] == "done":
                    result = message[1]
        finally:
            for process in ranks:
                if result is None and process.is_alive():
                    process.terminate()  # pruned, failed or interrupted: the other ranks would wait forever
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
                    process.join()
    return replace(result, wall_s=time.perf_counter() - started)


__all__ = ["GRADIENT_SYNC", "DDPGroup", "GlooGroup", "SingleProcess", "process_context", "train_data_parallel"]
