"""The search pipeline (scaling_search/search/runner.py) end to end with a fake trainer: no training, seconds."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from scaling_search.network.budget import parse_budget
from scaling_search.network.cost import count_cost
from scaling_search.errors import UserError
from scaling_search.network.proxy import to_proxy
from scaling_search.report import build_report
from scaling_search.search import runner
from scaling_search.settings.study import load_study_config
from scaling_search.network.spec import NetworkSpec
from scaling_search.training import EpochMetrics, TrainResult

TRAINED: list[NetworkSpec] = []


def fake_trainer(spec, data, settings, on_epoch=None):
    """Accuracy rises with proxy resolution and width, falls with depth: a known winner, no training."""
    TRAINED.append(spec)
    accuracy = 0.3 + spec.resolution / 1000 + spec.stages[-1].out_channels / 10_000 - spec.num_blocks / 1000
    for epoch in range(1, settings.epochs + 1):
        if on_epoch is not None:
            on_epoch(epoch, EpochMetrics(epoch, 1.0, accuracy, accuracy * epoch / settings.epochs, 0.1, 0.0))
    cost = count_cost(spec)
    return TrainResult(accuracy, accuracy, 1.0, settings.epochs, 0.01, 1000.0, cost.macs, cost.params,
                       spec.resolution, "fake", 1)


def _config(tmp_path, **search):
    overrides = {"search": {"baseline": "network", "pruner": "none", **search}}
    return load_study_config("smoke", overrides, "fake", f"sqlite:///{tmp_path}/fake.db")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("runner")
    TRAINED.clear()
    result = runner.run(_config(tmp_path), parse_budget("2x"), output=tmp_path / "reports", trainer=fake_trainer,
                        progress=False)
    return tmp_path, result, list(TRAINED)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_model_phi1_is_at_deployment_scale_and_meets_the_constraint(finished):
    tmp_path, result, _ = finished
    config = json.loads((result.folder / "model-phi1.json").read_text())
    spec = NetworkSpec.from_dict(config["spec"])
    baseline_macs = count_cost(result.baseline).macs
    assert config["scale"] == "deployment" and spec.resolution >= 224
    assert abs(count_cost(spec).macs / (2 * baseline_macs) - 1) <= 0.1
    assert 1.8 <= config["alpha"] * config["beta"] ** 2 * config["gamma"] ** 2 <= 2.2
    assert config["proxy"]["spec"] == to_proxy(spec, runner.prepare(result.config).transform).to_dict()
    assert config["proxy"]["spec"]["resolution"] < spec.resolution
    assert "build_model('model-phi1.json')" in config["usage"]["python"]


def test_the_chosen_point_is_the_cheapest_of_those_tied_with_the_best_fake_accuracy(finished):
    _, result, _ = finished
    decision = result.grid.decision
    best = max(result.grid.rows, key=lambda row: (row["accuracy"], -row["point"]))
    tied = {row["grid_point"] for row in decision.tied}
    assert best["point"] in tied and decision.chosen["grid_point"] in tied
    fewest = min((row for row in result.grid.rows if row["point"] in tied), key=lambda row: row["activations"])
    assert decision.choice.decided_by in ("accuracy", "activations")  # the test's cache holds no latency table
    if len(tied) > 1:
        assert decision.chosen["activations"] == fewest["activations"]
        assert "chosen for activations" in decision.choice.why
    assert result.grid.coefficients == (decision.chosen["alpha"], decision.chosen["beta"], decision.chosen["gamma"])


def test_only_proxies_are_trained_and_every_trial_records_both_scales(finished):
    _, result, trained = finished
    assert trained and all(spec.resolution < 224 for spec in trained)
    study = result.grid.study
    transform = runner.prepare(result.config).transform
    for trial in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        deployment = NetworkSpec.from_dict(trial.user_attrs["spec"])
        assert trial.user_attrs["proxy_spec"] == to_proxy(deployment, transform).to_dict()
        assert trial.user_attrs["macs"] == count_cost(deployment).macs
        assert trial.user_attrs["proxy_macs"] < trial.user_attrs["macs"]


def test_grid_trials_carry_alpha_beta_gamma_as_optuna_params(finished):
    _, result, _ = finished
    frame = result.grid.study.trials_dataframe()
    assert {"params_alpha", "params_beta", "params_gamma"} <= set(frame.columns)
    best = max(result.grid.rows, key=lambda row: (row["accuracy"], -row["point"]))
    assert result.grid.study.best_params == {"alpha": best["alpha"], "beta": best["beta"], "gamma": best["gamma"]}


@pytest.mark.parametrize(("text", "target"), [("4x", 4.0), ("800M", None), ("0.5x", 0.5)])
def test_export_meets_each_budget_within_5_percent(finished, text, target):
    tmp_path, result, _ = finished
    _, paths = runner.export(result.config, parse_budget(text), output=tmp_path / "reports")
    [budgeted] = [json.loads(p.read_text()) for p in paths if json.loads(p.read_text())["budget"]]
    wanted = 800e6 if target is None else target * count_cost(result.baseline).macs
    assert budgeted["budget"]["text"] == text
    assert abs(budgeted["cost"]["macs"] / wanted - 1) <= 0.05
    assert (budgeted["phi"] < 0) == (text == "0.5x")


def test_family_is_at_deployment_scale(finished):
    tmp_path, result, _ = finished
    _, paths = runner.export(result.config, parse_budget("2x"), [0.0, 1.0, 2.0, 3.0], output=tmp_path / "reports")
    family = {json.loads(p.read_text())["phi"]: json.loads(p.read_text()) for p in paths}
    assert family[0.0]["spec"] == result.baseline.to_dict(explicit=True)  # exports state the layer settings
    macs = [family[phi]["cost"]["macs"] for phi in (0.0, 1.0, 2.0, 3.0)]
    assert macs == sorted(macs) and len(set(macs)) == 4
    grows = family[3.0]["spec"]["resolution"] > family[1.0]["spec"]["resolution"]
    assert grows == (family[1.0]["gamma"] > 1)  # resolution grows with phi exactly where gamma does


def test_a_refused_budget_leaves_every_saved_file_byte_identical(finished, tmp_path):
    study_tmp, result, _ = finished
    folder = result.folder
    before = _digests(folder)
    db = Path(result.config.storage[len("sqlite:///"):])
    db_before = hashlib.sha256(db.read_bytes()).hexdigest()
    strict = _config(study_tmp, budget_tol=1e-9)
    with pytest.raises(UserError, match="no scaled network lands within"):
        runner.export(strict, parse_budget("3x"), output=study_tmp / "reports")
    other = load_study_config("smoke", {"search": {"baseline": "network", "pruner": "none"}, "train": {"epochs": 2}},
                              "fake", result.config.storage)
    with pytest.raises(UserError, match=r"different settings \(train.epochs: 1 stored, 2 given\)"):
        runner.export(other, parse_budget("2x"), output=study_tmp / "reports")
    assert _digests(folder) == before
    assert hashlib.sha256(db.read_bytes()).hexdigest() == db_before


def test_rerun_trains_nothing_again(finished):
    tmp_path, result, _ = finished
    TRAINED.clear()
    again = runner.run(result.config, parse_budget("2x"), output=tmp_path / "reports", trainer=fake_trainer,
                       progress=False)
    assert TRAINED == [] and again.grid.coefficients == result.grid.coefficients


def test_stage_one_samples_at_deployment_scale(tmp_path):
    TRAINED.clear()
    config = load_study_config("smoke", {"search": {"trials": 3, "pruner": "none"}}, "s1", f"sqlite:///{tmp_path}/s1.db")
    prepared = runner.prepare(config)
    baseline, info = runner.search_baseline(prepared.derive(trainer=fake_trainer, progress=False))
    assert baseline.resolution == 224 and len(TRAINED) == 3
    assert all(spec.resolution == 32 for spec in TRAINED)  # the proxy of every 224 px sample
    assert info["macs"] == count_cost(baseline).macs and info["proxy_macs"] < info["macs"]


def test_ablation_points_are_costed_at_deployment_scale(tmp_path):
    import pandas as pd

    config = _config(tmp_path)
    runner.ablate(config, ("8",), widths=(1.0,), depths=(1.0,), resolutions=(1.0,), phis=(1.0,),
                  output=tmp_path / "reports", trainer=fake_trainer, progress=False)
    index = build_report(config.name, config.storage, tmp_path / "reports")
    frame = pd.read_csv(index.parent / "fig8_trials.csv")
    base = frame[frame["method"] == "baseline"]
    assert len(base) == 1 and int(base["macs"].iloc[0]) == count_cost(runner.prepare(config).network).macs
    at_phi1 = frame[frame["phi"] == 1.0]
    assert len(at_phi1) == 4 and (at_phi1["macs"] > 1.5 * base["macs"].iloc[0]).all()
    target = float(at_phi1["target_macs"].iloc[0])
    assert ((at_phi1["macs"] / target - 1).abs() <= 0.1).all()  # equal deployment cost, bisected
    assert (frame["proxy_resolution"] < frame["resolution"]).all()


def test_rules_are_compared_at_equal_deployment_macs_with_a_verdict_and_seeds(tmp_path):
    import html

    import pandas as pd

    from scaling_search.report.page import comparison_verdicts

    config = _config(tmp_path, repeats=2)
    runner.compare(config, ("compound", "fast", "v2", "width"), (2.0, 4.0), output=tmp_path / "reports",
                   trainer=fake_trainer, progress=False)
    index = build_report(config.name, config.storage, tmp_path / "reports")
    frame = pd.read_csv(index.parent / "compare_trials.csv")
    base_macs = count_cost(runner.prepare(config).network).macs
    assert list(frame[frame["method"] == "baseline"]["macs"]) == [base_macs]
    for budget in (2.0, 4.0):
        part = frame[frame["budget"] == budget]
        assert sorted(part["method"]) == ["compound", "fast", "v2", "width"]
        assert ((part["macs"] / (budget * base_macs) - 1).abs() <= 0.1).all()  # equal deployment cost
    assert (frame["seeds"] == 2).all() and (frame["proxy_resolution"] < frame["resolution"]).all()
    assert (frame[frame["method"] == "fast"]["rule_parameters"] == "width_share=0.8").all()
    # the fake trainer rewards resolution and width: the verdict names the rule with the most of them
    verdicts = comparison_verdicts(pd.read_csv(index.parent / "compare_trials.csv").assign(state="complete"))
    best_at_2x = frame[frame["budget"] == 2.0].sort_values("accuracy").iloc[-1]["method"]
    assert len(verdicts) == 2 and verdicts[0].startswith(f"At 2x the baseline's deployment MACs, {best_at_2x} ")
    page = html.unescape(index.read_text())
    assert "Scaling rules compared on this data" in page and "id='comparison'" in page
    # a rerun trains nothing new (resumable), a changed rule set is refused
    TRAINED.clear()
    runner.compare(config, ("compound", "fast", "v2", "width"), (2.0, 4.0), output=tmp_path / "reports",
                   trainer=fake_trainer, progress=False)
    assert TRAINED == []
    with pytest.raises(UserError, match="already holds rules compound, fast, v2, width and budgets 2x, 4x"):
        runner.compare(config, ("compound", "fast"), (2.0,), output=tmp_path / "reports", trainer=fake_trainer,
                       progress=False)
    # another budget and another rule extend the comparison: only the new networks are trained
    TRAINED.clear()
    runner.compare(config, ("compound", "fast", "v2", "width", "depth"), (2.0, 4.0, 8.0),
                   output=tmp_path / "reports", trainer=fake_trainer, progress=False)
    index = build_report(config.name, config.storage, tmp_path / "reports")
    frame = pd.read_csv(index.parent / "compare_trials.csv")
    # 2 seeds x (depth at 2x and at 4x, and four rules at 8x): v2 below its 480 px cap is compound's network,
    # so it takes compound's measurements instead of training it again
    assert len(TRAINED) == 2 * (1 + 1 + 4)
    assert len(frame) == 1 + 3 * 5 and (frame["state"] == "complete").all()
    at_8x = frame[frame["budget"] == 8.0].set_index("method")
    assert at_8x.loc["v2", "accuracy"] == at_8x.loc["compound", "accuracy"]
    assert at_8x.loc["v2", "macs"] == at_8x.loc["compound", "macs"]
    assert sorted(frame[frame["budget"] == 8.0]["method"]) == ["compound", "depth", "fast", "v2", "width"]


def test_comparison_table_predicts_latency_from_a_calibrated_table_and_says_why_when_there_is_none(
        tmp_path, monkeypatch):
    import html

    import pandas as pd

    from scaling_search.latency import Correction, LatencyTable, network_parts

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    config = _config(tmp_path)
    runner.compare(config, ("compound", "width"), (2.0,), output=tmp_path / "reports",
                   trainer=fake_trainer, progress=False)
    index = build_report(config.name, config.storage, tmp_path / "reports")
    assert "latency_ms" not in pd.read_csv(index.parent / "compare_trials.csv")
    page = html.unescape(index.read_text())
    assert "No latency column: no calibrated latency table" in page and "scaling-search latency calibrate" in page

    # a calibrated table whose parts "measure" 0.25 ms per input channel of the part, fitted as 2x + 1 ms + 0.5 ms
    # per million parameters
    measured = []

    def fake_parts(self, factories):
        measured.extend(factories)
        return [0.25 * factory()[1][0] for factory in factories]

    monkeypatch.setattr(LatencyTable, "_measure_parts", fake_parts)
    table = LatencyTable.open("cpu", 1)
    table.correction, table.calibrated = Correction(2.0, 1.0, 0.5), True
    table.save()
    TRAINED.clear()
    runner.compare(config, ("compound", "width"), (2.0,), output=tmp_path / "reports",
                   trainer=fake_trainer, progress=False)
    index = build_report(config.name, config.storage, tmp_path / "reports")
    assert TRAINED == [] and measured  # nothing trained again; the parts the table lacked were measured
    frame = pd.read_csv(index.parent / "compare_trials.csv")
    points = optuna.load_study(study_name="fake:compare", storage=config.storage).user_attrs["points"]
    table = LatencyTable.open("cpu", 1)
    for _, row in frame.iterrows():
        spec = NetworkSpec.from_dict(points[int(row["point"])]["deployment"])
        parts = sum(table.entries[key] for key, _ in network_parts(spec))
        assert row["latency_ms"] == pytest.approx(2.0 * parts + 1.0 + 0.5 * count_cost(spec).params / 1e6, abs=1e-3)
    assert frame["latency_ms"].nunique() == len(frame)  # three different networks, three different latencies
    page = html.unescape(index.read_text())
    assert "latency_ms: predicted at batch 1 on cpu:" in page and "No latency column" not in page
    assert "ms predicted" in page  # the verdict carries each side's latency


def test_run_by_a_rule_on_a_given_baseline_trains_nothing_and_exports_the_rule(tmp_path):

    TRAINED.clear()
    result = runner.run(_config(tmp_path), parse_budget("2x"), family=[1.0], output=tmp_path / "reports",
                        trainer=fake_trainer, progress=False, strategy="width")
    assert TRAINED == [] and result.grid is None and not result.trained and result.strategy == "width"
    bodies = [json.loads(path.read_text()) for path in result.exported]
    assert {body["rule"]["rule"] for body in bodies} == {"width"} and len(bodies) == 2
    assert all(body["multipliers"]["depth"] == body["multipliers"]["resolution"] == 1.0 for body in bodies)
    assert any(body["budget"] and abs(body["macs_ratio"] / 2 - 1) <= 0.05 for body in bodies)


def test_racing_spends_extra_seeds_on_the_leaders_only_and_replays_on_a_rerun(tmp_path):
    """Smoke's 40 validation images cannot separate grid points 0.01 apart: the race spends its whole budget,
    one new seed per leader per round, never on a point that cannot win; a rerun trains nothing."""
    seeds_trained = []

    def noisy(spec, data, settings, on_epoch=None):
        seeds_trained.append((spec.resolution, spec.stages[-1].out_channels, settings.seed))
        result = fake_trainer(spec, data, settings, on_epoch)
        wobble = ((settings.seed * 7919) % 11 - 5) / 1000  # seed noise, a few tenths of a point
        hopeless = -0.3 if spec.num_blocks >= 28 else 0.0  # alpha = 2 (twice B0's 16 blocks) cannot win
        return replace(result, val_top1=result.val_top1 + wobble + hopeless)

    config = _config(tmp_path, race_seeds=5)
    result = runner.run(config, parse_budget("2x"), output=tmp_path / "reports", trainer=noisy, progress=False)
    grid_points = len(result.grid.rows)
    raced = seeds_trained[grid_points:]
    assert len(raced) == 5 and all(seed >= 1 for _, _, seed in raced)  # the grid's seed is 0; extras are new
    assert len(set(raced)) == 5  # no network trained twice under one seed
    rows = {r["point"]: r for r in result.grid.rows}
    assert sum(r.get("race_seeds", 0) for r in rows.values()) == 5
    raced_points = [p for p, r in rows.items() if r.get("race_seeds")]
    hopeless = [p for p, r in rows.items() if r["accuracy"] < 0.2]
    assert hopeless and len(raced_points) >= 2  # points that cannot win exist, and the leaders were raced
    assert not set(hopeless) & set(raced_points)  # ... and got no extra seed
    assert result.grid.summary["separated"] is False
    every_point_raced = len(raced_points) == grid_points
    assert result.grid.summary["noise"] == ("validation images and seeds" if every_point_raced else
                                            "validation images, and seeds where a point has more than one (raced)")
    winner = result.grid.summary["winner"]
    assert winner["seeds"] == 1 + winner.get("race_seeds", 0)
    assert abs(winner["accuracy"] - sum(winner["accuracy_per_seed"]) / winner["seeds"]) < 1e-12
    # resumable: the same command trains nothing and finds the same answer
    seeds_trained.clear()
    again = runner.run(config, parse_budget("2x"), output=tmp_path / "reports", trainer=noisy, progress=False)
    assert seeds_trained == [] and again.grid.coefficients == result.grid.coefficients


def test_a_separated_grid_is_not_raced(tmp_path):
    def clear_winner(spec, data, settings, on_epoch=None):
        result = fake_trainer(spec, data, settings, on_epoch)
        best = spec.resolution >= 40  # only the highest-resolution proxies are any good
        return replace(result, val_top1=0.95 if best else 0.05)

    TRAINED.clear()
    result = runner.run(_config(tmp_path, race_seeds=5), parse_budget("2x"), output=tmp_path / "reports",
                        trainer=clear_winner, progress=False)
    if result.grid.summary["separated"]:
        assert len(TRAINED) == len(result.grid.rows)  # nothing raced
    else:  # two points tie at the top: the race can only spend its budget on them
        assert len(TRAINED) == len(result.grid.rows) + 5


def test_a_grid_whose_every_training_diverged_says_so_instead_of_asking_for_a_rerun(tmp_path):
    from scaling_search.errors import NonFiniteLossError

    def diverging(spec, data, settings, on_epoch=None):
        raise NonFiniteLossError(1, 3, float("nan"))

    with pytest.raises(UserError, match=r"the training of \d+ of \d+ grid points diverged .*lower \[train\] lr"):
        runner.run(_config(tmp_path), parse_budget("2x"), output=tmp_path / "reports", trainer=diverging,
                   progress=False)


def test_exporting_again_rewrites_the_configs_unchanged(finished):
    tmp_path, result, _ = finished
    before = {p.name: p.read_bytes() for p in result.folder.glob("model-phi*.json")}
    _, paths = runner.export(result.config, parse_budget("2x"), output=tmp_path / "reports")
    assert {p.name: p.read_bytes() for p in paths} == {name: before[name] for name in (p.name for p in paths)}


def test_seeds_belong_to_a_stage_so_compare_trains_two_on_a_one_seed_study_with_its_grid(tmp_path):
    """A study whose grid trained one seed per point: compare --repeats 2 trains each rule's networks twice and
    scales by the study's own coefficients; a grid asked for two seeds is refused, as it was trained with one."""
    import pandas as pd

    one_seed = _config(tmp_path)
    found = runner.run(one_seed, parse_budget("2x"), output=tmp_path / "reports", trainer=fake_trainer,
                       progress=False)
    two_seeds = _config(tmp_path, repeats=2)
    TRAINED.clear()
    runner.compare(two_seeds, ("compound", "width"), (2.0,), output=tmp_path / "reports", trainer=fake_trainer,
                   progress=False)
    frame = pd.read_csv(build_report("fake", two_seeds.storage, tmp_path / "reports").parent / "compare_trials.csv")
    trained = frame["same_network_as"].isna() if "same_network_as" in frame else frame["seeds"] > 0
    assert (frame["seeds"] == 2).all() and len(TRAINED) == 2 * int(trained.sum())  # a twin network is trained once
    study = optuna.load_study(study_name="fake:compare", storage=two_seeds.storage)
    alpha, beta, gamma = found.grid.coefficients
    assert f"alpha, beta, gamma = {alpha:g}, {beta:g}, {gamma:g} from the study's grid" in study.user_attrs["note"]
    with pytest.raises(UserError, match=r"stage grid of study 'fake' was trained with 1 seed\(s\) per point"):
        runner.run(two_seeds, parse_budget("2x"), output=tmp_path / "reports", trainer=fake_trainer, progress=False)
