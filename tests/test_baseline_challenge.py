"""Stage 1 with ``baseline = "challenge"``: the deployment network is trial 0 and stays the baseline unless a
searched candidate's reward is higher at 95% (scaling_search/search/baseline.py)."""

from dataclasses import replace

import optuna
import pytest

from scaling_search.network.cost import count_cost
from scaling_search.network.family import efficientnet
from scaling_search.network.proxy import to_proxy
from scaling_search.network.spec import NetworkSpec
from scaling_search.search import runner
from scaling_search.search.baseline import choose_baseline, sampler_seed
from scaling_search.search.space import incumbent_params, suggest_spec
from scaling_search.settings.study import load_study_config
from scaling_search.training import EpochMetrics, TrainResult


@pytest.mark.parametrize("name", ["b0", "b3", "b7"])
def test_the_incumbents_params_make_the_deployment_network_itself(name):
    network = replace(efficientnet(name), num_classes=10)
    params = incumbent_params(network)
    assert params is not None and params["s0_width"] == 1.0
    assert suggest_spec(optuna.trial.FixedTrial(params), network) == network


def test_a_network_outside_the_space_has_no_incumbent_params():
    network = efficientnet("b0")
    first = replace(network.stages[0], kernel=7)
    assert incumbent_params(replace(network, stages=(first, *network.stages[1:]))) is None


def test_stage_1_sampler_seeds_differ_between_study_seeds_and_trials():
    # seed + history gave 19 distinct seeds over this 10 x 10 square: seed s's trial 1 drew what seed s + 1's
    # trial 0 drew, so "independent" study seeds searched alike
    seeds = {sampler_seed(seed, history) for seed in range(10) for history in range(10)}
    assert len(seeds) == 100
    assert sampler_seed(3, 4) == sampler_seed(3, 4)  # reproducible: a resumed study samples the same
    assert all(0 <= s < 2**32 for s in seeds)  # what TPE's RandomState takes


def _trial(number: int, accuracy: float, factor: float, incumbent: bool = False,
           val_images: int = 1000) -> optuna.trial.FrozenTrial:
    attrs = {"accuracy": accuracy, "val_images": val_images, **({"incumbent": True} if incumbent else {})}
    trial = optuna.trial.create_trial(value=accuracy * factor, user_attrs=attrs)
    trial.number = number
    return trial


def test_the_incumbent_is_kept_when_the_best_reward_is_within_the_noise():
    # 1,000 validation images at 40% give a standard error of 1.5 points: 1 point ahead is no evidence
    trials = [_trial(0, 0.40, 1.0, incumbent=True), _trial(1, 0.41, 1.0), _trial(2, 0.35, 1.05)]
    chosen, why = choose_baseline(trials)
    assert chosen.number == 0 and why["kept"] and why["challenger"] == 1
    assert why["margin"] == pytest.approx(1.96 * ((0.4 * 0.6 + 0.41 * 0.59) / 1000) ** 0.5)


def test_a_challenger_ahead_beyond_the_noise_replaces_the_incumbent():
    trials = [_trial(0, 0.40, 1.0, incumbent=True), _trial(1, 0.50, 1.0), _trial(2, 0.45, 1.0)]
    chosen, why = choose_baseline(trials)
    assert chosen.number == 1 and not why["kept"] and why["challenger_reward"] == pytest.approx(0.5)


def test_the_cost_factor_counts_but_is_not_noise():
    # equal accuracy: a reward 10% higher for its cost (+4 points) is within the noise (1.96 * 2.3 points), 20%
    # higher (+8) is not; the cost factor scales the challenger's noise but adds none
    chosen, why = choose_baseline([_trial(0, 0.40, 1.0, incumbent=True), _trial(1, 0.40, 1.1)])
    assert chosen.number == 0 and why["margin"] == pytest.approx(1.96 * (0.24 / 1000 * (1 + 1.1 ** 2)) ** 0.5)
    chosen, why = choose_baseline([_trial(0, 0.40, 1.0, incumbent=True), _trial(1, 0.40, 1.2)])
    assert chosen.number == 1 and why["margin"] < 0.05


def test_the_best_trial_is_taken_when_the_incumbent_did_not_finish():
    chosen, why = choose_baseline([_trial(1, 0.3, 1.0), _trial(2, 0.35, 1.0)])
    assert chosen.number == 2 and not why["kept"] and why["incumbent"] is None


def _constant_trainer(accuracy_of):
    trained: list[NetworkSpec] = []

    def trainer(spec, data, settings, on_epoch=None):
        trained.append(spec)
        accuracy = accuracy_of(spec)
        for epoch in range(1, settings.epochs + 1):
            if on_epoch is not None:
                on_epoch(epoch, EpochMetrics(epoch, 1.0, accuracy, accuracy, 0.1, 0.0))
        cost = count_cost(spec)
        return TrainResult(accuracy, accuracy, 1.0, settings.epochs, 0.01, 1000.0, cost.macs, cost.params,
                           spec.resolution, "fake", 1)

    trainer.trained = trained  # type: ignore[attr-defined]
    return trainer


def _stage_one(tmp_path, trainer, baseline="challenge"):
    config = load_study_config("smoke", {"search": {"baseline": baseline, "trials": 3, "pruner": "none"}}, "s1",
                               f"sqlite:///{tmp_path}/s1.db")
    prepared = runner.prepare(config)
    return prepared, runner.search_baseline(prepared.derive(trainer=trainer, progress=False))


def test_stage_one_trains_the_deployment_network_first_and_keeps_it_against_equals(tmp_path):
    trainer = _constant_trainer(lambda spec: 0.5)
    prepared, (baseline, info) = _stage_one(tmp_path, trainer)
    assert len(trainer.trained) == 3 and trainer.trained[0] == to_proxy(prepared.network, prepared.transform)
    # every sampled candidate has at most equal accuracy; a smaller one has the higher reward, within the noise
    assert baseline == prepared.network and info["trial"] == 0 and info["challenge"]["kept"]


def test_a_much_better_candidate_replaces_the_deployment_network(tmp_path):
    def accuracy(spec):
        return 0.2 if spec.stages == to_proxy(network, transform).stages else 0.9

    prepared = runner.prepare(load_study_config("smoke", {"search": {"trials": 3, "pruner": "none"}}, "s1",
                                                f"sqlite:///{tmp_path}/probe.db"))
    network, transform = prepared.network, prepared.transform
    _, (baseline, info) = _stage_one(tmp_path, _constant_trainer(accuracy))
    assert baseline != network and info["trial"] > 0 and not info["challenge"]["kept"]


def test_search_takes_the_best_reward_and_never_trains_the_incumbent_on_purpose(tmp_path):
    trainer = _constant_trainer(lambda spec: 0.5)
    prepared, (baseline, info) = _stage_one(tmp_path, trainer, baseline="search")
    assert "challenge" not in info and baseline != prepared.network  # equal accuracy: the cheapest sample wins


def test_a_kept_deployment_network_is_named_as_such_by_the_budget_and_the_lines(tmp_path):
    import json

    from scaling_search.cli.study import describe_baseline, describe_budget
    from scaling_search.network.budget import parse_budget

    config = load_study_config("smoke", {"search": {"trials": 2, "pruner": "none"}}, "kept",
                               f"sqlite:///{tmp_path}/kept.db")
    result = runner.run(config, parse_budget("2x"), output=tmp_path / "reports",
                        trainer=_constant_trainer(lambda spec: 0.5), progress=False)
    assert result.baseline == runner.prepare(config).network and result.baseline_info["challenge"]["kept"]
    budgeted = next(json.loads(p.read_text()) for p in result.exported if json.loads(p.read_text())["budget"])
    reference = budgeted["budget"]["reference"]
    assert reference["network"] == "the deployment network b0, kept by stage 1" and not reference["searched"]
    assert "the deployment network, kept: no searched candidate" in describe_baseline(result.baseline_info)
    assert "2x of the deployment network, kept by stage 1 (trial 0)" in describe_budget(parse_budget("2x"),
                                                                                      result.baseline_info)


def _challenged(tmp_path, top_rung_accuracy):
    """Stage 1 under a one-rung ladder where every searched candidate scores 0.9 against the deployment network's
    0.2 in stage 1's regime (1 epoch), and ``top_rung_accuracy(is_incumbent)`` at the top rung (2 epochs)."""
    config = load_study_config("smoke", {"search": {"trials": 3, "pruner": "none", "rungs": [{"epochs": 2}]}},
                               "s1", f"sqlite:///{tmp_path}/s1.db")
    prepared = runner.prepare(config)
    incumbent_stages = to_proxy(prepared.network, prepared.transform).stages

    def accuracy(spec, epochs):
        is_incumbent = spec.stages == incumbent_stages
        return (0.2 if is_incumbent else 0.9) if epochs == 1 else top_rung_accuracy(is_incumbent)

    trained = []

    def trainer(spec, data, settings, on_epoch=None):
        trained.append(settings.epochs)
        value = accuracy(spec, settings.epochs)
        cost = count_cost(spec)
        return TrainResult(value, value, 1.0, settings.epochs, 0.01, 1000.0, cost.macs, cost.params,
                           spec.resolution, "fake", 1)

    baseline, info = runner.search_baseline(prepared.derive(trainer=trainer, progress=False))
    return prepared, baseline, info, trained


def test_a_challenger_that_does_not_win_again_at_the_top_rung_leaves_the_deployment_network(tmp_path):
    prepared, baseline, info, trained = _challenged(tmp_path, lambda is_incumbent: 0.5)
    challenge = info["challenge"]
    assert baseline == prepared.network and challenge["kept"] and "not at the top rung" in challenge["why"]
    assert trained == [1, 1, 1, 2, 2]  # stage 1's three trials, then the incumbent and the challenger again
    assert challenge["confirmed"]["stage"] == "baseline-confirm-e2-r32-w0.25-s1"
    assert challenge["challenger_reward"] > challenge["incumbent_reward"] + challenge["margin"]
    study = optuna.load_study(study_name="s1:baseline-confirm-e2-r32-w0.25-s1", storage=prepared.config.storage)
    assert sorted(t.user_attrs["role"] for t in study.trials) == ["challenger", "incumbent"]
    again = runner.search_baseline(prepared.derive(trainer=lambda *a, **k: pytest.fail("trained again"),
                                                   progress=False))
    assert again[0] == baseline and again[1]["challenge"] == challenge  # a rerun reads both stages back


def test_a_challenger_that_wins_again_at_the_top_rung_replaces_the_deployment_network(tmp_path):
    prepared, baseline, info, trained = _challenged(tmp_path, lambda is_incumbent: 0.2 if is_incumbent else 0.9)
    challenge = info["challenge"]
    assert baseline != prepared.network and not challenge["kept"] and "again at the top rung" in challenge["why"]
    assert info["trial"] == challenge["challenger"] and trained.count(2) == 2


def test_a_deployment_network_whose_top_rung_training_diverged_cannot_defend_itself(tmp_path):
    from scaling_search.errors import NonFiniteLossError

    def diverging(is_incumbent):
        if is_incumbent:
            raise NonFiniteLossError(1, 2, float("nan"))
        return 0.5

    prepared, baseline, info, _ = _challenged(tmp_path, diverging)
    confirmed = info["challenge"]["confirmed"]
    assert baseline != prepared.network and confirmed["incumbent_reward"] == 0.0 and not info["challenge"]["kept"]
