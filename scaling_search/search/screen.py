"""Stage 1's screen: many candidates scored without training, and only the best few trained.

Training a candidate under the proxy costs a minute on a CPU, so a stage 1 of a few trials is a random draw, not
a search (MnasNet sampled thousands). The screen samples ``screen`` candidates of the stage-1 space (seeded),
keeps those whose deployment MACs lie within ``screen_band`` of the reward's target (stage 1 looks for a
baseline *at* the target cost; the MnasNet reward's w = -0.07 moves a reward by under 1% within +-10% of it), and
scores each kept candidate's proxy, untrained, with the NASWOT score (:mod:`scaling_search.network.zero_cost`) on one
fixed batch of training images. Stage 1 then trains the best-scored candidates in order, one per trial, and picks
the best reward as before. Scoring costs one forward pass per candidate: hundreds of candidates cost what one
training does.

Every candidate's network is built from the same seed (common random numbers: scores differ by architecture, not
by initialisation) and sees the same images, so the screen is a pure function of the study's settings. It is
stored on the stage-1 study (attribute ``screen``) the first time it is computed and read from there after:
a resumed or second process trains the same candidates in the same order. How faithfully the score ranks
candidates is measured like any proxy's: ``benchmarks/bench_screen.py`` trains a sample across the score's range.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import optuna

from scaling_search.search.space import suggest_spec
from scaling_search.network.spec import NetworkSpec

if TYPE_CHECKING:  # torch and the model load when a screen runs, not when the report reads one (ATTR)
    import torch

    from scaling_search.data.base import ImageData
    from scaling_search.network.proxy import ProxyTransform

SIGNAL = "naswot"
ATTR = "screen"  # the stage-1 study attribute that holds the screen


def sample_candidates(network: NetworkSpec, count: int, seed: int) -> list[tuple[dict[str, Any], NetworkSpec]]:
    """``count`` candidates of the stage-1 space around ``network`` (Optuna's RandomSampler, seeded): their
    params, as the stage-1 study records them, and their deployment specs."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    candidates = []
    for _ in range(count):
        trial = study.ask()
        spec = suggest_spec(trial, network)
        candidates.append((dict(trial.params), spec))
    return candidates


def screen_batch(data: ImageData, resolution: int, size: int, seed: int) -> torch.Tensor:
    """The fixed batch every candidate is scored on: ``size`` training images at ``resolution``, seeded."""
    import torch

    images = data.split("train", resolution).images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:min(size, len(images))]].contiguous()


def identity(count: int, band: float, batch: int, seed: int, target_macs: float) -> dict[str, Any]:
    """What determines a screen: a stored screen with another identity is computed again."""
    return {"signal": SIGNAL, "count": count, "band": band, "batch": batch, "seed": seed, "target_macs": target_macs}


def run_screen(network: NetworkSpec, transform: ProxyTransform, data: ImageData, *, count: int, band: float,
               batch: int, seed: int, target_macs: float,
               on_candidate: Callable[[], None] | None = None) -> dict[str, Any]:
    """Score the in-band candidates of ``count`` samples; returns the screen as stored (ranked best first).

    ``rows`` holds every in-band candidate (sample index, params, deployment MACs, score), best score first,
    ties by sample index.
    """
    from scaling_search.network.cost import count_cost
    from scaling_search.network.proxy import to_proxy
    from scaling_search.network.zero_cost import score_network

    started = time.perf_counter()
    # every stage-1 candidate keeps the deployment resolution, so every proxy takes the baseline proxy's images
    images = screen_batch(data, to_proxy(network, transform).resolution, batch, seed)
    rows = []
    for index, (params, spec) in enumerate(sample_candidates(network, count, seed)):
        macs = count_cost(spec).macs
        if abs(macs / target_macs - 1.0) <= band:
            rows.append({"index": index, "params": params, "macs": macs,
                         "score": score_network(to_proxy(spec, transform), images, seed)})
        if on_candidate is not None:
            on_candidate()
    rows.sort(key=lambda row: (-row["score"], row["index"]))
    return {**identity(count, band, batch, seed, target_macs), "in_band": len(rows),
            "seconds": time.perf_counter() - started, "rows": rows}


def stored_or_run(study: optuna.Study, network: NetworkSpec, transform: ProxyTransform, data: ImageData, *,
                  count: int, band: float, batch: int, seed: int, target_macs: float, progress: bool) -> dict[str, Any]:
    """The study's stored screen if it has this identity; otherwise run it and store it, unless another process
    stored one meanwhile (then that one: every process trains the candidates of the one stored screen)."""
    wanted = identity(count, band, batch, seed, target_macs)

    def stored() -> dict[str, Any] | None:
        screen = study.user_attrs.get(ATTR)  # read from the storage at each call
        if screen is not None and all(screen.get(key) == value for key, value in wanted.items()):
            return screen
        return None

    existing = stored()
    if existing is not None:
        return existing
    from tqdm import tqdm

    with tqdm(total=count, desc="screen", unit="net", disable=not progress, leave=False) as bar:
        screen = run_screen(network, transform, data, count=count, band=band, batch=batch, seed=seed,
                            target_macs=target_macs, on_candidate=lambda: bar.update(1))
    existing = stored()
    if existing is not None:
        return existing
    study.set_user_attr(ATTR, screen)
    return screen


def summary(screen: dict[str, Any], trained: int) -> dict[str, Any]:
    """What stage 1's evidence says about its screen (no per-candidate rows)."""
    scores = [row["score"] for row in screen["rows"]]
    return {"signal": screen["signal"], "sampled": screen["count"], "in_band": screen["in_band"],
            "band": screen["band"], "seconds": round(screen["seconds"], 2), "trained": min(trained, len(scores)),
            "best_score": scores[0] if scores else None, "median_score": scores[len(scores) // 2] if scores else None}


__all__ = ["ATTR", "SIGNAL", "run_screen", "sample_candidates", "screen_batch", "stored_or_run",
           "summary"]
