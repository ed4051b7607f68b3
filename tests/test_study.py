import json
import re

import pytest

from scaling_search.settings.presets import PRESETS, load_toml
from scaling_search.settings.study import load_study_config


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_loads_and_validates(preset):
    config = load_study_config(preset, {}, None, None)
    assert config.name == f"{preset}-synthetic"
    assert config.storage == f"sqlite:///studies/{preset}-synthetic.db"
    assert config.train.epochs >= 1 and config.search.trials >= 1


def test_cli_overrides_win_and_none_is_ignored():
    config = load_study_config("quick", {"train": {"epochs": 7, "lr": None}, "search": {"grid_tol": 0.2}},
                               "mine", "sqlite:///x.db")
    assert (config.train.epochs, config.train.lr, config.search.grid_tol) == (7, 0.003, 0.2)
    assert (config.name, config.storage) == ("mine", "sqlite:///x.db")


def test_config_is_frozen_and_written(tmp_path):
    config = load_study_config("smoke", {}, None, None)
    with pytest.raises(AttributeError):
        config.name = "x"  # type: ignore[misc]
    path = config.write(tmp_path / "out")
    assert json.loads(path.read_text())["search"]["trials"] == config.search.trials


def test_fingerprint_ignores_threads_and_workers_but_not_epochs():
    base = load_study_config("quick", {}, None, None).result_settings()
    threads = load_study_config("quick", {"train": {"threads": 1}, "search": {"workers": 1}}, None, None)
    epochs = load_study_config("quick", {"train": {"epochs": 9}}, None, None)
    assert threads.result_settings() == base
    assert epochs.result_settings() != base


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[train]\nepoch = 3\n", "unknown key(s) in [train]: epoch"),
        ("[search]\npruner = 'magic'\n", "pruner must be one of"),
        ("[proxy]\nwidth = 2.0\n", "[proxy] width must be in (0, 1]"),
        ("[proxy]\nresolution = 40.5\n", "[proxy] resolution must be a whole number"),
        ("[deployment]\ndepth_rounding = 'up'\n", "depth_rounding must be one of ceil, nearest"),
        ("[deployment]\nresolution = -1\n", "[deployment] resolution must be a whole number >= 0"),
        ("[colour]\nx = 1\n", "unknown table(s) colour"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_bad_study_files(tmp_path, text, message):
    path = tmp_path / "study.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_study_config(str(path), {}, None, None)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'turbo'"):
        load_toml("turbo")


def test_bad_study_name():
    with pytest.raises(ValueError, match="study name"):
        load_study_config("smoke", {}, "has space", None)


def test_example_study_file_loads():
    from pathlib import Path

    example = Path(__file__).parents[1] / "studies" / "example-cifar10.toml"
    config = load_study_config(str(example), {}, None, None)
    assert config.data.subset == 5000
    assert config.deployment.network_spec().resolution == 224


def test_deployment_network_and_proxy_transform():
    config = load_study_config("quick", {"deployment": {"resolution": 300}}, None, None)
    network = config.deployment_network(num_classes=10, channels=3)
    assert (network.resolution, network.num_classes) == (300, 10)
    transform = config.proxy_transform(network)
    assert transform.resolution_factor == pytest.approx(40 / 300)
    with pytest.raises(ValueError, match="below the network's total stride"):
        load_study_config("quick", {"proxy": {"resolution": 16}}, None, None).proxy_transform(network)
    with pytest.raises(ValueError, match="exceeds the deployment resolution"):
        load_study_config("quick", {"deployment": {"resolution": 32}}, None, None).proxy_transform(
            load_study_config("quick", {"deployment": {"resolution": 32}}, None, None).deployment.network_spec())


def test_fingerprint_covers_the_deployment_scale():
    base = load_study_config("quick", {}, None, None).result_settings()
    other = load_study_config("quick", {"deployment": {"resolution": 256}}, None, None).result_settings()
    assert base["deployment"]["resolution"] == 224 and other != base


def test_workers_auto_takes_the_machines_measured_plan_once_and_records_it(tmp_path, monkeypatch):
    """The plan is measured on first use (here by a fake measurement), cached for the machine and the proxy,
    and recorded in study.json; a study's settings fingerprint does not change with it."""
    import json
    from dataclasses import replace

    from scaling_search.network.proxy import to_proxy
    from scaling_search.search import runner
    from scaling_search.training import plan

    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(tmp_path / "cache"))
    measured = []

    def fake_measure(spec, batch_size, plans):
        measured.append((spec.resolution, batch_size, plans))
        return {f"{w}x{t}": [100.0 * w if w <= 2 else 50.0] * 3 for w, t in plans}  # two workers is best

    monkeypatch.setattr(plan, "measure_plans", fake_measure)
    monkeypatch.setattr("scaling_search.training.resources.default_threads", lambda: 4)
    config = load_study_config("smoke", {"search": {"workers": "auto"}}, "auto", f"sqlite:///{tmp_path}/auto.db")
    config = replace(config, train=replace(config.train, threads=None))  # the smoke preset sets 1 thread
    prepared = runner.prepare(config)
    resolved = prepared.config
    assert resolved.search.workers == 2 and resolved.train.threads == 2  # 4 cores: 2 workers x 2 threads
    assert measured == [(to_proxy(prepared.network, prepared.transform).resolution, config.train.batch_size,
                         [(1, 4), (2, 2), (4, 1)])]
    assert resolved.result_settings() == config.result_settings()  # the plan never changes a study's identity
    assert runner.prepare(config).config == resolved and len(measured) == 1  # cached: measured once
    body = json.loads(resolved.write(tmp_path / "report").read_text())
    assert body["search"]["workers"] == 2 and body["execution_plan"]["measured"] == {"1x4": 100.0, "2x2": 200.0,
                                                                                        "4x1": 50.0}
    # a given thread count is kept; data-parallel processes take the cores themselves: one worker, nothing measured
    assert runner.prepare(replace(config, train=replace(config.train, threads=1))).config.train.threads == 1
    parallel = replace(config, train=replace(config.train, processes=2, threads=None))
    assert runner.prepare(parallel).config.search.workers == 1 and len(measured) == 1


def test_the_plan_measurement_runs_each_split_of_the_cores_side_by_side():
    from dataclasses import replace

    from scaling_search.network.family import EFFICIENTNET_B0
    from scaling_search.network.scaling import scale
    from scaling_search.training.plan import measure_plans

    tiny = replace(scale(EFFICIENTNET_B0, width=0.25, depth=0.34), resolution=16, num_classes=4)
    rates = measure_plans(tiny, 8, [(1, 1), (2, 1)], steps=2, rounds=1)
    assert set(rates) == {"1x1", "2x1"} and all(len(r) == 1 and r[0] > 0 for r in rates.values())


def _plan_call(tmp_path, rounds_per_call, load=0.0, monkeypatch=None):
    """machine_plan with a fake probe answering ``rounds_per_call`` in turn; returns the plan and the calls."""
    from scaling_search.network.family import EFFICIENTNET_B0
    from scaling_search.training import plan

    calls = []

    def fake(spec, batch_size, plans):
        calls.append(plans)
        return rounds_per_call[min(len(calls), len(rounds_per_call)) - 1]

    monkeypatch.setattr(plan, "load_average", lambda: load)
    return plan.machine_plan(EFFICIENTNET_B0, 64, cache_dir=tmp_path, measure=fake), calls


CLEAN = {"1x2": [600.0, 610.0, 605.0], "2x1": [900.0, 890.0, 910.0]}
NOISY = {"1x2": [600.0, 610.0, 605.0], "2x1": [300.0, 900.0, 910.0]}  # one round ran beside another job
IMPLAUSIBLE = {"1x2": [36.0, 35.0, 36.0], "2x1": [536.0, 530.0, 540.0]}


def test_a_noisy_plan_measurement_is_taken_again_and_not_cached_when_it_stays_noisy(tmp_path, monkeypatch):
    from scaling_search.training.plan import cache_file

    plan, calls = _plan_call(tmp_path, [NOISY, NOISY], monkeypatch=monkeypatch)
    assert len(calls) == 2 and "differed by" in plan.unsure and not cache_file(tmp_path).exists()
    plan, calls = _plan_call(tmp_path, [IMPLAUSIBLE, IMPLAUSIBLE], monkeypatch=monkeypatch)
    assert len(calls) == 2 and "against 36 for 1x2" in plan.unsure and not cache_file(tmp_path).exists()
    plan, calls = _plan_call(tmp_path, [NOISY, CLEAN], monkeypatch=monkeypatch)  # measured again, then trusted
    assert len(calls) == 2 and plan.unsure is None and (plan.workers, plan.threads) == (2, 1)
    again, calls = _plan_call(tmp_path, [NOISY], monkeypatch=monkeypatch)
    assert calls == [] and again == plan  # cached


def test_a_plan_measured_under_load_is_measured_again_on_a_quieter_machine(tmp_path, monkeypatch):
    loaded, _ = _plan_call(tmp_path, [CLEAN], load=2.0, monkeypatch=monkeypatch)
    assert loaded.load == 2.0
    _, calls = _plan_call(tmp_path, [CLEAN], load=1.5, monkeypatch=monkeypatch)  # about as busy: kept
    assert calls == []
    idle, calls = _plan_call(tmp_path, [CLEAN], load=0.1, monkeypatch=monkeypatch)  # far quieter: measured again
    assert len(calls) == 1 and idle.load == 0.1


def test_a_corrupt_plan_cache_is_measured_over(tmp_path, monkeypatch):
    from scaling_search.training.plan import cache_file

    first, _ = _plan_call(tmp_path, [CLEAN], monkeypatch=monkeypatch)
    cache_file(tmp_path).write_text('{"format": 3, "plans": {"trunc')
    again, calls = _plan_call(tmp_path, [CLEAN], monkeypatch=monkeypatch)
    assert len(calls) == 1 and again == first and json.loads(cache_file(tmp_path).read_text())["format"] == 3
    cache_file(tmp_path).write_text("[1, 2]")  # valid JSON, not a plan cache
    _, calls = _plan_call(tmp_path, [CLEAN], monkeypatch=monkeypatch)
    assert len(calls) == 1


def test_more_workers_than_cores_need_oversubscribe_and_change_no_result(tmp_path):
    from scaling_search.errors import UserError
    from scaling_search.search import runner
    from scaling_search.training import default_threads

    many = default_threads() + 1
    storage = f"sqlite:///{tmp_path}/w.db"
    refused = load_study_config("smoke", {"search": {"workers": many}}, "w", storage)
    with pytest.raises(UserError, match=f"--workers {many} is more than the"):
        runner.prepare(refused, stores=False)
    asked = load_study_config("smoke", {"search": {"workers": many, "oversubscribe": True}}, "w", storage)
    assert runner.prepare(asked, stores=False).config.search.workers == many
    assert asked.result_settings() == refused.result_settings()  # a run-only setting: the same study
