import math
from dataclasses import replace

import pytest
import torch

from scaling_search.training.augment import random_crop_flip
from scaling_search.data.synthetic import synthetic_dataset
from scaling_search.errors import NonFiniteLossError
from scaling_search.network.family import EFFICIENTNET_B0
from scaling_search.network.scaling import scale
from scaling_search.training import TrainSettings, choose_device, learning_rate, recompute_bn_statistics, train_proxy

TINY = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=32, num_classes=10)
FAST = TrainSettings(epochs=2, batch_size=32, threads=1, eval_batch_size=100)


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(8, 3, seed=0)


def test_result_fields_and_history(data):
    seen = []
    result = train_proxy(TINY, data, FAST, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics.val_top1)))
    assert [epoch for epoch, _ in seen] == [1, 2]
    assert result.val_top1 == seen[-1][1] and result.best_val_top1 == max(v for _, v in seen)
    assert len(result.history) == 2 and result.epochs == 2
    assert result.images_per_s > 0 and result.wall_s > 0
    assert result.resolution == 32 and result.threads == 1 and result.device == "cpu"
    assert result.params == sum(p.numel() for p in __import__("scaling_search").build_model(TINY).parameters())
    assert math.isfinite(result.train_loss)


def test_evaluating_the_last_epoch_alone_changes_no_number_it_reports(data):
    """Dropout and stochastic depth on (they draw from the generator evaluation must not touch), precise BN on."""
    settings = replace(FAST, epochs=3, regularization_scale=1.0, precise_bn_batches=2)
    spec = replace(TINY, dropout=0.2, drop_connect=0.2)
    every = train_proxy(spec, data, settings)
    seen = []
    last = train_proxy(spec, data, replace(settings, evaluate_every_epoch=False),
                       on_epoch=lambda epoch, metrics: seen.append(epoch))
    assert seen == [3]  # the pruner's hook runs after an evaluation only
    assert [h.val_top1 for h in last.history] == [None, None, every.history[-1].val_top1]
    assert [h.train_loss for h in last.history] == [h.train_loss for h in every.history]
    assert (last.val_top1, last.best_val_top1, last.train_loss) == (every.val_top1, every.val_top1, every.train_loss)


def test_same_seed_same_numbers(data):
    first = train_proxy(TINY, data, FAST)
    second = train_proxy(TINY, data, FAST)
    assert [h.val_top1 for h in first.history] == [h.val_top1 for h in second.history]
    assert [h.train_loss for h in first.history] == [h.train_loss for h in second.history]


def test_training_leaves_the_callers_generator_and_threads_as_they_were(data):
    import torch

    torch.manual_seed(1234)
    threads = torch.get_num_threads()
    state = torch.random.get_rng_state()
    train_proxy(TINY, data, replace(FAST, epochs=1, threads=threads + 1))
    assert torch.equal(torch.random.get_rng_state(), state) and torch.get_num_threads() == threads


def test_different_seed_different_training(data):
    first = train_proxy(TINY, data, FAST)
    other = train_proxy(TINY, data, replace(FAST, seed=1))
    assert first.history[0].train_loss != other.history[0].train_loss


def test_callback_exception_stops_training(data):
    class Stop(Exception):
        pass

    def stop(epoch, metrics):
        raise Stop(epoch)

    with pytest.raises(Stop) as info:
        train_proxy(TINY, data, replace(FAST, epochs=3), on_epoch=stop)
    assert info.value.args == (1,)


def test_nan_loss_raises_with_epoch_and_step(data):
    with pytest.raises(NonFiniteLossError) as info:
        train_proxy(TINY, data, replace(FAST, lr=1e30, warmup_epochs=0))
    steps_per_epoch = 80 // 32  # 8 images x 10 classes, batch 32, last partial batch dropped
    assert info.value.epoch == info.value.step // steps_per_epoch + 1
    assert not math.isfinite(info.value.value)
    assert "lower the learning rate" in str(info.value)


def test_spec_must_fit_the_data(data):
    with pytest.raises(ValueError, match="the network has 1000 outputs but the data has 10 classes"):
        train_proxy(replace(TINY, num_classes=1000), data, FAST)


def test_learning_rate_schedule():
    peak = 0.1
    lrs = [learning_rate(step, 100, 10, peak) for step in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(peak)
    assert lrs[10] == pytest.approx(peak) and lrs[-1] < 0.001
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_crop_flip_is_seeded_and_shape_preserving():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    a = random_crop_flip(images, 2, True, torch.Generator().manual_seed(0))
    b = random_crop_flip(images, 2, True, torch.Generator().manual_seed(0))
    assert a.shape == images.shape and torch.equal(a, b)
    unpadded = random_crop_flip(images, 0, False, torch.Generator())
    assert torch.equal(unpadded, images)


def test_crop_moves_content_by_at_most_padding():
    image = torch.zeros(64, 1, 9, 9)
    image[:, :, 4, 4] = 1.0
    out = random_crop_flip(image, 2, False, torch.Generator().manual_seed(0))
    positions = {tuple(torch.nonzero(o[0])[0].tolist()) for o in out if o.sum() > 0}
    assert len(positions) > 5 and all(abs(r - 4) <= 2 and abs(c - 4) <= 2 for r, c in positions)


def test_precise_bn_recomputes_exact_batch_statistics():
    layer = torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.01))
    batches = [torch.randn(16, 3, 4, 4) * 3 + 2 for _ in range(4)]
    recompute_bn_statistics(layer, batches)
    bn = layer[0]
    assert torch.allclose(bn.running_mean, torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0), atol=1e-5)
    assert bn.momentum == 0.01


def test_settings_validation():
    with pytest.raises(ValueError, match="optimizer must be one of sgd, rmsprop"):
        TrainSettings(optimizer="adam")
    with pytest.raises(ValueError, match="unknown train setting"):
        TrainSettings.from_mapping({"epoch": 3})


def test_choose_device():
    assert choose_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert choose_device("auto").type in ("cpu", "mps")
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            choose_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        choose_device("tpu9")


def test_resolution_below_the_stride_and_runs_that_cannot_fit_are_refused_before_allocating(data):
    from scaling_search.errors import UserError
    from scaling_search.training import check_trainable, training_memory_bytes

    with pytest.raises(UserError, match=r"resolution 16 px is below the network's total stride \(32 px\)"):
        train_proxy(replace(TINY, resolution=16), data, FAST)
    huge = replace(TINY, resolution=20_000)
    assert training_memory_bytes(huge, 200, 32) > 2**40  # the resized images alone: ~1 TB
    with pytest.raises(UserError, match=r"training at 20000 px needs about [\d,.]+ GiB of memory"):
        check_trainable(huge, 200, 32)


def test_loss_log_defers_reads_on_an_accelerator_and_still_names_the_first_bad_step():
    from scaling_search.errors import NonFiniteLossError
    from scaling_search.training import LossLog

    cpu = LossLog(torch.device("cpu"))
    cpu.add(torch.tensor(2.0, requires_grad=True), epoch=1, step=0)
    with pytest.raises(NonFiniteLossError, match="step 1"):
        cpu.add(torch.tensor(float("nan")), epoch=1, step=1)  # at once, on the CPU

    gpu = LossLog(torch.device("cuda"))  # only the device's type is read: no GPU needed
    for step, value in enumerate([1.0, 3.0, float("inf"), float("nan")], start=10):
        gpu.add(torch.tensor(value), epoch=2, step=step)  # nothing read yet
    assert len(gpu.pending) == 4 and gpu.values == []
    with pytest.raises(NonFiniteLossError, match="step 12"):
        gpu.close(epoch=2, first_step=10)
    fine = LossLog(torch.device("cuda"))
    for value in (1.0, 3.0):
        fine.add(torch.tensor(value), epoch=1, step=0)
    assert fine.close(epoch=1, first_step=0) == 2.0


def _anon_kb() -> int:
    from pathlib import Path

    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc/self/status on this system")
    return int(next(line for line in status.read_text().splitlines() if line.startswith("RssAnon:")).split()[1])


def test_free_heap_memory_goes_back_to_the_system_after_a_training(data, monkeypatch):
    from scaling_search.training import loop, resources

    if resources._malloc_trim() is None:
        pytest.skip("the C library has no malloc_trim")
    blocks = [bytearray(64 << 10) for _ in range(3000)]  # 192 MB on the C heap, below the mmap threshold
    kept = blocks[::10]  # every tenth stays: the freed ones are holes the heap cannot shrink past
    del blocks
    holding = _anon_kb()
    resources.release_free_memory()
    assert holding - _anon_kb() > 100_000, "malloc_trim handed back less than 100 MB of 172 MB of holes"
    assert len(kept) == 300
    trims = []
    monkeypatch.setattr(loop, "release_free_memory", lambda: trims.append(1))
    train_proxy(TINY, data, FAST)
    assert trims == [1]
