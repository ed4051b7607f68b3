"""fidelity --candidates: several proxies scored against one reference, the cheapest faithful one as a preset."""

import dataclasses
import html
import json
import re
import tomllib

import pytest

from scaling_search.errors import UserError
from scaling_search.report import build_report
from scaling_search.search import runner
from scaling_search.settings.study import load_study_config
from scaling_search.search.fidelity import Reference
from scaling_search.search.fidelity_points import FIDELITY_SEEDS
from scaling_search.search.proxy_candidates import CandidateRegime, describe_recommendation

from smoke_run import SMOKE_FIDELITY, cli_in_process
from test_fidelity import ranked_result


def result_grid_points(config):
    import optuna

    return optuna.load_study(study_name=f"{config.name}:grid", storage=config.storage).user_attrs["points"]


def _config(tmp_path):
    overrides = {"search": {"baseline": "network", "pruner": "none"}}
    return load_study_config("smoke", overrides, "prox", f"sqlite:///{tmp_path}/prox.db")


def regime_trainer(calls: list, reverse_reference: bool = False):
    """Accuracy grows with the proxy's resolution and last-stage width. Proxies with a head under 240 channels
    (width 0.125 of B0's 1280, whatever the grid's beta <= 1.42) rank the candidates backwards (a cheap proxy
    that lies); the reference (3 epochs) ranks them backwards too with ``reverse_reference``. Wall time grows
    with epochs, pixels and stem width."""
    def train(spec, data, settings, on_epoch=None):
        calls.append((spec.resolution, spec.stem_channels, settings.epochs))
        score = spec.resolution / 1000 + spec.stages[-1].out_channels / 10_000
        if spec.head_channels < 240 or (reverse_reference and settings.epochs == 3):
            score = -score
        wall = settings.epochs * spec.resolution**2 * spec.stem_channels * 1e-6
        return ranked_result(score, spec, settings, on_epoch, wall)
    return train


@pytest.mark.parametrize(("text", "regime"), [
    ("epochs=1", CandidateRegime(epochs=1)),
    ("resolution=32,width=0.25", CandidateRegime(resolution=32, width=0.25)),
    ("data=0.5", CandidateRegime(data=0.5)),
    (" epochs=2 , width=0.5 ", CandidateRegime(epochs=2, width=0.5)),
])
def test_a_regime_is_read_from_key_value_pairs(text, regime):
    assert CandidateRegime.parse(text) == regime


@pytest.mark.parametrize(("text", "message"), [
    ("depth=0.5", "keys epochs, resolution, width, data, images"),
    ("epochs", "keys epochs, resolution, width, data, images"),
    ("epochs=two", "epochs must be a whole number, got 'two'"),
    ("width=wide", "width must be a number"),
    (",", "changes nothing"),
])
def test_a_bad_regime_is_one_clear_error(text, message):
    with pytest.raises(UserError, match=message):
        CandidateRegime.parse(text)


def test_the_cheapest_proxy_that_ranks_like_the_reference_is_recommended_and_written_as_a_preset(tmp_path, few_fidelity_candidates):
    calls: list = []
    config = _config(tmp_path)
    candidates = [CandidateRegime(width=0.125), CandidateRegime(width=0.2)]
    result = runner.compare_proxies(config, Reference(epochs=3), candidates, output=tmp_path / "reports",
                                    trainer=regime_trainer(calls), progress=False)
    own, lying, narrow = result.scored
    points = len(own.candidates)
    assert points >= 3 and len(lying.candidates) == len(narrow.candidates) == points
    # the drawn candidates' narrowest proxies round some widths together: taus within a few ties of +-1
    assert [s.signals["proxy accuracy"].kendall_tau for s in result.scored] == pytest.approx([1.0, -1.0, 1.0], abs=0.05)
    assert lying.proxy["proxy_width"] == 0.125 and narrow.proxy["proxy_width"] == 0.2
    assert lying.cost_ratio < narrow.cost_ratio < own.cost_ratio  # narrower stems train faster on the fake's clock
    assert result.chosen == 2 and "recommended: 1 epoch(s) at 32 px, width x0.2" in describe_recommendation(result)
    grid = len(result_grid_points(config))
    assert len(calls) == grid + 4 * FIDELITY_SEEDS * points  # the grid, then proxy, reference and two candidates
    folder = tmp_path / "reports" / "prox"
    stored = json.loads((folder / "proxies.json").read_text())
    assert stored["chosen"] == 2 and stored["proxies"][1]["signals"]["proxy accuracy"]["kendall_tau"] < -0.95
    text = (folder / "recommended-proxy.toml").read_text()
    assert text.startswith("# Proxy chosen by 'scaling-search fidelity --candidates' for study 'prox': the cheapest")
    preset = tomllib.loads(text)
    assert preset["proxy"]["width"] == 0.2 and preset["proxy"]["resolution"] == config.proxy.resolution
    assert preset["train"]["epochs"] == config.train.epochs and preset["search"]["baseline"] == "network"
    reread = load_study_config(str(folder / "recommended-proxy.toml"), {}, "again", "sqlite:///:memory:")
    assert reread.proxy.width == 0.2 and reread.train == config.train and reread.data == config.data
    page = html.unescape(build_report("prox", config.storage, tmp_path / "reports").read_text())  # storage alone
    section = " ".join(page[page.index("Candidate proxies against the reference"):].split())
    assert re.search(r"width x0.125 Kendall tau -(0.9|1.00)", section) and "recommended: 1 epoch(s) at 32 px, width x0.2" in section
    calls.clear()  # a rerun reads every stage back: nothing is trained again
    again = runner.compare_proxies(config, Reference(epochs=3), candidates, output=tmp_path / "reports",
                                   trainer=regime_trainer(calls), progress=False)
    assert calls == [] and again.chosen == 2


def test_no_proxy_reaching_the_target_is_reported_as_the_best_found_not_recommended(tmp_path, few_fidelity_candidates):
    result = runner.compare_proxies(_config(tmp_path), Reference(epochs=3), [CandidateRegime(width=0.2)],
                                    output=tmp_path / "reports", progress=False,
                                    trainer=regime_trainer([], reverse_reference=True))
    assert [s.signals["proxy accuracy"].kendall_tau for s in result.scored] == pytest.approx([-1.0, -1.0], abs=0.05)
    assert result.chosen is None and result.best == 1  # equal taus: the cheaper
    assert "no proxy reaches tau >= 0.8; the best found is 1 epoch(s) at 32 px, width x0.2" in \
        describe_recommendation(result)
    text = (tmp_path / "reports" / "prox" / "recommended-proxy.toml").read_text()
    assert "NOT a recommendation: no compared proxy reached tau >= 0.8" in text
    assert tomllib.loads(text)["proxy"]["width"] == 0.2


@pytest.mark.slow
def test_the_command_compares_candidates_on_the_smoke_preset(tmp_path, smoke_fidelity):
    """After the smoke run and its fidelity (whose two stages it reuses), one candidate regime trains and is
    scored beside the study's proxy."""
    import shutil

    shutil.copytree(smoke_fidelity[0], tmp_path, dirs_exist_ok=True)
    out = cli_in_process(tmp_path, "fidelity", *SMOKE_FIDELITY, "--candidates", "width=0.125", "--format", "json")
    body = json.loads(out)
    assert set(body) == {"fidelity", "proxies"} and len(body["proxies"]["proxies"]) == 2
    assert body["proxies"]["proxies"][1]["regime"]["proxy_width"] == 0.125
    assert (tmp_path / "reports" / "smoke-synthetic" / "recommended-proxy.toml").exists()


def test_a_proxy_of_less_data_trains_on_a_share_of_the_training_images_and_the_whole_validation_split(tmp_path, few_fidelity_candidates):
    seen = []

    def trainer(spec, data, settings, on_epoch=None):
        seen.append((len(data.train_labels), len(data.val_labels), data.name))
        result = regime_trainer([])(spec, data, settings, on_epoch)
        return dataclasses.replace(result, wall_s=result.wall_s * len(data.train_labels))  # time grows with images

    config = _config(tmp_path)
    full = config.data.load()
    result = runner.compare_proxies(config, Reference(epochs=3), [CandidateRegime(data=0.5)],
                                    output=tmp_path / "reports", trainer=trainer, progress=False)
    points = len(result.scored[0].candidates)
    half = [entry for entry in seen if "[train x0.5]" in entry[2]]
    grid = len(result_grid_points(config))
    assert len(half) == FIDELITY_SEEDS * points  # the grid, then proxy, reference and the candidate, two seeds each
    assert len(seen) == grid + 3 * FIDELITY_SEEDS * points
    counts = full.train_labels.bincount()
    assert {n for n, _, _ in half} == {round(len(full.train_labels) / 2) // len(counts) * len(counts)}
    assert {v for _, v, _ in seen} == {len(full.val_labels)}  # every regime is scored on the same images
    assert result.scored[1].proxy["train_share"] == 0.5
    assert result.scored[1].cost_ratio == pytest.approx(result.scored[0].cost_ratio / 2, rel=0.02)
    assert result.chosen == 1 and "recommended: 1 epoch(s) at 32 px, width x0.25, x0.5 of the training images" in \
        describe_recommendation(result)
    preset = tomllib.loads((tmp_path / "reports" / "prox" / "recommended-proxy.toml").read_text())
    assert preset["data"]["train_share"] == 0.5
    for wrong, message in ((CandidateRegime(data=1.5), "train_share must be in"),
                           (CandidateRegime(data=0.0), "train_share must be in"),
                           (CandidateRegime(width=0.0), r"width must be in \(0, 1\]"),
                           (CandidateRegime(epochs=0), "epochs must be >= 1")):
        with pytest.raises(UserError, match=message):  # a zero is refused, never read as "unchanged"
            wrong.config(config)
