"""Data-parallel CPU training (scaling_search.training.distributed): the collective math and the spawned-rank trainer."""

import math
import multiprocessing
import os
import tempfile
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist

from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.errors import NonFiniteLossError
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.training.distributed import GlooGroup
from scaling_search.network.scaling import scale
from scaling_search.training import TrainSettings, train_proxy

TINY = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=10)
TWO = TrainSettings(epochs=2, batch_size=32, threads=2, eval_batch_size=100, processes=2, precise_bn_batches=2)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(8, 6, generator=generator), torch.randint(0, 3, (8,), generator=generator)


def _rank(rank: int, world: int, store: str, results) -> None:
    dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
    try:
        group = GlooGroup(rank, world)
        model = _model()
        inputs, labels = _batch()
        head = model[2]
        loss = torch.nn.functional.cross_entropy(head(model[0](inputs.chunk(world)[rank])), labels.chunk(world)[rank])
        loss.backward()
        mean_loss = group.average_step(model, loss)
        model[1].running_mean.fill_(float(rank))  # rank 0: 0, rank 1: 1 -> average 0.5
        group.average_buffers(model)
        total = group.sum(torch.tensor([rank + 1]))
        # plain lists: a tensor would travel as a shared-memory handle that dies with this process
        results.put((rank, mean_loss, [p.grad.tolist() for p in (model[0].weight, head.weight)],
                     model[1].running_mean.tolist(), int(total)))
    finally:
        dist.destroy_process_group()


def test_gloo_group_averages_gradients_loss_and_buffers():
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory() as folder:
        ranks = [context.Process(target=_rank, args=(r, 2, os.path.join(folder, "store"), results)) for r in range(2)]
        for process in ranks:
            process.start()
        got = sorted(results.get(timeout=120) for _ in ranks)
        for process in ranks:
            process.join(timeout=60)
    # the full batch's mean loss and gradient (no BN in the path, so halves average exactly to the whole)
    model = _model()
    inputs, labels = _batch()
    loss = torch.nn.functional.cross_entropy(model[2](model[0](inputs)), labels)
    loss.backward()
    for rank, mean_loss, grads, running_mean, total in got:
        assert mean_loss == pytest.approx(loss.item(), rel=1e-6)
        assert torch.allclose(torch.tensor(grads[0]), model[0].weight.grad, atol=1e-6)
        assert torch.allclose(torch.tensor(grads[1]), model[2].weight.grad, atol=1e-6)
        assert running_mean == [0.5] * 4
        assert total == 3


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(8, 3, seed=0)


@pytest.mark.slow
def test_two_processes_train_deterministically_and_report_every_epoch(data, monkeypatch):
    import scaling_search.training.loop as loop

    seen = []
    assert loop.GRADIENT_SYNC == "ddp"
    first = train_proxy(TINY, data, TWO, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics.val_top1)))
    # the same training with the hand-written flat all-reduce instead of DistributedDataParallel: the very same
    # numbers (so the choice between them is one of speed alone, and a rerun repeats a run either way)
    monkeypatch.setattr(loop, "GRADIENT_SYNC", "flat")
    second = train_proxy(TINY, data, TWO)
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert [h.val_top1 for h in first.history] == [v for _, v in seen] == [h.val_top1 for h in second.history]
    assert [h.train_loss for h in first.history] == [h.train_loss for h in second.history]
    assert all(math.isfinite(h.train_loss) and 0 <= h.val_top1 <= 1 for h in first.history)
    # the parent's wall time includes starting the ranks
    assert first.wall_s >= first.history[-1].wall_s and first.threads == 2
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_callback_exception_stops_every_rank(data):
    class Stop(Exception):
        pass

    def stop(epoch, metrics):
        raise Stop(epoch)

    with pytest.raises(Stop):
        train_proxy(TINY, data, replace(TWO, epochs=5), on_epoch=stop)
    assert multiprocessing.active_children() == []


@pytest.mark.slow
def test_nan_loss_in_the_ranks_raises_in_the_parent(data):
    with pytest.raises(NonFiniteLossError) as info:
        train_proxy(TINY, data, replace(TWO, lr=1e30, warmup_epochs=0))
    assert not math.isfinite(info.value.value) and info.value.epoch >= 1
    assert multiprocessing.active_children() == []


def test_batch_must_split_between_processes():
    with pytest.raises(ValueError, match="batch_size 33 must split into 2 equal shares"):
        TrainSettings(batch_size=33, processes=2)
    with pytest.raises(ValueError, match="processes must be >= 1"):
        TrainSettings(processes=0)
