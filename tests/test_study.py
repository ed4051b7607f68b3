import json
import re

import pytest

from scaling_search.presets import PRESETS, load_toml
from scaling_search.search.config import load_study_config


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
