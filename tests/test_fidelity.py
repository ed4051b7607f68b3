"""Proxy fidelity (scaling_search.search.fidelity) with trainers whose rankings are known, then the command."""

import dataclasses
import html
import json

import pytest

from scaling_search.network.budget import parse_budget
from scaling_search.errors import UserError
from scaling_search.report import build_report
from scaling_search.search import runner
from scaling_search.search.fidelity import Reference, describe_fidelity
from scaling_search.search.fidelity_points import FIDELITY_CANDIDATES, FIDELITY_SEEDS
from scaling_search.settings.study import load_study_config
from scaling_search.training import EpochMetrics, TrainResult



def _config(tmp_path, **train):
    overrides = {"search": {"baseline": "network", "pruner": "none"}, "train": train}
    return load_study_config("smoke", overrides, "fid", f"sqlite:///{tmp_path}/fid.db")


def ranked_result(score, spec, settings, on_epoch, wall_s):
    """A fake training whose accuracy is 0.5 + ``score`` after every epoch (reported to ``on_epoch``) and whose
    training loss falls as the score grows."""
    accuracy = 0.5 + score
    history = tuple(EpochMetrics(e, 2.0 - score, accuracy, accuracy, 0.1, 0.0) for e in range(1, settings.epochs + 1))
    for metrics in history:
        if on_epoch is not None:
            on_epoch(metrics.epoch, metrics)
    return TrainResult(accuracy, accuracy, 2.0 - score, settings.epochs, wall_s, 1000.0, 1, 1, spec.resolution,
                       "fake", 1, history)


def regime_trainer(reference_order: str, calls: list):
    """Accuracy grows with the proxy's resolution and width; a reference (more than one epoch) ranks the same
    way or the reverse. Training loss falls as accuracy grows."""
    def train(spec, data, settings, on_epoch=None):
        calls.append((spec.resolution, settings.epochs))
        score = spec.resolution / 1000 + spec.stages[-1].out_channels / 10_000
        if settings.epochs > 1 and reference_order == "reversed":
            score = -score
        return ranked_result(score, spec, settings, on_epoch, 0.01 * settings.epochs)
    return train


@pytest.mark.parametrize("order, tau", [("same", 1.0), ("reversed", -1.0)])
def test_the_proxys_ranking_is_scored_against_the_reference(tmp_path, order, tau):
    calls: list = []
    result = runner.fidelity(_config(tmp_path), Reference(epochs=3), output=tmp_path / "reports",
                             trainer=regime_trainer(order, calls), progress=False)
    points = len(result.candidates)
    assert points >= FIDELITY_CANDIDATES and result.left_out == 0  # the grid's points and drawn ones
    trained = sorted(epochs for _, epochs in calls)
    # the grid once (one seed), then every candidate under two seeds in each regime
    assert trained.count(3) == FIDELITY_SEEDS * points and trained.count(1) - FIDELITY_SEEDS * points in range(3, 13)
    assert result.proxy["seeds"] == result.reference["seeds"] == FIDELITY_SEEDS
    for signal in ("proxy accuracy", "proxy final training loss", "proxy summed training loss"):
        assert result.signals[signal].kendall_tau == pytest.approx(tau), signal
    assert result.signals["proxy accuracy"].top1_agrees is (order == "same")
    assert result.reference["epochs"] == 3 * result.proxy["epochs"]
    assert result.cost_ratio == pytest.approx(1 / 3)  # the fake's wall time grows with the epochs
    stored = json.loads((tmp_path / "reports" / "fid" / "fidelity.json").read_text())
    assert stored["signals"]["proxy accuracy"]["kendall_tau"] == pytest.approx(tau)
    assert f"Kendall tau {tau:+.2f}" in describe_fidelity(result)
    index = build_report("fid", f"sqlite:///{tmp_path}/fid.db", tmp_path / "reports")  # from the storage alone
    page = html.unescape(index.read_text())
    section = page[page.index("Proxy fidelity: the grid's ranking against a longer regime"):]
    assert f"proxy accuracy Kendall tau {tau:+.2f}" in " ".join(section.split()) and "not measured" not in page


def test_early_epoch_accuracy_is_scored_as_the_proxy_a_shorter_training_would_be(tmp_path, few_fidelity_candidates):
    """A 2-epoch proxy whose first epoch ranks the candidates backwards: early-epoch accuracy scores -1 while
    the final accuracy scores +1 against the 6-epoch reference."""
    same = regime_trainer("same", [])

    def train(spec, data, settings, on_epoch=None):
        result = same(spec, data, settings)
        if settings.epochs == 2:  # the proxy: epoch 1 ranks in reverse of epoch 2
            first = result.history[0]
            early = EpochMetrics(1, first.train_loss, 1.0 - result.val_top1, 1.0 - result.val_top1, 0.1, 0.0)
            result = dataclasses.replace(result, history=(early, result.history[1]))
        for metrics in result.history:
            if on_epoch is not None:
                on_epoch(metrics.epoch, metrics)
        return result

    result = runner.fidelity(_config(tmp_path, epochs=2), Reference(epochs=3), output=tmp_path / "reports",
                             trainer=train, progress=False)
    assert result.signals["proxy accuracy"].kendall_tau == pytest.approx(1.0)
    assert result.signals["proxy accuracy after epoch 1"].kendall_tau == pytest.approx(-1.0)
    assert "proxy accuracy after epoch 2" not in result.signals  # the last epoch is the proxy itself
    assert "proxy accuracy after epoch 1" in describe_fidelity(result)


def test_fidelity_reuses_the_runs_grid_and_its_own_reference(tmp_path, few_fidelity_candidates):
    calls: list = []
    trainer = regime_trainer("same", calls)
    runner.run(_config(tmp_path), parse_budget("2x"), output=tmp_path / "reports", trainer=trainer, progress=False)
    trained_by_run = len(calls)
    first = runner.fidelity(_config(tmp_path), Reference(epochs=3), output=tmp_path / "reports", trainer=trainer,
                            progress=False)
    n = len(first.candidates)
    # the run's grid is reused: fidelity trains its candidates under two seeds in each regime, nothing else
    assert sorted(epochs for _, epochs in calls[trained_by_run:]) == [1] * (2 * n) + [3] * (2 * n)
    again = runner.fidelity(_config(tmp_path), Reference(epochs=3), output=tmp_path / "reports", trainer=trainer,
                            progress=False)
    assert len(calls) == trained_by_run + 4 * n and again.to_dict() == first.to_dict()
    wider = runner.fidelity(_config(tmp_path), Reference(epochs=1, resolution=64), output=tmp_path / "reports",
                            trainer=trainer, progress=False)  # another regime is another stage of the study
    assert wider.reference["proxy_resolution"] == 64 and wider.reference["epochs"] == 1
    assert all(resolution > 32 for resolution, epochs in calls[-2 * len(wider.candidates):])
    runner.export(_config(tmp_path), parse_budget("2x"), output=tmp_path / "reports")
    evidence = json.loads((tmp_path / "reports" / "fid" / "model-phi1.json").read_text())["evidence"]
    measured = [(f["reference"]["epochs"], f["kendall_tau"]) for f in evidence["proxy_fidelity"]]
    # at 64 px the fake's resolution rounding ties and unties a few candidates the 32-px proxy ranks: tau near 1
    assert [epochs for epochs, _ in measured] == [1, 3] and measured[0][1] > 0.9 and measured[1][1] == 1.0
    page = html.unescape(build_report("fid", f"sqlite:///{tmp_path}/fid.db", tmp_path / "reports").read_text())
    answer = page[page.index("id='confidence'"):]  # the answer names each measured regime
    assert f"Proxy fidelity against 3 epoch(s) at 32 px, width x0.25 over {len(first.candidates)} candidates: " \
           "Kendall tau +1.00" in answer
    assert "Proxy fidelity against 1 epoch(s) at 64 px" in answer


@pytest.mark.parametrize("reference, message", [
    (Reference(epochs=1), "the reference regime equals the proxy"),
    (Reference(epochs=2, resolution=300), "reference regime: .* exceeds the deployment resolution"),
])
def test_an_impossible_reference_is_refused_before_anything_trains(tmp_path, reference, message):
    calls: list = []
    with pytest.raises(UserError, match=message):
        runner.fidelity(_config(tmp_path), reference, output=tmp_path / "reports",
                        trainer=regime_trainer("same", calls), progress=False)
    assert calls == []


@pytest.mark.parametrize("flags, message", [({"epochs": 0}, "--reference-epochs"),
                                            ({"width": 1.5}, "--reference-width"),
                                            ({"resolution": 0}, "--reference-resolution")])
def test_a_bad_reference_flag_is_named(flags, message):
    with pytest.raises(UserError, match=message):
        Reference(**flags)


@pytest.mark.slow
def test_fidelity_command_on_the_smoke_preset_prints_json(smoke_fidelity):
    """The issue's smoke test: after the session's smoke run, the fidelity candidates train in both regimes
    (real training), and the smoke run's grid is reused."""
    folder, stdout = smoke_fidelity
    out = json.loads(stdout)
    accuracy = out["signals"]["proxy accuracy"]
    assert out["reference"]["epochs"] == 2 * out["proxy"]["epochs"] and out["cost"]["ratio"] > 0
    if accuracy["kendall_tau"] is None:  # the smoke preset trains at chance: the reference ranks nothing
        assert len({c["reference_accuracy"] for c in out["candidates"]}) == 1
    else:
        low, high = accuracy["kendall_interval"]  # redrawn from each candidate's noise: it need not hold tau
        assert -1 <= low <= high <= 1 and 0 <= accuracy["p_value"] <= 1 and len(out["candidates"]) >= 16
    assert json.loads((folder / "reports" / "smoke-synthetic" / "fidelity.json").read_text()) == out


def test_an_extra_worker_trains_the_reference_stage(tmp_path, few_fidelity_candidates, monkeypatch):
    """What a --workers process runs (pool._serve: the stage's job on a context rebuilt from its recipe, received
    from its parent), here in this process before the parent's own loop: it trains every reference point. (It used
    to check stages 1 and 2 against the reference's settings and die.)"""
    import signal

    from scaling_search.search import pool

    calls: list = []

    class Parent:  # the pipe's far end, without pickling (the test's trainer is a local function)
        def __init__(self, *tasks):
            self.tasks, self.answers = list(tasks), []

        def recv(self):
            return self.tasks.pop(0)

        def send(self, answer):
            self.answers.append(answer)

    def worker_first(ctx, job):
        if job.args[0].startswith("fidelity"):
            previous = signal.getsignal(signal.SIGTERM)
            parent = Parent((ctx.recipe(), job), None)  # one stage, then stop, as the pool asks an idle worker to
            try:
                pool._serve(parent)
            finally:
                signal.signal(signal.SIGTERM, previous)
            assert parent.answers == [True]  # the worker answered: its stage is done
        return job(ctx)

    monkeypatch.setattr(runner, "with_workers", worker_first)
    result = runner.fidelity(_config(tmp_path), Reference(epochs=3), output=tmp_path / "reports",
                             trainer=regime_trainer("same", calls), progress=False)
    assert [epochs for _, epochs in calls].count(3) == FIDELITY_SEEDS * len(result.candidates)
    assert result.signals["proxy accuracy"].kendall_tau == pytest.approx(1.0)


def test_a_one_seed_trial_from_before_curves_were_recorded_reads_its_epochs_from_optuna():
    import optuna

    from scaling_search.search.fidelity import accuracy_curve

    def trial(attrs, reported):
        return optuna.trial.create_trial(value=0.5, user_attrs=attrs, intermediate_values=reported)

    assert accuracy_curve(trial({"accuracy_by_epoch": [0.2, 0.4]}, {1: 0.9, 2: 0.9})) == [0.2, 0.4]
    assert accuracy_curve(trial({"accuracy_per_seed": [0.4]}, {1: 0.2, 2: 0.4})) == [0.2, 0.4]
    # two seeds: Optuna holds only the first seed's epochs, not the mean, so there is no curve
    assert accuracy_curve(trial({"accuracy_per_seed": [0.4, 0.5]}, {1: 0.2, 2: 0.4})) is None
    assert accuracy_curve(trial({"accuracy_per_seed": [0.4]}, {2: 0.4})) is None  # epochs missing
