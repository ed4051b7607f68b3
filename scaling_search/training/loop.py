"""Short, honest proxy training of a :class:`~scaling_search.network.spec.NetworkSpec` on an :class:`ImageData`.

Design rules (the quick preset, ``scaling_search/settings/presets/quick.toml``, gives the values and why):

* The official BatchNorm momentum (0.01 in PyTorch's convention) makes running statistics lag hundreds of
  steps behind the weights; a proxy of a few hundred steps then evaluates near chance. We use a faster
  momentum for proxies and, optionally, recompute the statistics before each evaluation with the model's
  weights frozen (pycls's "precise BN").
* Dropout and stochastic depth come from the spec but can be scaled down (``regularization_scale``): very
  short runs under-fit, and the paper's rates were tuned for 350 ImageNet epochs.
* Images are pre-resized tensors; a step does no per-image Python work. On CPU, channels_last is used where
  it is faster and the thread count is set explicitly. On CUDA: AMP (bf16); each step's forward and backward
  pass replayed as one CUDA graph (:mod:`~scaling_search.training.cuda_graph`), in channels_last where the step is
  captured (see :class:`TrainSettings`); the resized images live on the GPU when they fit
  (:func:`place_images`), so indexing and augmentation run there; and a step's loss stays on the device until
  the epoch ends (:class:`LossLog`), so the host never waits for the GPU between steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from scaling_search.training.augment import random_crop_flip
from scaling_search.training.checkpoint import (Checkpointer, TrainingState, deferred_interrupts, rng_state,
                                                set_rng_state)
from scaling_search.network.cost import count_cost
from scaling_search.data.arrays import PageBudget, release_pages
from scaling_search.data.base import ImageData
from scaling_search.errors import NonFiniteLossError, UserError
from scaling_search.network.model import build_model
from scaling_search.network.spec import NetworkSpec
from scaling_search.settings.train import TrainSettings
from scaling_search.training.cuda_graph import GraphedStep, use_cuda_graph
from scaling_search.training.distributed import SingleProcess, train_data_parallel
from scaling_search.training.resources import (check_trainable, choose_device, default_threads,
                                               describe_device, release_free_memory)

# How data-parallel ranks average gradients: "ddp" (DistributedDataParallel) or "flat" (one flat all-reduce per
# step, after the backward pass). Both give identical numbers; benchmarks/bench_train.py times them side by side.
GRADIENT_SYNC = "ddp"


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float
    train_top1: float
    val_top1: float | None  # None: not evaluated after this epoch (``evaluate_every_epoch = false``)
    lr: float
    wall_s: float


@dataclass(frozen=True)
class TrainResult:
    """What one proxy run measured."""

    val_top1: float
    best_val_top1: float
    train_loss: float
    epochs: int
    wall_s: float
    images_per_s: float
    macs: int
    params: int
    resolution: int
    device: str
    threads: int
    history: tuple[EpochMetrics, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["history"] = [asdict(h) for h in self.history]
        return out


#: Evaluation batch where ``eval_batch_size = 0``: on the CPU a smaller batch evaluates as fast and holds a
#: quarter of the activations; on an accelerator a larger one keeps it busy.
EVAL_BATCH_CPU = 128
EVAL_BATCH_ACCELERATOR = 500


def place_images(images: torch.Tensor, device: torch.device, share: float = 0.25) -> torch.Tensor:
    """Where a split's resized images live during training: on the GPU when they take at most ``share`` of
    its free memory (indexing and augmentation then run there, with no host-to-device copy per step), else in
    host memory, where each batch is gathered and augmented, then copied. CPU and MPS: where they are. The
    same seeded draws index and augment either way.

    The host copy is not pinned: a batch gathered from a pinned tensor by indexing is a new, pageable tensor,
    so pinning the whole split buys no asynchronous copy, only locked memory."""
    if device.type != "cuda":
        return images
    free, _ = torch.cuda.mem_get_info(device)
    if images.numel() * images.element_size() <= share * free:
        return images.to(device)
    return images


class LossLog:
    """The losses of one epoch's steps. Where the loss is computed on the CPU, each is read and checked at once;
    on an accelerator they stay on the device until :meth:`close` (a per-step read would make the host wait
    for the GPU every step), so a non-finite loss is found at the end of its epoch instead of at its step."""

    def __init__(self, device: torch.device) -> None:
        self.deferred = device.type != "cpu"
        self.values: list[float] = []
        self.pending: list[torch.Tensor] = []

    def add(self, loss: torch.Tensor | float, epoch: int, step: int) -> None:
        if self.deferred and isinstance(loss, torch.Tensor):
            self.pending.append(loss.detach().float())
            return
        value = float(loss.detach()) if isinstance(loss, torch.Tensor) else loss
        if not math.isfinite(value):
            raise NonFiniteLossError(epoch, step, value)
        self.values.append(value)

    def so_far(self) -> list[float]:
        """The losses of the steps taken so far (read from the device where they wait there)."""
        return self.values + [float(loss) for loss in self.pending]

    def close(self, epoch: int, first_step: int) -> float:
        """The epoch's mean loss (raises :class:`NonFiniteLossError` naming the first non-finite step)."""
        if self.pending:
            values = torch.stack(self.pending).cpu().tolist()
            for offset, value in enumerate(values):
                if not math.isfinite(value):
                    raise NonFiniteLossError(epoch, first_step + offset, value)
            self.values += values
        return sum(self.values) / len(self.values)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for parameter in model.parameters():
        (decay if parameter.dim() > 1 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """The recipe's optimizer. AdamW and SGD take PyTorch's fused kernels (one pass over every parameter, on the
    CPU as on CUDA) in place of a loop over tensors: the same update rule, rounded differently in the last bits,
    and deterministic. RMSProp has no fused kernel and keeps the default."""
    groups = _param_groups(model, settings.weight_decay)
    if settings.optimizer == "rmsprop":
        # Paper Section 5.2: RMSProp, decay 0.9, momentum 0.9 (TF's epsilon 1e-3 ~ torch eps 1e-3 on sqrt scale).
        return torch.optim.RMSprop(groups, lr=settings.lr, alpha=0.9, momentum=settings.momentum, eps=1e-3)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.lr, betas=(settings.momentum, 0.999), fused=True)
    return torch.optim.SGD(groups, lr=settings.lr, momentum=settings.momentum, nesterov=settings.momentum > 0,
                           fused=True)


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to zero at ``total_steps``."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * peak * (1.0 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                   device: torch.device, memory_format: torch.memory_format, autocast: bool) -> torch.Tensor:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)  # counted on the device: one read at the end
    pages = PageBudget(images)
    for start in range(0, len(labels), batch_size):
        batch = images[start:start + batch_size].to(device, non_blocking=True).contiguous(memory_format=memory_format)
        pages.read(batch.shape[0])
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch)
        correct += (logits.argmax(1) == labels[start:start + batch_size].to(device, non_blocking=True)).sum()
    release_pages(images)  # the whole split was read: none of it needs to stay until the next evaluation
    return correct.cpu()


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
             device: torch.device, memory_format: torch.memory_format, autocast: bool) -> float:
    """Top-1 accuracy (in [0, 1]) of ``model`` in eval mode."""
    return int(_count_correct(model, images, labels, batch_size, device, memory_format, autocast)) / len(labels)


@torch.no_grad()
def recompute_bn_statistics(model: nn.Module, batches: list[torch.Tensor]) -> None:
    """pycls's precise BN: reset running statistics and re-estimate them as an exact average over ``batches``.

    Not fvcore's ``update_bn_stats``, though fvcore is a dependency: it estimates a different quantity (the
    population variance over all batches, between-batch spread of the means included) where pycls averages the
    per-batch variances; the two differ by up to a fifth in some channels of a short proxy, so switching would
    change every stored study's numbers.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
    model.train()
    for batch in batches:
        model(batch)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum


@torch.no_grad()
def _zero_init(model: nn.Module) -> None:
    classifier = getattr(model, "classifier")
    classifier.weight.zero_()
    classifier.bias.zero_()
    for module in model.modules():
        if getattr(module, "has_skip", False):
            module.zero_init_last()  # the residual branch's projection BatchNorm


def train_proxy(
    spec: NetworkSpec,
    data: ImageData,
    settings: TrainSettings = TrainSettings(),
    on_epoch: Callable[[int, EpochMetrics], None] | None = None,
    progress: bool = False,
    checkpoint: Checkpointer | None = None,
) -> TrainResult:
    """Train ``spec`` on ``data`` at ``spec.resolution`` and evaluate top-1 after every epoch (after the last alone
    where ``settings.evaluate_every_epoch`` is False).

    Args:
        spec: the network; ``num_classes`` must match the data and ``input_channels`` its channels.
        data: the dataset (resized to ``spec.resolution`` once and cached).
        settings: the training recipe.
        on_epoch: called as ``on_epoch(epoch, metrics)`` after each evaluation (1-based epochs); an exception
            it raises (e.g. ``optuna.TrialPruned``) stops training and propagates.
        progress: show a tqdm bar per epoch on stderr.
        checkpoint: save the training's state at every epoch's end and on SIGINT/SIGTERM, and resume from the
            saved state (:mod:`scaling_search.training.checkpoint`); one process only.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite.
        ValueError: the spec does not fit the data.

    Note:
        Same seed, same settings, same machine and thread count give the same numbers on the CPU. On CUDA,
        cuDNN autotuning is left off for the same reason, at some cost in speed.
    """
    if spec.num_classes != data.num_classes:
        raise ValueError(f"the network has {spec.num_classes} outputs but the data has {data.num_classes} classes")
    if spec.input_channels != data.channels:
        raise ValueError(f"the network takes {spec.input_channels} channel(s) but the data has {data.channels}")
    check_trainable(spec, len(data.train_labels) + len(data.val_labels), settings.batch_size)
    device = choose_device(settings.device)
    threads = settings.threads or default_threads()
    if settings.cuda_graph == "on" and (device.type != "cuda" or settings.processes > 1):
        raise UserError(f"train settings: cuda_graph = on needs CUDA in one process (here {device.type}, "
                        f"{settings.processes} process(es)); use auto or off")
    tensors = (*data.split("train", spec.resolution), *data.split("val", spec.resolution))
    if settings.processes > 1:
        if checkpoint is not None:
            raise UserError(f"a checkpointed training runs in one process; drop --processes {settings.processes} "
                            "(or --save)")
        if device.type != "cpu":
            raise UserError(f"train settings: processes = {settings.processes} is for the CPU; on {device.type} "
                             "use processes = 1")
        job = {"loop": run_training, "spec": spec, "tensors": tensors, "settings": settings, "progress": progress,
               "gradient_sync": GRADIENT_SYNC}
        return train_data_parallel(job, settings.processes, max(1, threads // settings.processes), on_epoch)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    # run_training seeds the global generator (initialisation, dropout and stochastic depth draw from it); the
    # caller's generator state is restored afterwards, as are its threads.
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
            return run_training(spec, tensors, settings, SingleProcess(), on_epoch, progress, device, threads,
                                checkpoint)
    finally:
        torch.set_num_threads(previous_threads)
        release_free_memory()  # the training's model, optimizer and activations are freed by now


def run_training(spec: NetworkSpec, tensors: tuple[torch.Tensor, ...], settings: TrainSettings, ranks: Any,
                 on_epoch: Callable[[int, EpochMetrics], None] | None, progress: bool, device: torch.device,
                 threads: int, checkpoint: Checkpointer | None = None) -> TrainResult:
    """The training loop of one process (``ranks`` is :class:`~scaling_search.training.distributed.SingleProcess` or one
    rank of a :class:`~scaling_search.training.distributed.GlooGroup`); ``tensors`` are train and val images and labels."""
    from tqdm import tqdm

    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    # One process draws order and augmentation from one generator; ranks share the order and augment their own
    # chunk with their own generator.
    augment_generator = generator if ranks.world == 1 else torch.Generator().manual_seed(
        settings.seed * 1000 + ranks.rank + 1)
    train_images, train_labels, val_images, val_labels = tensors
    if ranks.world > 1:
        val_images, val_labels = val_images.tensor_split(ranks.world)[ranks.rank], val_labels.tensor_split(ranks.world)[ranks.rank]
    scale = settings.regularization_scale
    run_spec = replace(spec, dropout=min(0.99, spec.dropout * scale), drop_connect=min(0.99, spec.drop_connect * scale))
    model = build_model(run_spec, bn_momentum=settings.bn_momentum)
    if settings.zero_init:
        _zero_init(model)
    graphed = use_cuda_graph(settings.cuda_graph, device, ranks.world)
    graphed_step: GraphedStep | None = None
    # channels_last: faster on the CPU; on CUDA only with the step captured (on an H200, 2.16x the plain loop
    # against 1.47x in NCHW, where without the graph it halved the throughput; see TrainSettings)
    use_channels_last = settings.channels_last == "on" or (settings.channels_last == "auto" and (
        device.type == "cpu" or graphed))
    memory_format = torch.channels_last if use_channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    autocast = device.type == "cuda"
    train_images, val_images = place_images(train_images, device), place_images(val_images, device)
    train_labels = train_labels.to(train_images.device)
    train_pages = PageBudget(train_images)  # a split mapped from the dataset cache: its read pages handed back
    eval_batch = settings.eval_batch_size or (EVAL_BATCH_CPU if device.type == "cpu" else EVAL_BATCH_ACCELERATOR)
    optimizer = _optimizer(model, settings)
    stepped = ranks.wrap(model)  # what the training steps call: the model, or DDP around it
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)

    n = len(train_labels)
    steps_per_epoch = max(1, n // settings.batch_size)  # drop the last partial batch (BN needs full batches)
    total_steps = steps_per_epoch * settings.epochs
    warmup_steps = min(total_steps - 1, int(round(settings.warmup_epochs * steps_per_epoch)))
    padding = int(round(settings.crop_padding * spec.resolution))

    history: list[EpochMetrics] = []
    train_seconds = 0.0
    start = time.perf_counter()
    step = 0
    resumed = checkpoint.load() if checkpoint is not None else None
    if resumed is not None:
        model.load_state_dict(resumed.model)
        optimizer.load_state_dict(resumed.optimizer)
        set_rng_state(resumed.rng, generator, device)
        step, train_seconds = resumed.step, resumed.train_seconds
        history = [EpochMetrics(**metrics) for metrics in resumed.history]

    def state(epoch: int, batch: int, **within: Any) -> TrainingState:
        return TrainingState(epoch, batch, step, model.state_dict(), optimizer.state_dict(),
                             rng_state(generator, device), [asdict(h) for h in history], train_seconds, **within)

    interrupts = deferred_interrupts(checkpoint.interrupted) if checkpoint is not None else contextlib.nullcontext()
    first_epoch = resumed.epoch + 1 if resumed is not None else 1
    with interrupts:
        for epoch in range(first_epoch, settings.epochs + 1):
            model.train()
            epoch_start = time.perf_counter()
            losses, first_step = LossLog(device if ranks.world == 1 else torch.device("cpu")), step
            correct = torch.zeros((), device=device, dtype=torch.long)
            first_batch = 0
            if resumed is not None and resumed.batch and epoch == first_epoch:  # stopped within this epoch
                order, first_batch = resumed.order.to(train_images.device), resumed.batch
                losses.values, first_step = list(resumed.losses), step - resumed.batch
                correct += resumed.correct
            else:
                order = torch.randperm(n, generator=generator).to(train_images.device)
            bar = tqdm(range(first_batch, steps_per_epoch), desc=f"epoch {epoch}/{settings.epochs}", leave=False,
                       disable=not progress, unit="step")
            for index in bar:
                batch_idx = order[index * settings.batch_size:(index + 1) * settings.batch_size]
                if ranks.world > 1:
                    batch_idx = batch_idx.tensor_split(ranks.world)[ranks.rank]
                images = random_crop_flip(train_images[batch_idx], padding, settings.flip, augment_generator)
                train_pages.read(len(batch_idx))
                images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                labels = train_labels[batch_idx].to(device, non_blocking=True)
                lr = learning_rate(step, total_steps, warmup_steps, settings.lr)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                if graphed:
                    if graphed_step is None:
                        graphed_step = GraphedStep(model, criterion, images, labels, autocast)
                    logits, loss = graphed_step(images, labels)
                    loss = loss.detach().clone()  # the next replay overwrites the graph's loss
                else:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        logits = stepped(images)
                        loss = criterion(logits.float(), labels)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                # the mean over all ranks (every rank sees the same); one process: the loss itself, still on the device
                losses.add(ranks.average_step(model, loss) if ranks.world > 1 else loss, epoch, step)
                optimizer.step()
                correct += (logits.argmax(1) == labels).sum()
                step += 1
                if checkpoint is not None and checkpoint.interrupted.is_set() and index + 1 < steps_per_epoch:
                    train_seconds += time.perf_counter() - epoch_start
                    checkpoint.save(state(epoch - 1, index + 1, order=order.cpu(), losses=losses.so_far(),
                                          correct=int(correct)))
                    raise KeyboardInterrupt
            train_loss = losses.close(epoch, first_step)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the last step's backward and update belong to this epoch's time
            train_seconds += time.perf_counter() - epoch_start
            if settings.precise_bn_batches:
                batches = [
                    train_images[order[i * settings.batch_size:(i + 1) * settings.batch_size].tensor_split(ranks.world)[ranks.rank]]
                    .to(device).contiguous(memory_format=memory_format)
                    for i in range(min(settings.precise_bn_batches, steps_per_epoch))
                ]
                train_pages.read(sum(len(batch) for batch in batches))
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    recompute_bn_statistics(model, batches)
            ranks.average_buffers(model)
            evaluated = settings.evaluate_every_epoch or epoch == settings.epochs
            val_correct = _count_correct(model, val_images, val_labels, eval_batch, device, memory_format,
                                         autocast) if evaluated else torch.zeros((), dtype=torch.long)
            val_correct, correct = (int(c) for c in ranks.sum(torch.stack([val_correct, correct.cpu()])))
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=train_loss,
                train_top1=correct / (steps_per_epoch * settings.batch_size),
                val_top1=val_correct / len(tensors[3]) if evaluated else None,
                lr=lr,
                wall_s=time.perf_counter() - start,
            )
            history.append(metrics)
            if checkpoint is not None:
                checkpoint.save(state(epoch, 0))
                if checkpoint.interrupted.is_set():
                    raise KeyboardInterrupt
            if on_epoch is not None and evaluated:
                on_epoch(epoch, metrics)

    wall = time.perf_counter() - start
    cost = count_cost(spec)
    scores = [h.val_top1 for h in history if h.val_top1 is not None]  # the last epoch's always
    return TrainResult(
        val_top1=scores[-1],
        best_val_top1=max(scores),
        train_loss=history[-1].train_loss,
        epochs=settings.epochs,
        wall_s=wall,
        images_per_s=total_steps * settings.batch_size / train_seconds,
        macs=cost.macs,
        params=cost.params,
        resolution=spec.resolution,
        device=describe_device(device),
        threads=threads,
        history=tuple(history),
    )


__all__ = ["EpochMetrics", "LossLog", "TrainResult", "evaluate", "learning_rate", "place_images",
           "recompute_bn_statistics", "run_training", "train_proxy"]
