"""Latency predicted from the spec: a per-part lookup table of one device and runtime, and a linear correction.

Each distinct part of a network -- the stem, every block configuration at its input size, the head (1x1 conv,
pooling, classifier), all read off the layer plan (:func:`scaling_search.network.layers.plan_network`) -- is measured
once by the protocol of :mod:`scaling_search.latency.measure` and cached; a network's prediction is the sum over
its parts, corrected by a per-device linear fit ``a * sum + b + c * params`` against whole-network measurements
(the idea of nn-Meter, Zhang et al., 2021, without its kernel fusion rules; :class:`Correction`).

A shared host's speed drifts by tens of percent over minutes, and a table is filled over many moments (at
calibration, then whenever a search asks about a new part), so its entries carry the drift of their moment.
Scaling every measurement by a fixed anchor part timed beside it was tried and dropped: on this project's
2-core VM the anchor's own noise made two measurements of 30 networks disagree more (median 22%, against 6-12%
without it; ``benchmarks/bench_latency.py``).

A part timed alone, run after run, finds its weights and input in the core's cache; inside a network the parts
before it have evicted them. On the CPU each timed pass of a part is therefore preceded (untimed) by a pass
over a buffer larger than the L2 cache. The calibration set (:func:`calibration_specs`) mixes the B0 family at
64-224 px with random networks of the search space, so that the fit sees the block types the search asks about.

A table moves to another machine by :meth:`LatencyTable.adapt`: the other machine's parts are kept, in its
units, and only the correction is refitted on whole networks measured here (``scaling-search latency calibrate
--from TABLE.json``), so a new machine needs 10-20 network measurements instead of hundreds of parts. A part the
source lacks is measured here and stored divided by the correction's slope, i.e. in the source's units.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from scaling_search.atomic import write_json_atomically
from scaling_search.cache import cache_root
from scaling_search.network.cost import count_cost
from scaling_search.errors import UserError
from scaling_search.latency.measure import (Runner, check_runtime, describe_device, measure_latencies,
                                            prepare_runner, robust_ms, synchronizer, time_interleaved)
from scaling_search.network.layers import BlockPlan, plan_network
from scaling_search.network.spec import NetworkSpec

TABLE_FORMAT = "scaling-search/latency-table"
TABLE_VERSION = 3  # 3: BatchNorm folded, parts timed interleaved, lowest round median; one table per runtime

#: (module, input shape without the batch) of one part of a network.
PartFactory = Callable[[], tuple[nn.Module, tuple[int, int, int]]]

#: Whole networks a correction needs before it fits the weights term: twice its three coefficients. With fewer the
#: weights term stays 0 (``benchmarks/bench_latency.py`` prints how the error falls with the number of networks).
MIN_NETWORKS_FOR_WEIGHTS = 6


class Correction(NamedTuple):
    """From a sum of part latencies to a network's: ``slope * sum + intercept + ms_per_mparam * params / 1e6``.

    The weights term is there because a part timed alone, pass after pass, reads its weights from a cache that a
    whole network's pass has long evicted: in a network every weight streams from memory once per pass, and
    without the term the table under-predicts the networks with the most parameters. The term is the time to
    stream a million fp32 parameters from memory (about one core's memory bandwidth on a CPU); a device where
    weights cost nothing extra fits it as 0. ``benchmarks/bench_latency.py`` scores the table with and without it.
    """

    slope: float = 1.0
    intercept: float = 0.0
    ms_per_mparam: float = 0.0

    def apply(self, raw_sum: float, params: int) -> float:
        return self.slope * raw_sum + self.intercept + self.ms_per_mparam * params / 1e6


def _block_key(block: BlockPlan) -> str:
    expanded = block.conv_dw.in_channels
    squeezed = block.se.reduce.out_channels if block.se else 0
    return (f"block:i{block.in_channels}_x{expanded}_o{block.out_channels}_k{block.conv_dw.kernel}"
            f"_s{block.conv_dw.stride}_q{squeezed}_r{block.input_size}")


def network_parts(spec: NetworkSpec) -> list[tuple[str, PartFactory]]:
    """The (key, factory) of every part whose latency the table sums: stem, each block, head."""
    from scaling_search.network.model import conv_bn_act, make_block

    plan = plan_network(spec)
    stem = plan.stem
    parts: list[tuple[str, PartFactory]] = [
        (f"stem:c{stem.in_channels}_o{stem.out_channels}_r{stem.input_size}",
         lambda: (conv_bn_act(stem), (stem.in_channels, stem.input_size, stem.input_size)))]
    for block in plan.blocks:
        parts.append((_block_key(block), lambda b=block: (make_block(b), (b.in_channels, b.input_size, b.input_size))))
    head = plan.head

    def head_part() -> tuple[nn.Module, tuple[int, int, int]]:
        module = nn.Sequential(conv_bn_act(head.conv), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(head.classifier.in_features, head.classifier.out_features))
        return module, (head.conv.in_channels, head.conv.input_size, head.conv.input_size)

    parts.append((f"head:i{head.conv.in_channels}_o{head.conv.out_channels}_c{head.classifier.out_features}"
                  f"_r{head.conv.input_size}", head_part))
    return parts


class CacheFlush:
    """Touches a buffer larger than a CPU core's L2 cache, evicting what the last timed run left there."""

    def __init__(self, size_bytes: int = 8 << 20) -> None:
        self.buffer = torch.zeros(size_bytes // 4)

    def __call__(self) -> None:
        self.buffer.add_(1.0)


def random_specs(count: int, seed: int, resolutions: Sequence[int] = (96, 128, 160, 192, 224)) -> list[NetworkSpec]:
    """``count`` random networks of the stage-1 search space around B0 (seeded), at ``resolutions`` in turn."""
    import optuna

    from scaling_search.network.family import efficientnet
    from scaling_search.search.space import suggest_spec

    base = efficientnet("b0")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [suggest_spec(study.ask(), replace(base, resolution=resolutions[i % len(resolutions)]))
            for i in range(count)]


def calibration_specs(seed: int = 7, samples: int = 10) -> list[NetworkSpec]:
    """The networks a table is calibrated on: five of the B0 family at 64-224 px and ``samples`` random networks
    of the stage-1 search space at 96-224 px (seeded; ``benchmarks/bench_latency.py`` tests on another seed)."""
    from scaling_search.network.family import efficientnet
    from scaling_search.network.scaling import scale

    base = efficientnet("b0")
    specs = [replace(scale(base, width=w, depth=d), resolution=r)
             for w, d, r in ((0.5, 1.0, 64), (1.0, 1.0, 96), (0.75, 1.4, 128), (1.0, 1.2, 160), (1.2, 1.0, 224))]
    specs += random_specs(samples, seed)
    return specs


class LatencyTable:
    """Per-part latencies of one device and runtime, a linear correction, and a JSON cache.

    Note:
        A table is valid for one device description (its thread count included), one runtime and one batch
        size; load it with :meth:`open`, which keys the cache file by all three. Parts not yet in the table are
        measured on first use, all of a network's missing parts together in interleaved rounds, and saved.
    """

    def __init__(self, device: str, batch: int, path: Path | None, entries: dict[str, float] | None = None,
                 correction: Correction = Correction(), *, runtime: str = "torch", rounds: int = 5,
                 runs: int = 5, warmup: int = 3, calibrated: bool = False, adapted_from: str | None = None) -> None:
        self.device = torch.device(device)
        check_runtime(runtime, self.device)
        self.batch = batch
        self.runtime = runtime
        self.path = path
        self.entries = dict(entries or {})
        self.correction = correction
        self.rounds, self.runs, self.warmup = rounds, runs, warmup
        self.measurements = 0  # parts measured by this object (the cache test counts them)
        self.calibrated = calibrated  # the correction was fitted on whole-network measurements
        self.held_out: HeldOut | None = None  # how the last calibration did on networks it was not fitted on
        self.adapted_from = adapted_from  # the device whose parts these are, when not this one (see adapt)
        self._flush = CacheFlush() if self.device.type == "cpu" else None

    @staticmethod
    def cache_dir() -> Path:
        return cache_root() / "latency"

    @classmethod
    def open(cls, device: str = "cpu", batch: int = 1, cache_dir: Path | None = None,
             runtime: str = "torch") -> LatencyTable:
        """The cached table for this device, batch and runtime (empty if none was saved yet)."""
        name = describe_device(torch.device(device))
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        suffix = "" if runtime == "torch" else f"_{runtime}"
        path = (cache_dir or cls.cache_dir()) / f"{safe}{suffix}_b{batch}.json"
        try:
            data = json.loads(path.read_text())
            correction = Correction(*data["correction"])
            if data.get("format") == TABLE_FORMAT and data.get("version") == TABLE_VERSION and correction.slope > 0:
                return cls(device, batch, path, dict(data["entries"]), correction, runtime=runtime,
                           calibrated=bool(data["calibrated"]), adapted_from=data.get("adapted_from"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass  # none yet, or truncated or damaged: never trusted, it starts empty (uncalibrated) and is rebuilt
        return cls(device, batch, path, runtime=runtime)

    @classmethod
    def open_calibrated(cls, device: str = "cpu", batch: int = 1, cache_dir: Path | None = None,
                        runtime: str = "torch") -> LatencyTable:
        """:meth:`open`, refusing a table that ``scaling-search latency calibrate`` has not calibrated: its raw
        sums of part latencies are not network latencies (5.69 ms predicted where 32.7 ms was measured)."""
        table = cls.open(device, batch, cache_dir, runtime)
        if not table.calibrated:
            flag = "" if runtime == "torch" else f" --runtime {runtime}"
            raise UserError(f"no calibrated latency table for {describe_device(table.device)} at batch {batch}"
                            f"{'' if runtime == 'torch' else ' in ' + runtime}; run "
                            f"'scaling-search latency calibrate --device {device}{flag}' first")
        return table

    def save(self) -> None:
        if self.path is None:
            return
        body = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "device": describe_device(self.device),
                "runtime": self.runtime, "batch": self.batch, "threads": torch.get_num_threads(),
                "correction": list(self.correction), "calibrated": self.calibrated,
                "held_out": self.held_out._asdict() if self.held_out else None,
                "adapted_from": self.adapted_from, "entries": self.entries}
        write_json_atomically(self.path, body, indent=1, sort_keys=True)

    def _part_runner(self, factory: PartFactory) -> Runner:
        from scaling_search.network.model import fold_batchnorm

        module, shape = factory()
        example = torch.randn(self.batch, *shape, device=self.device)
        return prepare_runner(fold_batchnorm(module.to(self.device)), example, self.runtime)

    def _measure_parts(self, factories: Sequence[PartFactory]) -> list[float]:
        """The latency of each part, timed interleaved with the others, BatchNorm folded, caches flushed."""
        runners = [self._part_runner(factory) for factory in factories]
        medians = time_interleaved(runners, rounds=self.rounds, runs=self.runs, warmup=self.warmup,
                                   synchronize=synchronizer(self.device), before_each=self._flush)
        self.measurements += len(factories)
        return [robust_ms(m) for m in medians]

    def fill(self, specs: Iterable[NetworkSpec]) -> int:
        """Measure every part of ``specs`` the table lacks (together, interleaved) and save; returns how many."""
        missing: dict[str, PartFactory] = {}
        for spec in specs:
            for key, factory in network_parts(spec):
                if key not in self.entries:
                    missing.setdefault(key, factory)
        if missing:
            measured = self._measure_parts(list(missing.values()))
            if self.adapted_from is not None:  # into the source's units, where the other parts are
                measured = [ms / self.correction[0] for ms in measured]
            self.entries.update(zip(missing, measured))
            self.save()
        return len(missing)

    def raw_sum(self, spec: NetworkSpec, measure_missing: bool = True) -> float:
        """Sum of the table's part latencies (ms); missing parts are measured and added to the table."""
        parts = network_parts(spec)
        if measure_missing:
            self.fill([spec])
        for key, _ in parts:
            if key not in self.entries:
                raise KeyError(f"latency table has no entry {key}; calibrate first")
        return sum(self.entries[key] for key, _ in parts)

    def predict(self, spec: NetworkSpec, measure_missing: bool = True) -> float:
        """Predicted latency in ms: the :class:`Correction` of the sum of the parts."""
        return self.correction.apply(self.raw_sum(spec, measure_missing), count_cost(spec).params)

    def calibrate(self, specs: Sequence[NetworkSpec], rounds: int = 5, runs: int = 10) -> list[tuple[float, float]]:
        """Fill the table for ``specs``, measure the whole networks (interleaved), and fit the correction;
        returns the (sum of parts, measured) pairs. A table adapted from another machine starts again from
        this device's own parts."""
        if self.adapted_from is not None:
            self.entries, self.adapted_from = {}, None
        self.fill(specs)
        return self._fit_correction(specs, rounds, runs)

    def _fit_correction(self, specs: Sequence[NetworkSpec], rounds: int, runs: int) -> list[tuple[float, float]]:
        """Measure ``specs`` whole (interleaved), fit the correction on the table's sums of their parts, save.

        Before the final fit on every network, the correction is checked on networks it was not fitted on
        (:func:`held_out_check`); where they are off by more than :data:`HELD_OUT_LIMIT` (a busy machine), the
        networks are measured again once. ``self.held_out`` records the check the table was saved with.
        """
        raws = [self.raw_sum(spec, measure_missing=False) for spec in specs]
        params = [count_cost(spec).params for spec in specs]
        for attempt in (1, 2):
            measured = measure_latencies(specs, self.device, batch=self.batch, rounds=rounds, runs=runs,
                                         runtime=self.runtime)
            rows = [(raw, n, latency.ms) for raw, n, latency in zip(raws, params, measured)]
            check = held_out_check(rows, measured_twice=attempt == 2)
            if check is None or check.median_error <= HELD_OUT_LIMIT:
                break
        self.correction, self.held_out = fit_correction(rows), check
        self.calibrated = True
        self.save()
        return [(raw, ms) for raw, _, ms in rows]

    def adapt(self, source: dict[str, Any], specs: Sequence[NetworkSpec], rounds: int = 5,
              runs: int = 10) -> list[tuple[float, float]]:
        """Take another machine's table (``source``, the JSON body of a saved table) and refit only the
        correction, on ``specs`` measured whole on this device; returns the (sum of source parts, measured)
        pairs. Networks with a part the source lacks are left out; fewer than two left is refused."""
        check_source_table(source, self.runtime, self.batch)
        entries: dict[str, float] = source["entries"]
        origin = str(source.get("device") or "another machine")
        covered = [spec for spec in specs if all(key in entries for key, _ in network_parts(spec))]
        if len(covered) < 2:
            raise UserError(f"the table from {origin} has the parts of {len(covered)} of the "
                            f"{len(specs)} calibration networks; adapting needs at least 2: calibrate that table "
                            "with 'scaling-search latency calibrate' there first, or calibrate here without --from")
        self.entries, self.adapted_from = dict(entries), origin
        return self._fit_correction(covered, rounds, runs)


def check_source_table(source: Any, runtime: str, batch: int) -> None:
    """Refuse, with the reason, a file that is not a saved table of this runtime and batch."""
    if not isinstance(source, dict) or source.get("format") != TABLE_FORMAT or not isinstance(source.get("entries"), dict):
        raise UserError("not a scaling-search latency table (give the JSON file that 'scaling-search latency "
                        "calibrate' saved on the other machine)")
    if source.get("version") != TABLE_VERSION:
        raise UserError(f"that latency table has version {source.get('version')}, this tool reads version "
                        f"{TABLE_VERSION}: calibrate it again there with this version")
    if source.get("runtime", "torch") != runtime or source.get("batch") != batch:
        raise UserError(f"that latency table is for runtime {source.get('runtime')} at batch {source.get('batch')}; "
                        f"give --runtime {source.get('runtime')} --batch {source.get('batch')}, or a table for "
                        f"{runtime} at batch {batch}")


#: A calibration whose correction is off by more than this (median relative error) on networks it was not fitted
#: on is measured again, then reported as unreliable.
HELD_OUT_LIMIT = 0.10


class HeldOut(NamedTuple):
    """A correction fitted on all but every fourth calibration network, scored on those it did not see."""

    networks: int
    median_error: float
    max_error: float
    measured_twice: bool


def held_out_check(rows: Sequence[tuple[float, int, float]], measured_twice: bool = False) -> HeldOut | None:
    """Fit on all but every fourth of ``(sum of parts, parameters, measured ms)`` and score the rest (relative
    error); None with fewer than four networks."""
    if len(rows) < 4:
        return None
    held, fitted = list(rows[::4]), [row for index, row in enumerate(rows) if index % 4]
    correction = fit_correction(fitted)
    errors = [abs(correction.apply(raw, params) / ms - 1) for raw, params, ms in held]
    return HeldOut(len(held), statistics.median(errors), max(errors), measured_twice)


def fit_correction(rows: Sequence[tuple[float, int, float]]) -> Correction:
    """The :class:`Correction` fitted on ``(sum of parts, parameters, measured ms)`` of whole networks.

    Minimises the squared relative error, as :func:`fit_relative`, over ``slope``, ``intercept`` and the weights
    term; with fewer than :data:`MIN_NETWORKS_FOR_WEIGHTS` networks, or where the three-term fit comes out with a
    slope or a weights term that is not positive (noise, or a device where weights cost nothing extra), it is
    :func:`fit_relative`'s line with no weights term.
    """
    if len(rows) >= MIN_NETWORKS_FOR_WEIGHTS:
        features = np.array([[raw / ms, 1.0 / ms, params / 1e6 / ms] for raw, params, ms in rows])
        (slope, intercept, per_mparam), *_ = np.linalg.lstsq(features, np.ones(len(rows)), rcond=None)
        if slope > 0 and per_mparam > 0:
            return Correction(float(slope), float(intercept), float(per_mparam))
    return Correction(*fit_relative([(raw, ms) for raw, _, ms in rows]))


def fit_relative(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    """The ``(a, b)`` of ``measured ~ a * raw + b`` that minimises the squared *relative* error.

    Ordinary least squares lets the largest networks (B7-like latencies) dominate the fit, while a budget and
    the benchmark care about percentage errors across sizes: on the data behind the module docstring the
    relative fit lowered the median error from 13.0% to 8.5%. Minimises ``sum((a*x + b - y) / y)^2``, i.e.
    ordinary least squares of 1 on ``(x/y, 1/y)``. A fit whose slope is not positive (measurements so noisy
    that a larger sum of parts measured faster) falls back to the proportional ``b = 0`` fit.
    """
    if not pairs:
        return (1.0, 0.0)
    if len({raw for raw, _ in pairs}) > 1:
        u = [x / y for x, y in pairs]
        v = [1.0 / y for _, y in pairs]
        suu, suv, svv = sum(a * a for a in u), sum(a * b for a, b in zip(u, v)), sum(b * b for b in v)
        su, sv = sum(u), sum(v)
        determinant = suu * svv - suv * suv
        slope = (su * svv - sv * suv) / determinant if determinant > 0 else 0.0
        # A slope <= 0 means noise reversed the order (a CPU shared with other work): latency still grows
        # with the parts, so the proportional fit below; a falling line predicted negative latencies.
        if slope > 0:
            return (slope, (sv * suu - su * suv) / determinant)
    return (statistics.fmean(y / x for x, y in pairs), 0.0)  # one distinct sum of parts, or no rising line


__all__ = ["HELD_OUT_LIMIT", "MIN_NETWORKS_FOR_WEIGHTS", "HeldOut", "held_out_check", "CacheFlush", "Correction", "LatencyTable", "PartFactory", "calibration_specs",
           "check_source_table", "fit_correction", "fit_relative", "network_parts", "random_specs"]
