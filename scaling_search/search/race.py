"""Racing: at the rung that decides (the grid, or the ladder's top rung), extra seeds go to the points that could
still win, until the winner is separated.

A grid trained under one seed names its argmax; the seed-to-seed spread of a few-epoch proxy
is about the size of the gaps it is asked to resolve. Racing spends a budget of extra trainings
(``search.race_seeds``) in rounds. Each round scores every completed point's probability of being the best
(:func:`scaling_search.search.grid.choose_coefficients`, validation and seed noise), stops when the winner's reaches
:data:`~scaling_search.search.confidence.SEPARATED_AT`, and otherwise trains one more seed of every *leader*: a point
whose P(best) is at least :data:`LEADER_P`, and never fewer than the two best. Points that cannot win get no
more seeds. This is racing in the sense of Maron & Moore (1994) "Hoeffding races", with P(best) in place of
their bounds.

The extra seeds are trials of the stage ``<study>:race`` (resumable; one process trains them). Each round is decided
from the grid and the race's earlier rounds only, so a rerun after an interruption replays the same decisions
and trains only what was missing. :func:`with_race_seeds` merges every seed into the grid's rows, which the
winner, the export and its evidence read.
"""

from __future__ import annotations

import statistics
from typing import Any

import optuna
from optuna.trial import TrialState

from scaling_search.search.candidate import Candidate
from scaling_search.search.context import StudyContext, StudyStore
from scaling_search.search.grid import choose_coefficients, describe_grid_point, grid_table
from scaling_search.search.queue import point, prepare_points, train_points

#: A point whose probability of being the best is at least this gets another seed in a round.
LEADER_P = 0.05


def _race_results(race: optuna.Study | None, before_round: int | None = None) -> dict[int, list[float]]:
    """Grid point -> accuracies of its completed extra seeds (of rounds before ``before_round``)."""
    results: dict[int, list[float]] = {}
    if race is None:
        return results
    done = race.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in sorted(done, key=lambda t: (t.user_attrs.get("race_round", 0), t.user_attrs.get("seed_offset", 0))):
        attrs = trial.user_attrs
        if before_round is not None and attrs.get("race_round", 0) >= before_round:
            continue
        results.setdefault(attrs["grid_point"], []).extend(attrs.get("accuracy_per_seed", [trial.value]))
    return results


def with_race_seeds(rows: list[dict[str, Any]], extra: dict[int, list[float]]) -> list[dict[str, Any]]:
    """The grid's rows with every point's extra seeds merged: mean, spread and count over all its seeds."""
    merged = []
    for row in rows:
        added = extra.get(row["point"], [])
        if not added or row["state"] != "complete":
            merged.append(dict(row))
            continue
        accuracies = list(row.get("accuracy_per_seed") or [row["accuracy"]]) + added
        merged.append({**row, "accuracy": statistics.fmean(accuracies), "accuracy_std": statistics.stdev(accuracies),
                       "seeds": len(accuracies), "accuracy_per_seed": accuracies, "race_seeds": len(added)})
    return merged


def raced_rows(store: StudyStore, raced: optuna.Study, stage: str = "race") -> list[dict[str, Any]]:
    """The raced stage's rows (the grid's, or the ladder's top rung's) with the race's extra seeds (all rounds,
    from ``stage``) merged in."""
    return with_race_seeds(grid_table(raced), _race_results(store.stage(stage)))


def _leaders(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ranked = sorted((r for r in rows if r.get("p_best") is not None), key=lambda r: (-r["p_best"], r["point"]))
    return [r for i, r in enumerate(ranked) if i < 2 or r["p_best"] >= LEADER_P]


def run_race(ctx: StudyContext, grid: optuna.Study, budget: int, stage: str = "race") -> int:
    """Spend up to ``budget`` extra trainings on the leaders of ``grid`` (the grid, or the ladder's top rung,
    trained by ``ctx``), round by round, as the stage ``stage``; returns how many the race holds. Nothing is
    trained when the budget is 0 or the winner is already separated."""
    if budget <= 0:
        return 0
    base, grid_points = grid_table(grid), grid.user_attrs["points"]
    race = ctx.stage(stage)
    entries: list[dict[str, Any]] = []  # this replay's decisions, round by round
    round_index = 0
    while len(entries) < budget:
        rows = with_race_seeds(base, _race_results(race, before_round=round_index))
        summary = choose_coefficients(rows)
        if summary["separated"] is not False:  # separated, or no noise known to decide it
            break
        seeds_so_far = {r["point"]: r.get("seeds", 1) for r in rows}
        for leader in _leaders(rows)[: budget - len(entries)]:  # choose_coefficients set each row's p_best
            index = leader["point"]
            entry = grid_points[index]
            offset = seeds_so_far[index]  # the seeds the point already has: settings.seed + 0 .. offset - 1
            attrs = {**entry["attrs"], "grid_point": index, "race_round": round_index, "seed_offset": offset,
                     "train_seeds": 1}
            entries.append(point(Candidate.from_dict(entry), attrs))
        stored = list(race.user_attrs.get("points", [])) if race is not None else []
        race = prepare_points(ctx, stage, stored + [e for e in entries if e not in stored],
                              {"baseline": grid.user_attrs["baseline"],
                               "race": [[e["attrs"]["grid_point"], e["attrs"]["seed_offset"]] for e in entries]},
                              growable=("race",))
        train_points(ctx, race, stage, _describe)
        round_index += 1
    return len(race.user_attrs.get("points", [])) if race is not None else 0


def _describe(attrs: dict[str, Any]) -> str:
    return f"{describe_grid_point(attrs)}, extra seed {attrs.get('seed_offset')} (race round {attrs.get('race_round')})"


__all__ = ["LEADER_P", "raced_rows", "run_race", "with_race_seeds"]
