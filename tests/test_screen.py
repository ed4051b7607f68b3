"""Stage 1's screen: the NASWOT score, the screen's determinism and band, and the trials it feeds (fake trainer)."""

import math

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from torch import nn

from scaling_search.cli.study import describe_baseline as _describe_baseline
from scaling_search.network.cost import count_cost
from scaling_search.errors import NonFiniteLossError, UserError
from scaling_search.report import build_report
from scaling_search.search import runner
from scaling_search.search.baseline import fixed_sampler
from scaling_search.settings.study import load_study_config
from scaling_search.search.screen import ATTR, run_screen, sample_candidates
from scaling_search.search.space import suggest_spec
from scaling_search.network.spec import NetworkSpec
from scaling_search.network.zero_cost import naswot_score

from test_search_runner import fake_trainer, TRAINED


def test_naswot_is_the_log_determinant_of_the_agreement_kernel_computed_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.SiLU(), nn.Conv2d(4, 2, 1), nn.SiLU())
    images = torch.randn(6, 3, 5, 5)
    with torch.no_grad():
        first = model[0](images)
        second = model[2](model[1](first))
    codes = np.concatenate([(first > 0).reshape(6, -1).numpy(), (second > 0).reshape(6, -1).numpy()], axis=1)
    codes = codes.astype(float)
    kernel = codes @ codes.T + (1 - codes) @ (1 - codes).T  # units on which images i and j agree
    assert np.all(np.diag(kernel) == codes.shape[1])
    model.eval()
    assert naswot_score(model, images) == pytest.approx(np.linalg.slogdet(kernel)[1], rel=1e-12)
    assert not model.training  # the mode the caller left it in
    assert all(not m._forward_pre_hooks for m in model.modules())  # no hook left behind


def test_naswot_of_indistinguishable_images_is_minus_infinity():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SiLU())
    assert naswot_score(model, torch.ones(4, 3, 5, 5)) == -math.inf
    with pytest.raises(ValueError, match="no SiLU"):
        naswot_score(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), torch.randn(4, 3, 5, 5))


def _prepared(tmp_path, **search):
    config = load_study_config("smoke", {"search": {"pruner": "none", **search}}, "screened",
                               f"sqlite:///{tmp_path}/screen.db")
    return runner.prepare(config)


def test_the_screen_is_deterministic_banded_and_ranked(tmp_path):
    prepared = _prepared(tmp_path)
    target = count_cost(prepared.network).macs
    kwargs = dict(count=40, band=0.2, batch=16, seed=3, target_macs=target)
    first = run_screen(prepared.network, prepared.transform, prepared.data, **kwargs)
    again = run_screen(prepared.network, prepared.transform, prepared.data, **kwargs)
    assert [(r["index"], r["score"]) for r in first["rows"]] == [(r["index"], r["score"]) for r in again["rows"]]
    samples = sample_candidates(prepared.network, 40, 3)
    in_band = [i for i, (_, spec) in enumerate(samples) if abs(count_cost(spec).macs / target - 1) <= 0.2]
    assert sorted(r["index"] for r in first["rows"]) == in_band and 0 < len(in_band) < 40
    scores = [r["score"] for r in first["rows"]]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 1  # architectures score differently
    for row in first["rows"]:  # the stored params rebuild the sampled network through the stage-1 space
        trial = optuna.create_study(sampler=fixed_sampler(row["params"], optuna.samplers.RandomSampler())).ask()
        assert suggest_spec(trial, prepared.network) == samples[row["index"]][1]


def _screened_stage_one(tmp_path, baseline):
    """Stage 1 of three trials after a screen of 30 candidates, with the fake trainer: the context, its answer, the
    stage's study, the screen's rows (best-scored first) and the trials in order."""
    prepared = _prepared(tmp_path, baseline=baseline, trials=3, screen=30, screen_band=0.3, screen_batch=16)
    TRAINED.clear()
    found = runner.search_baseline(prepared.derive(trainer=fake_trainer, progress=False))
    study = optuna.load_study(study_name="screened:baseline", storage=prepared.config.storage)
    return prepared, found, study, study.user_attrs[ATTR]["rows"], sorted(study.get_trials(), key=lambda t: t.number)


def test_stage_one_trains_the_best_scored_candidates_in_order_and_reuses_its_screen(tmp_path):
    prepared, (baseline, info), study, rows, trials = _screened_stage_one(tmp_path, "search")
    assert [t.params for t in trials] == [rows[k]["params"] for k in range(3)]
    assert len(TRAINED) == 3 and info["screen"]["trained"] == 3 and info["screen"]["sampled"] == 30
    assert info["screen"]["in_band"] == len(rows) and NetworkSpec.from_dict(trials[0].user_attrs["spec"]) != \
        NetworkSpec.from_dict(trials[1].user_attrs["spec"])
    best = max(trials, key=lambda t: t.value)
    assert baseline == NetworkSpec.from_dict(best.user_attrs["spec"])
    line = _describe_baseline(info)  # what run prints
    assert f"stage 1 trial {best.number}, reward {best.value:.4f}" in line
    assert f"screened 30 candidates untrained (naswot score, {len(rows)} within 30% of the target's MACs" in line
    assert line.endswith("and trained the best 3")
    build_report("screened", prepared.config.storage, tmp_path / "reports")  # the screen, as the report shows it
    table = pd.read_csv(tmp_path / "reports" / "screened" / "baseline_screen.csv")
    assert list(table["rank"]) == list(range(1, len(rows) + 1)) and list(table["sample"]) == [r["index"] for r in rows]
    assert list(table["trial"].head(3)) == [0, 1, 2] and table["trial"].iloc[3:].isna().all()
    assert list(table["accuracy"].head(3)) == pytest.approx([t.user_attrs["accuracy"] for t in trials], abs=1e-6)
    page = (tmp_path / "reports" / "screened" / "index.html").read_text()
    assert "id='figure-baseline_screen'" in page and f"scored {len(rows)} candidates untrained" in page
    TRAINED.clear()  # a rerun trains nothing and computes no screen again
    study.set_user_attr(ATTR, {**study.user_attrs[ATTR], "seconds": -1.0})
    again, again_info = runner.search_baseline(prepared.derive(trainer=fake_trainer, progress=False))
    assert TRAINED == [] and again == baseline and again_info["screen"]["seconds"] == -1.0


def test_with_a_challenge_the_deployment_network_is_trained_first_then_the_best_scored(tmp_path):
    prepared, (_, info), _, rows, trials = _screened_stage_one(tmp_path, "challenge")
    assert NetworkSpec.from_dict(trials[0].user_attrs["spec"]) == prepared.network and trials[0].user_attrs["incumbent"]
    assert [t.params for t in trials[1:]] == [rows[0]["params"], rows[1]["params"]] and len(TRAINED) == 3
    assert info["screen"]["trained"] == 2 and _describe_baseline(info).count("trained the best 2") == 1


def test_a_diverged_trial_counts_and_the_next_trains_the_next_candidate(tmp_path):
    prepared = _prepared(tmp_path, baseline="search", trials=2, screen=30, screen_band=0.3, screen_batch=16)
    calls = []

    def diverging_first(spec, data, settings, on_epoch=None):
        calls.append(spec)
        if len(calls) == 1:
            raise NonFiniteLossError(1, 3, float("nan"))
        return fake_trainer(spec, data, settings, on_epoch)

    runner.search_baseline(prepared.derive(trainer=diverging_first, progress=False))
    study = optuna.load_study(study_name="screened:baseline", storage=prepared.config.storage)
    rows = study.user_attrs[ATTR]["rows"]
    trials = sorted(study.get_trials(), key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"] and len(calls) == 2
    assert [t.params for t in trials] == [rows[0]["params"], rows[1]["params"]]


def test_a_screen_that_keeps_nothing_is_refused_in_one_line(tmp_path):
    prepared = _prepared(tmp_path, trials=2, screen=2, screen_band=0.001, screen_batch=16)
    with pytest.raises(UserError, match="screen kept none of its 2 candidates.*raise screen or screen_band"):
        runner.search_baseline(prepared.derive(trainer=fake_trainer, progress=False))


def test_the_screen_enters_a_studys_fingerprint_only_when_on(tmp_path):
    off = load_study_config("smoke", {}, "s", "sqlite:///:memory:").result_settings()["search"]
    on = load_study_config("smoke", {"search": {"screen": 10}}, "s", "sqlite:///:memory:").result_settings()["search"]
    assert "screen" not in off and "screen_band" not in off  # studies made before the screen keep theirs
    assert on["screen"] == 10 and on["screen_band"] == 0.1 and on["screen_batch"] == 64
