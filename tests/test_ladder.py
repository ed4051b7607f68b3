"""The decision ladder, ties and the decision (scaling_search/search/ladder.py, ties.py, decision.py) with a fake
trainer: which points climb, where the decision is made, what is tied and which one is chosen, and that run's
lines, decision.json, the evidence and the report say the same."""

import json

import optuna
import pytest

from scaling_search.network.budget import parse_budget
from scaling_search.report import build_report
from scaling_search.search import runner
from scaling_search.search.ladder import contenders, rung_stage

TOP_SEEDS = 2  # the rung of these tests trains two seeds
from scaling_search.search.ties import choose, cost_key, tied_with_best
from scaling_search.settings.ladder import Rung, promotion_cap
from scaling_search.settings.study import load_study_config
from scaling_search.training import EpochMetrics, TrainResult

TRAINED: list[tuple[int, int, int]] = []  # (proxy resolution, epochs, seed) of every training


def graded_trainer(spec, data, settings, on_epoch=None):
    """Accuracy falls with the proxy's depth and rises with its resolution, a little more with longer training;
    the seed moves it by a point (a known ranking with seed noise, no training)."""
    TRAINED.append((spec.resolution, settings.epochs, settings.seed))
    accuracy = 0.5 + spec.resolution / 400 - spec.num_blocks / 100 + settings.epochs / 100 + (settings.seed % 3) / 100
    for epoch in range(1, settings.epochs + 1):
        if on_epoch is not None:
            on_epoch(epoch, EpochMetrics(epoch, 1.0, accuracy, accuracy, 0.1, 0.0))
    return TrainResult(accuracy, accuracy, 1.0, settings.epochs, 0.01, 1000.0, 1, 1, spec.resolution, "fake", 1)


def _config(tmp_path, **search):
    overrides = {"search": {"baseline": "network", "pruner": "none", "grid_step": 0.1,
                            "rungs": [{"epochs": 2, "seeds": TOP_SEEDS}],
                            **search},
                 "data": {"synthetic_val_per_class": 100}}
    return load_study_config("smoke", overrides, "ladder", f"sqlite:///{tmp_path}/ladder.db")


@pytest.fixture(scope="module")
def climbed(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ladder")
    TRAINED.clear()
    result = runner.run(_config(tmp_path), parse_budget("2x"), output=tmp_path / "reports", trainer=graded_trainer,
                        progress=False)
    return tmp_path, result, list(TRAINED)


def test_a_rung_takes_at_most_a_third_of_the_points_below_and_at_least_two():
    assert [promotion_cap(n) for n in (1, 2, 3, 6, 12, 13)] == [1, 2, 2, 2, 4, 5]


def _tied_rows(count: int, step: float = 0.005) -> list[dict]:
    """``count`` finished points ``step`` apart on 200 validation images (half a point: all tied at 95%), the most
    accurate the most expensive."""
    return [{"grid_point": i, "point": i, "state": "complete", "accuracy": 0.60 - step * i, "val_images": 200,
             "seeds": 1, "accuracy_std": None, "activations": 1e6 * (count - i)} for i in range(count)]


def test_beyond_the_cap_the_most_accurate_climbs_then_the_cheapest_under_the_cost_tie_break():
    rows = _tied_rows(12)
    assert len(tied_with_best(rows)) == 12 and promotion_cap(12) == 4
    # the leader, then the three fewest activations (points 11, 10, 9); by accuracy: the first four
    assert contenders(rows, cost_key(None)[1]) == [0, 11, 10, 9]
    assert contenders(rows) == [0, 1, 2, 3]
    # within the cap the order never matters: every point that could be best climbs (here, 5 points apart, two)
    apart = _tied_rows(12, step=0.05)
    assert len(tied_with_best(apart)) == 2
    assert contenders(apart, cost_key(None)[1]) == contenders(apart) == [0, 1]


def test_the_points_that_could_still_be_best_climb_and_are_trained_longer(climbed):
    tmp_path, result, trained = climbed
    decision = result.grid.decision
    grid_rung, top = decision.rungs
    assert top.index == 1 and top.regime["epochs"] == 2  # the smoke preset's 1 epoch, twice
    promoted = grid_rung.promoted
    assert 2 <= len(promoted) <= promotion_cap(len(grid_rung.rows))
    # recomputed from the stored rung 0 (no latency table here: the cost is activations): the same decision
    assert promoted == contenders(grid_rung.rows, cost_key(None)[1])
    best_first = sorted(grid_rung.rows, key=lambda r: (-r["accuracy"], r["grid_point"]))
    assert promoted[0] == best_first[0]["grid_point"]
    assert sorted(r["grid_point"] for r in top.rows) == sorted(promoted)
    # only the promoted trained longer, each under two seeds at the top rung
    assert sum(epochs == 2 for _, epochs, _ in trained) == TOP_SEEDS * len(promoted)
    assert all(r["seeds"] == TOP_SEEDS for r in top.rows)
    assert all(r["accuracy"] > grid_rung.rows[r["grid_point"]]["accuracy"] for r in top.rows)


def test_the_decision_is_made_at_the_top_rung_among_the_tied(climbed):
    _, result, _ = climbed
    decision = result.grid.decision
    top = decision.rungs[-1]
    assert decision.winner and decision.chosen in top.rows
    assert [r["grid_point"] for r in decision.tied] == [r["grid_point"] for r in tied_with_best(top.rows)]
    assert result.grid.coefficients == (decision.chosen["alpha"], decision.chosen["beta"], decision.chosen["gamma"])
    if len(decision.tied) > 1:
        assert decision.chosen["activations"] == min(r["activations"] for r in decision.tied)
        assert decision.choice.why.startswith("tied: ") and "chosen for activations" in decision.choice.why
    else:
        assert decision.choice.decided_by == "accuracy"


def test_decision_json_evidence_and_report_show_the_same_decision(climbed):
    tmp_path, result, _ = climbed
    folder = result.folder
    decision = json.loads((folder / "decision.json").read_text())
    assert [rung["rung"] for rung in decision["rungs"]] == [0, 1]
    assert decision["rungs"][1]["regime"]["epochs"] == 2 and decision["rungs"][0]["promoted"]
    promotion = decision["rungs"][0]["promotion"]  # how rung 0 chose: no latency table here, so activations
    assert promotion["order"] == "activations"
    assert promotion["cap"] == promotion_cap(len(decision["rungs"][0]["candidates"]))
    assert promotion["could_be_best"] >= len(decision["rungs"][0]["promoted"])
    for candidate in decision["rungs"][1]["candidates"]:
        assert {"alpha", "beta", "gamma", "accuracy", "accuracy_std", "seeds", "interval"} <= set(candidate)
    [between] = decision["fidelity"]
    assert (between["from_rung"], between["to_rung"], between["n"]) == (0, 1, len(decision["rungs"][0]["promoted"]))
    chosen = decision["chosen"]
    assert (chosen["alpha"], chosen["beta"], chosen["gamma"]) == result.grid.coefficients
    assert {(t["alpha"], t["beta"], t["gamma"]) for t in decision["tied"]} == \
        {(r["alpha"], r["beta"], r["gamma"]) for r in result.grid.decision.tied}
    config = json.loads((folder / "model-phi1.json").read_text())
    assert config["evidence"]["decision"]["chosen"] == chosen
    assert (config["alpha"], config["beta"], config["gamma"]) == (chosen["alpha"], chosen["beta"], chosen["gamma"])
    index = build_report("ladder", result.config.storage, tmp_path / "reports").read_text()
    assert chosen["why"].split(";")[0] in index and "id='ladder'" in index and "at rung 1" in index
    table = (folder / "decision.csv").read_text().splitlines()
    header = table[0].split(",")
    first = dict(zip(header, table[1].split(",")))
    assert first["rung"] == "1"  # the table leads with the top rung, each point's mean over its seeds there


def test_rerunning_a_finished_ladder_trains_nothing_and_decides_the_same(climbed):
    tmp_path, result, _ = climbed
    TRAINED.clear()
    again = runner.run(result.config, parse_budget("2x"), output=tmp_path / "reports", trainer=graded_trainer,
                       progress=False)
    assert TRAINED == [] and again.grid.decision.to_dict() == result.grid.decision.to_dict()


def flat_trainer(spec, data, settings, on_epoch=None):
    """Every network at 50%: all tied, so more points could be best than a rung takes."""
    TRAINED.append((spec.resolution, settings.epochs, settings.seed))
    return TrainResult(0.5, 0.5, 1.0, settings.epochs, 0.01, 1000.0, 1, 1, spec.resolution, "fake", 1)


def test_a_ladder_keeps_its_promotions_when_the_cost_order_changes_later(tmp_path, monkeypatch):
    # a latency table calibrated after the run would order the tied points otherwise: the stored rung stands
    from scaling_search.search import ladder

    config = _config(tmp_path, race_seeds=0)
    first = runner.run(config, parse_budget("2x"), output=tmp_path / "reports", trainer=flat_trainer, progress=False)
    rung0 = first.grid.decision.rungs[0]
    assert rung0.promotion["could_be_best"] > rung0.promotion["cap"] == len(rung0.promoted)
    # the fewest activations climbed after the leader; the most would climb under the reversed order
    reversed_order = contenders(rung0.rows, lambda r: -r["activations"])
    assert reversed_order != rung0.promoted
    monkeypatch.setattr(ladder, "promotion_order", lambda config, grid: ("latency", lambda r: -r["activations"]))
    TRAINED.clear()
    again = runner.run(config, parse_budget("2x"), output=tmp_path / "reports", trainer=flat_trainer, progress=False)
    assert TRAINED == [] and again.grid.decision.to_dict() == first.grid.decision.to_dict()


def test_tie_break_none_chooses_the_most_accurate_and_says_so():
    rows = [{"grid_point": i, "alpha": 1.0, "beta": 1.0, "gamma": 1.0, "accuracy": a, "val_images": 100, "seeds": 1,
             "activations": act} for i, (a, act) in enumerate([(0.60, 9e6), (0.59, 5e6), (0.30, 1e6)])]
    tied = tied_with_best(rows)
    assert [r["grid_point"] for r in tied] == [0, 1]  # 0.30 is far below; 0.59 is within the noise of 100 images
    assert choose(tied, "none", None, True).row["grid_point"] == 0
    assert "chosen for accuracy (--tie-break none)" in choose(tied, "none", None, True).why
    by_cost = choose(tied, "cost", None, True)
    assert by_cost.row["grid_point"] == 1 and by_cost.decided_by == "activations"
    by_latency = choose(tied, "cost", lambda row: 3.0 if row["grid_point"] == 0 else 4.0, True)
    assert by_latency.row["grid_point"] == 0 and "chosen for latency" in by_latency.why
    assert choose(tied[:1], "cost", None, True).why.startswith("separated")
    assert [c.summary for c in (choose(tied[:1], "cost", None, True), by_cost, by_latency,
                                choose(tied, "none", None, True), choose(tied, "cost", None, False))] == \
        ["separated", "tied: chosen for activations", "tied: chosen for latency", "tied: chosen for accuracy",
         "no winner: chosen for activations"]


def test_a_rung_no_proxy_can_have_is_refused_before_training(tmp_path):
    from scaling_search.errors import UserError

    TRAINED.clear()
    with pytest.raises(UserError, match="rung 1 of the decision ladder"):
        runner.run(_config(tmp_path, rungs=[{"epochs": 1, "resolution": 8}]), parse_budget("2x"),
                   output=tmp_path / "reports", trainer=graded_trainer, progress=False)
    assert TRAINED == []


def test_rung_settings_are_checked():
    from scaling_search.errors import UserError

    with pytest.raises(UserError, match="epochs must be a whole multiple"):
        Rung(epochs=0)
    with pytest.raises(UserError, match="unknown rung key"):
        Rung.from_table({"epoch": 2})
    with pytest.raises(UserError, match="tie_break must be one of cost, none"):
        load_study_config("smoke", {"search": {"tie_break": "coin"}}, "x", "sqlite:///x.db")
    assert rung_stage(load_study_config("quick", {}, "x", "sqlite:///x.db"), 1) == "rung1-e6-r40-w0.5-s1"


def test_racing_adds_seeds_at_the_top_rung_counted_in_grid_trainings(tmp_path):
    """With a rung of twice the epochs, a race of 4 grid trainings buys 2 extra seeds there, each trained at the
    rung's regime, on the points that could still win; the decision counts them."""
    TRAINED.clear()
    result = runner.run(_config(tmp_path, race_seeds=4), parse_budget("2x"),
                        output=tmp_path / "reports", trainer=noisy_trainer, progress=False)
    top = result.grid.decision.rungs[-1]
    raced = sum(row.get("race_seeds", 0) for row in top.rows)
    extra = [entry for entry in TRAINED if entry[1] == 2 and entry[2] > 1]  # rung epochs, beyond the two seeds
    assert 0 < raced <= 2 and len(extra) == raced
    assert all(row.get("seeds", 1) == TOP_SEEDS + row.get("race_seeds", 0) for row in top.rows)
    assert f"ladder:race-{rung_stage(result.config, 1)}" in optuna.get_all_study_names(result.config.storage)


def noisy_trainer(spec, data, settings, on_epoch=None):
    """The graded trainer with every point a point apart and seeds that move it by up to two points: the top is
    never separated by one seed, so racing has something to decide."""
    result = graded_trainer(spec, data, settings, on_epoch)
    accuracy = 0.6 + (spec.resolution % 7) / 200 + ((settings.seed * 7919) % 5) / 250
    return TrainResult(accuracy, accuracy, 1.0, settings.epochs, 0.01, 1000.0, 1, 1, spec.resolution, "fake", 1,
                       result.history)


def test_the_ladder_and_tie_break_flags_reach_the_study_config():
    from scaling_search.cli import build_parser
    from scaling_search.cli.study import study_config

    def config(*flags):
        return study_config(build_parser().parse_args(["run", "--budget", "2x", *flags]))

    assert config().search.rungs == (Rung(epochs=2),) and config().search.tie_break == "cost"  # the quick preset's
    assert config("--rungs", "none", "--tie-break", "none").search.rungs == ()
    assert config("--tie-break", "none").search.tie_break == "none"
    assert config("--rungs", "epochs=2;epochs=2,resolution=56,seeds=2").search.rungs == \
        (Rung(epochs=2), Rung(epochs=2, resolution=56, seeds=2))
    assert config("--proxy-images", "matched").proxy.images == "matched"


@pytest.mark.parametrize("flags", [["--rungs", "epochs=two"], ["--rungs", "depth=2"], ["--tie-break", "coin"],
                                   ["--rungs", "epochs=0"], ["--proxy-images", "blurred"]])
def test_a_bad_ladder_flag_is_one_line_and_exit_2(tmp_path, flags, capsys):
    from scaling_search.cli import main

    argv = ["run", "--budget", "2x", "--study", "bad", "--storage", f"sqlite:///{tmp_path}/bad.db", *flags]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own refusals exit from inside the parser
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "Traceback" not in "\n".join(err) and not (tmp_path / "bad.db").exists()


@pytest.mark.parametrize("pruner", ["none", "median"])
def test_a_rung_above_the_grid_evaluates_its_last_epoch_alone(tmp_path, pruner):
    """No rung above the grid prunes (regime stages never do) or reads a learning curve."""
    from scaling_search.search.ladder import rung_context

    ctx = runner.prepare(_config(tmp_path, pruner=pruner), stores=False)
    assert rung_context(ctx, 0).config.train.evaluate_every_epoch  # the grid: its pruner and the fidelity read curves
    assert not rung_context(ctx, 1).config.train.evaluate_every_epoch
    assert rung_context(ctx, 1).config.result_settings() == ctx.config.search.rungs[0].config(
        ctx.config).result_settings()  # the same stage fingerprint as before
