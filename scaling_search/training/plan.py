"""The execution plan: how many grid points this machine trains at once, and with how many threads each.

Neither changes a study's numbers (each point trains alone, seeded, in one process; tests/test_pipeline_cli.py
compares a two-worker grid with a one-process one), so the plan is a property of the machine, not of the study:
``workers = "auto"`` (the quick preset's) measures it once per machine and caches it. It is measured, not fixed,
because the best split flips with the CPU's kernels (docs/results.md has machines where either won).

The measurement (:func:`measure_plans`): for every split of the cores into ``workers x threads``, that many
processes start together and each trains the study's proxy network for a few steps at the study's batch size
on random images; the plan's throughput is the sum of their images/s. Plans are interleaved over rounds (drift
on a shared host hits all of them alike) and the median round counts; where splits are close, either is as
good, and the cached choice stands until deleted. Data-parallel ``processes`` are not chosen here: they change the numbers (each rank normalises its share of a batch), so they stay a setting.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from scaling_search.atomic import write_json_atomically
from scaling_search.cache import cache_root
from scaling_search.network.spec import NetworkSpec

PLAN_FORMAT = 3  # 3: rounds checked for agreement and the load recorded (2: the depthwise weight gradient by taps)
#: The measurement: every plan's images/s in each interleaved round.
Measure = Callable[[NetworkSpec, int, list[tuple[int, int]]], dict[str, list[float]]]
#: The rounds of one split may differ by this share of their median; beyond it the machine was busy.
SPREAD_LIMIT = 0.25
#: On one machine the best split is at most this many times the worst; beyond it one round ran under load.
IMPLAUSIBLE_RATIO = 5.0
#: A plan measured at a one-minute load average of L is measured again where the load is now below L - this.
QUIETER_BY = 1.0


@dataclass(frozen=True)
class ExecutionPlan:
    """``workers`` processes of ``threads`` threads each; ``measured`` holds every candidate's images/s."""

    workers: int
    threads: int
    machine: str
    measured: dict[str, float]
    probe: str  # the network and batch the plans were timed on
    load: float = 0.0  # the one-minute load average when it was measured
    unsure: str | None = None  # why it was not cached: its rounds disagreed twice

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def candidate_plans(cores: int) -> list[tuple[int, int]]:
    """Every split of ``cores`` into workers x threads with no core left idle (at most 8 workers)."""
    return [(workers, cores // workers) for workers in range(1, min(cores, 8) + 1) if cores % workers == 0]


def _probe_process(spec: dict[str, Any], batch_size: int, steps: int, threads: int, barrier: Any,
                   results: Any) -> None:
    """One worker of a plan: ``steps`` training steps of ``spec`` on random images, timed after a warm-up."""
    from scaling_search.network.model import build_model

    torch.set_num_threads(threads)
    network = NetworkSpec.from_dict(spec)
    generator = torch.Generator().manual_seed(0)
    model = build_model(network).train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch_size, network.input_channels, network.resolution, network.resolution,
                         generator=generator).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, network.num_classes, (batch_size,), generator=generator)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()  # warm-up: first-call allocation and kernel selection
    barrier.wait()  # the plan's workers run side by side, as grid workers do
    started = time.perf_counter()
    for _ in range(steps):
        step()
    results.put(steps * batch_size / (time.perf_counter() - started))


def measure_plans(spec: NetworkSpec, batch_size: int, plans: list[tuple[int, int]], steps: int = 8,
                  rounds: int = 3) -> dict[str, list[float]]:
    """Aggregate training images/s of each plan in each of ``rounds`` interleaved rounds."""
    from scaling_search.training.distributed import process_context

    from tqdm import tqdm

    context = process_context()
    rates: dict[str, list[float]] = {f"{w}x{t}": [] for w, t in plans}
    runs = [plan for _ in range(rounds) for plan in plans]
    for workers, threads in tqdm(runs, desc="measuring this machine's execution plan (once)", leave=False,
                                 disable=None):
        barrier, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_probe_process, args=(spec.to_dict(), batch_size, steps, threads,
                                                                  barrier, results), daemon=True)
                     for _ in range(workers)]
        for process in processes:
            process.start()
        try:
            rates[f"{workers}x{threads}"].append(sum(results.get(timeout=600) for _ in processes))
        finally:
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
    return rates


def load_average() -> float:
    """The machine's one-minute load average (0 where the system does not tell)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def disagreement(rounds: dict[str, list[float]]) -> str | None:
    """Why a measurement cannot be trusted, or None: a split whose rounds differ by more than
    :data:`SPREAD_LIMIT` of their median, or a best split more than :data:`IMPLAUSIBLE_RATIO` times the worst."""
    medians = {name: statistics.median(values) for name, values in rounds.items()}
    for name, values in rounds.items():
        spread = (max(values) - min(values)) / medians[name] if medians[name] > 0 else float("inf")
        if spread > SPREAD_LIMIT:
            return f"the rounds of {name} differed by {spread:.0%} of their median"
    best, worst = max(medians, key=medians.__getitem__), min(medians, key=medians.__getitem__)
    if medians[worst] <= 0 or medians[best] > IMPLAUSIBLE_RATIO * medians[worst]:
        return f"{best} measured {medians[best]:.0f} images/s against {medians[worst]:.0f} for {worst}"
    return None


def machine_name() -> str:
    """The CPU model, its usable cores and the torch build: what a cached plan is valid for."""
    from scaling_search.latency.measure import describe_device
    from scaling_search.training.resources import default_threads

    model = describe_device(torch.device("cpu")).rsplit(":", 1)[0]  # without the current thread count
    return f"{model}:{default_threads()}cores:torch{torch.__version__}:{torch.backends.cpu.get_cpu_capability()}"


def cache_file(cache_dir: Path | None = None) -> Path:
    root = cache_dir or cache_root()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in machine_name())
    return root / "plan" / f"{safe}.json"


def machine_plan(spec: NetworkSpec, batch_size: int, *, cache_dir: Path | None = None,
                 measure: Measure | None = None) -> ExecutionPlan:
    """This machine's plan for training ``spec`` at ``batch_size``: cached once measured (keyed by the machine,
    the network and the batch), else measured now and cached.

    A measurement whose rounds disagree (:func:`disagreement`) is taken again; where the second disagrees too,
    its plan is used for this run but not cached (``unsure`` says why). A cached plan measured under a load
    average at least :data:`QUIETER_BY` above today's is measured again. A cache file that cannot be read is
    measured over.
    """
    from scaling_search.training.resources import default_threads

    path = cache_file(cache_dir)
    fingerprint = hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    probe = f"the proxy network {fingerprint} at {spec.resolution} px, batch {batch_size}"
    try:
        stored = json.loads(path.read_text())
        if not isinstance(stored, dict):
            raise ValueError("not a plan cache")
        if stored.get("format") == PLAN_FORMAT and probe in stored.get("plans", {}):
            cached = ExecutionPlan(**stored["plans"][probe])
            if cached.load - load_average() < QUIETER_BY:
                return cached
    except (OSError, ValueError, TypeError):
        stored = {}
    for _ in range(2):
        load = load_average()
        rounds = (measure or measure_plans)(spec, batch_size, candidate_plans(default_threads()))
        unsure = disagreement(rounds)
        if unsure is None:
            break
    measured = {name: statistics.median(values) for name, values in rounds.items()}
    best = max(measured, key=measured.__getitem__)
    workers, threads = (int(part) for part in best.split("x"))
    plan = ExecutionPlan(workers, threads, machine_name(), measured, probe, round(load, 2), unsure)
    if unsure is not None:
        return plan
    try:
        plans = {**(stored.get("plans", {}) if stored.get("format") == PLAN_FORMAT else {}), probe: plan.to_dict()}
        write_json_atomically(path, {"format": PLAN_FORMAT, "plans": plans})
    except OSError:
        pass  # an unwritable cache: measured again next time
    return plan


__all__ = ["ExecutionPlan", "candidate_plans", "disagreement", "load_average", "machine_plan", "measure_plans"]
