"""How faithfully stage 1's screen (the NASWOT score of an untrained proxy) ranks candidates, and what it costs.

Runs the screen exactly as stage 1 does (:mod:`scaling_search.search.screen`: the preset's proxy, ``--screen``
samples of the stage-1 space, those within ``--band`` of the deployment network's MACs scored), then trains
``--train`` of the scored candidates, evenly spaced over the score's ranks (best, worst and between), under the
preset's proxy and training, and scores the screen's ranking against their proxy accuracy the way
``scaling-search fidelity`` scores a proxy: Kendall's tau and Spearman's rho with 95% bootstrap intervals,
top-1/top-3 agreement. Deployment MACs and parameters, the signals every user already has, are scored on the
same candidates beside it (within a +-10% MACs band they rank little by construction). Also printed: the
screen's seconds per candidate against the training's.

    python benchmarks/bench_screen.py --data ../shared/data/cifar10.npz --subset 5000 [--preset quick]
"""

from __future__ import annotations

from _results import recorded

import argparse
import statistics
import time
from dataclasses import replace

import optuna

from scaling_search.network.cost import count_cost
from scaling_search.latency import describe_device
from scaling_search.network.proxy import to_proxy
from scaling_search.search.rank_agreement import rank_agreement
from scaling_search.settings.study import load_study_config
from scaling_search.search.screen import run_screen, sample_candidates
from scaling_search.training import choose_device, train_proxy


def agreement_line(name: str, signal: list[float], reference: list[float]) -> str:
    result = rank_agreement(signal, reference)
    if not result.defined:
        return f"{name:<34}: undefined (no spread)"
    tau_low, tau_high = result.kendall_interval or (float("nan"), float("nan"))
    return (f"{name:<34}: Kendall tau {result.kendall_tau:+.2f} [{tau_low:+.2f}, {tau_high:+.2f}], Spearman rho "
            f"{result.spearman_rho:+.2f}, top-1 {'agrees' if result.top1_agrees else 'differs'}, top-3 overlap "
            f"{result.top3_overlap:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--subset", type=int, default=None)
    parser.add_argument("--screen", type=int, default=300, help="candidates sampled (default 300)")
    parser.add_argument("--band", type=float, default=0.1, help="kept within this of the network's MACs")
    parser.add_argument("--batch", type=int, default=64, help="images each candidate is scored on")
    parser.add_argument("--train", type=int, default=10, help="scored candidates trained (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=None,
                        help="training seeds per trained candidate (default: the preset's repeats)")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    config = load_study_config(args.preset, {"data": {"source": args.data, "subset": args.subset}},
                               name="bench-screen", storage="sqlite:///:memory:")
    data = config.data.load()
    network = config.deployment_network(data.num_classes, data.channels)
    transform = config.proxy_transform(network)
    target = count_cost(network).macs
    print(f"preset {args.preset}, {data.describe()}; {describe_device(choose_device(config.train.device))}")
    screen = run_screen(network, transform, data, count=args.screen, band=args.band, batch=args.batch,
                        seed=args.seed, target_macs=target)
    rows = screen["rows"]
    print(f"screen: {args.screen} sampled, {len(rows)} within {args.band:.0%} of {target / 1e6:.0f}M MACs, "
          f"{screen['seconds']:.1f} s ({screen['seconds'] / max(len(rows), 1):.2f} s per scored candidate, "
          f"sampling and costing included)")
    if len(rows) < 3:
        raise SystemExit("fewer than 3 candidates in the band: raise --screen or --band")
    count = min(args.train, len(rows))
    picks = sorted({round(i * (len(rows) - 1) / (count - 1)) for i in range(count)})
    specs = sample_candidates(network, args.screen, args.seed)
    scores, macs, params, accuracies, walls = [], [], [], [], []
    for rank in picks:
        row = rows[rank]
        spec = specs[row["index"]][1]
        per_seed = []
        for repeat in range(args.seeds or config.search.repeats):
            started = time.perf_counter()
            seeded = replace(config.train, seed=config.train.seed + repeat)
            result = train_proxy(to_proxy(spec, transform), data, seeded)
            walls.append(time.perf_counter() - started)
            per_seed.append(result.val_top1)
        accuracy = statistics.fmean(per_seed)
        scores.append(row["score"])
        macs.append(row["macs"])
        params.append(count_cost(spec).params)
        accuracies.append(accuracy)
        print(f"  score rank {rank + 1:>3}/{len(rows)}: score {row['score']:.1f}, {row['macs'] / 1e6:.0f}M MACs, "
              f"proxy val top-1 {accuracy:.2%} (seeds {', '.join(f'{a:.2%}' for a in per_seed)}; "
              f"{walls[-1]:.0f} s each)")
    print(agreement_line("NASWOT score vs proxy accuracy", scores, accuracies))
    print(agreement_line("deployment MACs vs proxy accuracy", macs, accuracies))
    print(agreement_line("deployment params vs proxy accuracy", params, accuracies))
    per_candidate = screen["seconds"] / max(len(rows), 1)
    print(f"cost: a scored candidate {per_candidate:.2f} s, a trained one {statistics.median(walls):.1f} s (median): "
          f"{statistics.median(walls) / per_candidate:.0f} candidates screened per one trained")


if __name__ == "__main__":
    with recorded(__file__) as figures:
        figures.update(main() or {})
