"""Optuna by name: each stage is an Optuna study with a named objective, ``scaling-search studies`` lists them,
and what a budget multiplies is stated in the exported config, the run's lines and the report."""

from __future__ import annotations

import json
import re

import optuna
import pytest

from scaling_search.cli import main
from scaling_search.network.budget import parse_budget
from scaling_search.network.cost import count_cost
from scaling_search.report import build_report
from scaling_search.search import runner
from scaling_search.settings import load_study_config
from test_search_runner import fake_trainer


def _searched(tmp_path):
    overrides = {"search": {"baseline": "search", "trials": 2, "pruner": "none"}}
    return load_study_config("smoke", overrides, "named", f"sqlite:///{tmp_path}/named.db")


def test_stages_are_optuna_studies_with_named_objectives_and_the_budget_names_its_reference(tmp_path, capsys):
    config = _searched(tmp_path)
    result = runner.run(config, parse_budget("2x"), output=tmp_path / "reports", trainer=fake_trainer,
                        progress=False)
    grid = optuna.load_study(study_name="named:grid", storage=config.storage)  # as README and run's lines say
    assert grid.metric_names == ["proxy_val_top1"] and {"alpha", "beta", "gamma"} <= set(grid.best_params)
    assert optuna.load_study(study_name="named:baseline", storage=config.storage).metric_names == ["reward"]

    budgeted = next(p for p in result.exported if json.loads(p.read_text())["budget"])
    exported = json.loads(budgeted.read_text())
    reference = exported["budget"]["reference"]
    assert reference["searched"] and reference["network"] == "the searched baseline (stage 1)"
    assert reference["macs"] == count_cost(result.baseline).macs and reference["blocks"] == result.baseline.num_blocks
    assert exported["spec"]["activation"] == "silu" and exported["timm"]["kwargs"]["num_classes"] == 10
    assert exported["pretrained_cfg"]["label_names"] and len(exported["pretrained_cfg"]["mean"]) == 3

    page = build_report("named", config.storage, tmp_path / "reports").read_text()
    assert "2x of the searched baseline (stage 1)" in page

    assert main(["studies", "--storage", config.storage, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["study"], r["stage"], r["objective"]) for r in rows} >= {("named", "baseline", "reward"),
                                                                       ("named", "grid", "proxy_val_top1")}
    assert all(r["optuna_study_name"] == f"{r['study']}:{r['stage']}" for r in rows)


@pytest.mark.slow
def test_runs_lines_state_the_budgets_reference_and_the_optuna_names(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--preset", "smoke", "--budget", "2x", "--baseline", "b0", "--no-progress",
                 "--epochs", "1", "--study", "lines", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"budget: 2x of the deployment network \(b0\) as given \([\d,.]+M deployment MACs, 16 blocks "
                     r"at \d+ px\) = [\d,.]+M MACs", out), out
    assert "optuna.load_study(study_name='lines:grid', storage='sqlite:///studies/lines.db')" in out
