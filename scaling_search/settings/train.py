"""The proxy training recipe as a frozen settings object (a preset's ``[train]`` table).

Kept apart from :mod:`scaling_search.training.loop` so the command line can read and validate presets, and answer
``--help`` or an input error, without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scaling_search.errors import UserError

OPTIMIZERS = ("sgd", "rmsprop", "adamw")


#: Settings that change how fast a training runs, never its numbers: left out of every fingerprint.
RUN_ONLY_FIELDS = ("threads", "device", "eval_batch_size", "cuda_graph", "evaluate_every_epoch")
#: The most epochs a training may ask for (a typo of 1e9 is refused rather than run).
MAX_EPOCHS = 100_000


@dataclass(frozen=True)
class TrainSettings:
    """Everything about a proxy run except the network and the data. Frozen; ``replace`` for variants.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step.
        lr: peak learning rate (reached after ``warmup_epochs``, then cosine to zero).
        optimizer: ``"sgd"`` (Nesterov momentum), ``"rmsprop"`` (the paper's: decay 0.9, momentum 0.9) or
            ``"adamw"`` (``momentum`` is its beta1; weight decay decoupled).
        momentum: optimizer momentum.
        weight_decay: L2 penalty on conv/linear weights (not on BatchNorm or biases).
        label_smoothing: the paper used 0.1.
        warmup_epochs: linear warm-up length (fractional allowed).
        bn_momentum: BatchNorm running-statistics momentum (PyTorch convention; the official value is 0.01).
        precise_bn_batches: before each evaluation, recompute BN statistics over this many training batches
            (0 disables).
        regularization_scale: multiplies the spec's dropout and stochastic-depth rates (0 turns them off).
        zero_init: start the classifier at zero and each residual branch's last BatchNorm scale at zero
            (Goyal et al., 2017), so the untrained network is an identity-friendly, chance-level predictor
            instead of one with logits of magnitude ~5 (torchvision's classifier init) that short runs spend
            their first epoch undoing.
        crop_padding: random-crop padding as a fraction of the resolution (0 disables; 0.125 = 4 px at 32).
        flip: random horizontal flips.
        eval_batch_size: images per evaluation step; 0 (the default) chooses 128 on the CPU, where a smaller batch
            evaluates as fast with a quarter of the evaluation's activations (``benchmarks/bench_eval_batch.py``),
            and 500 on an accelerator: it changes speed and memory, not what is computed for an image (BatchNorm
            in eval mode).
        evaluate_every_epoch: score the validation split after every epoch (the learning curve Optuna's pruners and
            the fidelity's early-epoch signals read), or after the last one alone: what is computed for the last
            epoch does not change (evaluation draws no random numbers and leaves the weights and BatchNorm
            statistics as they were), it only saves the other epochs' evaluations.
        seed: seeds initialisation, shuffling, augmentation, dropout and stochastic depth.
        device: ``"auto"`` (CUDA, then MPS, then CPU), or a torch device string.
        threads: CPU threads for torch (None: all cores available to this process).
        channels_last: ``"auto"`` (on for the CPU, and on CUDA where the step is a CUDA graph), ``"on"`` or
            ``"off"``. On CUDA channels_last slows eager steps (their depthwise convolutions) and speeds captured ones
            (``benchmarks/bench_train.py --device cuda`` measures both).
        processes: data-parallel CPU processes (see :mod:`scaling_search.training.distributed`): each takes an equal
            share of every batch and ``threads // processes`` threads, gradients are averaged. On a small CPU
            two 1-thread processes train much faster than one 2-thread process. Results depend on it (each
            process normalises its share of the batch), so it is part of a study's settings. CPU only.
        cuda_graph: ``"auto"`` (on for CUDA in one process), ``"on"`` or ``"off"``: capture each step's forward
            and backward pass once as a CUDA graph and replay it (:mod:`scaling_search.training.cuda_graph`); at
            proxy sizes a GPU step is bound by kernel launches.
    """

    epochs: int = 3
    batch_size: int = 128
    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.3
    bn_momentum: float = 0.1
    precise_bn_batches: int = 0
    regularization_scale: float = 0.0
    zero_init: bool = True
    crop_padding: float = 0.125
    flip: bool = True
    eval_batch_size: int = 0
    evaluate_every_epoch: bool = True
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    channels_last: str = "auto"
    processes: int = 1
    cuda_graph: str = "auto"

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.epochs <= MAX_EPOCHS, f"epochs must be in 1..{MAX_EPOCHS}"),
            (0 <= self.seed <= 2**31 - 1, f"seed must be in 0..{2**31 - 1}"),
            (self.batch_size >= 2, "batch_size must be >= 2 (BatchNorm needs two images)"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (0 < self.bn_momentum <= 1, "bn_momentum must be in (0, 1]"),
            (self.precise_bn_batches >= 0, "precise_bn_batches must be >= 0"),
            (self.regularization_scale >= 0, "regularization_scale must be >= 0"),
            (0 <= self.crop_padding < 1, "crop_padding must be in [0, 1)"),
            (self.eval_batch_size >= 0, "eval_batch_size must be >= 0 (0: 128 on the CPU, 500 on an accelerator)"),
            (self.threads is None or self.threads >= 1, "threads must be >= 1"),
            (self.channels_last in ("auto", "on", "off"), "channels_last must be auto, on or off"),
            (self.processes >= 1, "processes must be >= 1"),
            (self.cuda_graph in ("auto", "on", "off"), "cuda_graph must be auto, on or off"),
            (self.processes < 1 or (self.batch_size % self.processes == 0 and self.batch_size // self.processes >= 2),
             f"batch_size {self.batch_size} must split into {self.processes} equal shares of at least 2 images "
             f"(one per process); use a multiple of {self.processes}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"train settings: {message}")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> TrainSettings:
        """Settings from a preset's ``[train]`` table, naming unknown keys."""
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"unknown train setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)


__all__ = ["RUN_ONLY_FIELDS", "OPTIMIZERS", "TrainSettings"]
