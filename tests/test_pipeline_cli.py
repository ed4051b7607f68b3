"""End-to-end runs of the search CLI on the smoke preset (slow: tens of seconds each)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from scaling_search import EFFICIENTNET_B0, build_model, count_cost
from scaling_search.network.spec import NetworkSpec

from smoke_run import SMOKE, cli, cli_in_process


@pytest.fixture(scope="module")
def finished_run(smoke_run):
    return smoke_run


@pytest.mark.slow
def test_run_smoke_writes_configs_and_tables(finished_run):
    cwd, proc, seconds = finished_run
    folder = cwd / "reports" / "smoke-synthetic"
    for name in ("model-phi1.json", "study.json", "grid_trials.csv", "grid_summary.csv", "family.csv",
                 "index.html", "grid.html", "family.html", "plotly.min.js", "decision.json"):
        assert (folder / name).is_file(), name
    assert (cwd / "studies" / "smoke-synthetic.db").is_file()
    assert "coefficients: alpha=" in proc.stdout and "chosen: proxy val top-1" in proc.stdout
    # every point of the smoke grid sits at chance: no winner is claimed, and the export says it chose by cost
    assert "\nno winner: no grid point is above chance" in proc.stdout and "\nfound:" not in proc.stdout
    decision = json.loads((folder / "decision.json").read_text())
    assert {"rungs", "fidelity", "tied", "chosen"} <= set(decision) and decision["winner"] is False
    assert {"alpha", "beta", "gamma", "why"} <= set(decision["chosen"]) and "no winner" in decision["chosen"]["why"]
    rung = decision["rungs"][0]
    assert rung["regime"]["epochs"] == 1 and all({"accuracy", "accuracy_std", "seeds", "interval"} <= set(c)
                                                 for c in rung["candidates"])
    assert len(decision["tied"]) == len(rung["candidates"])  # at chance, every point is tied
    # the smoke grid is at chance: its tied points are not separated, and the line says what noise it counted
    assert "P(best) " in proc.stdout and "noise counted: validation images only (one seed" in proc.stdout
    assert seconds < 120  # the issue asks for under a minute; leave room for a loaded CI machine


@pytest.mark.slow
def test_exported_model_builds_and_costs_what_it_reports(finished_run):
    cwd, _, _ = finished_run
    config = json.loads((cwd / "reports" / "smoke-synthetic" / "model-phi1.json").read_text())
    assert config["format"] == "scaling-search/model-config" and config["phi"] == 1.0
    for key in ("alpha", "beta", "gamma", "multipliers", "arch", "cost", "proxy", "evidence", "usage", "provenance"):
        assert key in config
    evidence = config["evidence"]
    assert 0 < evidence["p_best"] <= 1 and evidence["separated"] == (evidence["p_best"] >= evidence["separated_at"])
    model = build_model(cwd / "reports" / "smoke-synthetic" / "model-phi1.json")
    assert sum(p.numel() for p in model.parameters()) == config["cost"]["params"]
    spec = NetworkSpec.from_dict(config["spec"])
    assert count_cost(spec).macs == config["cost"]["macs"]
    import optuna

    grid = optuna.load_study(study_name="smoke-synthetic:grid", storage=f"sqlite:///{cwd}/studies/smoke-synthetic.db")
    baseline = NetworkSpec.from_dict(grid.user_attrs["baseline"])  # stage 1's pick, at deployment scale
    assert baseline.resolution == 224 and spec.resolution >= 224
    assert abs(count_cost(spec).macs / (2 * count_cost(baseline).macs) - 1) <= 0.1
    study = json.loads((cwd / "reports" / "smoke-synthetic" / "study.json").read_text())
    assert study["preset"] == "smoke" and study["search"]["pruner"] == "none"
    # the cost CLI accepts the exported config
    proc = cli(cwd, "cost", "--config", "reports/smoke-synthetic/model-phi1.json", "--format", "json")
    assert json.loads(proc.stdout)[0]["macs"] == config["cost"]["macs"]


@pytest.mark.slow
def test_rerun_reuses_finished_trials(finished_run):
    cwd, _, _ = finished_run
    db = cwd / "studies" / "smoke-synthetic.db"
    before = _trial_count(db)
    started = time.perf_counter()
    cli_in_process(cwd, "run", "--budget", "2x", *SMOKE)
    assert _trial_count(db) == before
    assert time.perf_counter() - started < 30


def _trial_count(db: Path) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("select count(*) from trials").fetchone()[0]


def _grid_rows(cwd: Path) -> list[tuple]:
    with sqlite3.connect(cwd / "studies" / "smoke-synthetic.db") as connection:
        rows = connection.execute(
            "select t.trial_id, t.state, a.value_json from trials t join studies s on s.study_id = t.study_id "
            "join trial_user_attributes a on a.trial_id = t.trial_id "
            "where s.study_name = 'smoke-synthetic:grid' and a.key = 'point'").fetchall()
    return rows


def _grid_results(cwd: Path) -> dict:
    text = (cwd / "reports" / "smoke-synthetic" / "grid_summary.csv").read_text().splitlines()
    header = text[0].split(",")
    out = {}
    for line in text[1:]:
        row = dict(zip(header, line.split(",")))
        out[row["point"]] = (row["alpha"], row["beta"], row["gamma"], row["accuracy"], row["train_loss"])
    return out


@pytest.mark.slow
def test_sigkill_in_stage_2_then_resume(tmp_path, finished_run):
    """SIGKILL to the parent of a two-worker run mid-grid: its worker stops too, and a rerun finishes the grid
    with the numbers and the answer of the uninterrupted one-process run. (This is also the two-worker test:
    both runs start two workers on the grid together, and each point, trained by either process, must give the
    numbers of the one-process run.)"""
    reference_cwd, reference_proc, _ = finished_run
    process = subprocess.Popen([sys.executable, "-m", "scaling_search", "run", "--budget", "2x", *SMOKE,
                                "--workers", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    db = tmp_path / "studies" / "smoke-synthetic.db"
    deadline = time.time() + 300
    killed_during_grid = False
    while time.time() < deadline and process.poll() is None:
        if db.exists():
            try:
                states = [row[1] for row in _grid_rows(tmp_path)]
            except sqlite3.OperationalError:
                states = []
            if "COMPLETE" in states and "RUNNING" in states:
                os.kill(process.pid, signal.SIGKILL)
                killed_during_grid = True
                complete_at_kill = states.count("COMPLETE")
                break
        time.sleep(0.05)
    process.wait()
    assert killed_during_grid, "the run finished or timed out before it could be killed in stage 2"
    deadline = time.time() + 60
    while time.time() < deadline:  # the orphaned worker notices its parent is gone and stops
        states = subprocess.run(["ps", "-o", "stat=", "-g", str(process.pid)], capture_output=True, text=True).stdout
        if not [s for s in states.split() if not s.startswith("Z")]:
            break
        time.sleep(0.2)
    assert time.time() < deadline, "a worker went on after its parent was killed"
    # it stopped mid-trial rather than finishing the grid alone (one trial may end in the instant of the kill)
    complete_after = [row[1] for row in _grid_rows(tmp_path)].count("COMPLETE")
    assert complete_after <= complete_at_kill + 1 < len(_grid_results(reference_cwd)) - 1, (
        complete_at_kill, complete_after)
    before = _grid_rows(tmp_path)
    assert any(state == "RUNNING" for _, state, _ in before)

    cli_in_process(tmp_path, "run", "--budget", "2x", *SMOKE, "--workers", "2")
    rows = _grid_rows(tmp_path)
    complete = [point for _, state, point in rows if state == "COMPLETE"]
    assert sorted(complete) == sorted(set(complete)), "a grid point was trained to completion twice"
    assert len(set(complete)) == len(_grid_results(reference_cwd))
    assert any(state == "FAIL" for _, state, _ in rows)  # the killed trial, failed by its stale heartbeat
    # Same seed, same settings: every point's numbers and the final choice equal the uninterrupted run's.
    assert _grid_results(tmp_path) == _grid_results(reference_cwd)
    winner = [line for line in reference_proc.stdout.splitlines() if line.startswith("chosen:")]
    resumed = json.loads((tmp_path / "reports" / "smoke-synthetic" / "model-phi1.json").read_text())
    reference = json.loads((reference_cwd / "reports" / "smoke-synthetic" / "model-phi1.json").read_text())
    assert winner and (resumed["alpha"], resumed["beta"], resumed["gamma"]) == (
        reference["alpha"], reference["beta"], reference["gamma"])
    assert resumed["spec"] == reference["spec"]
    study = json.loads((tmp_path / "reports" / "smoke-synthetic" / "study.json").read_text())
    assert study["search"]["workers"] == 2


@pytest.mark.slow
def test_latency_budget_run_records_predicted_and_measured_latency(tmp_path):
    """A subprocess, not this process: measuring latency parts here raised the suite's peak memory by ~1 GB."""
    env = {**os.environ, "SCALING_SEARCH_CACHE": str(tmp_path / "cache")}
    # B0 at 128 px: the table measures each part of every network it predicts, and 224 px parts cost 3x as much.
    # Not 96 px: there one step of the resolution (96 -> 104 px) moves the predicted latency by 16%, and with a
    # noisy table a 1.5x budget fell between two steps, beyond the 5% tolerance (a CI run refused the budget).
    # Without a calibrated table the same command is refused: tests/test_bad_input.py. A table calibrated on
    # three B0s here stands in for 'scaling-search latency calibrate' (35-50 s); the 128 px one's parts are the
    # run's baseline's.
    # --budget-tol 0.3, not the default 5%: parts a prediction lacks are measured when it asks for them, so on a
    # loaded host one width step of a stage (240 -> 248 channels) moved a CI run's prediction from 34.3 to 45.3 ms
    # (+32%) and the command refused a 1.5x budget that fell in between. That refusal is the tool's designed
    # answer to a noisy table (tests/test_budget.py covers it); this test is about what a run records.
    from scaling_search.latency import LatencyTable

    table = LatencyTable.open("cpu", 1, cache_dir=tmp_path / "cache" / "latency")
    table.calibrate([replace(EFFICIENTNET_B0, resolution=r) for r in (64, 96, 128)], rounds=2, runs=3)
    proc = subprocess.run([sys.executable, "-m", "scaling_search", "run", *SMOKE, "--resolution", "128", "--cost",
                           "latency", "--budget", "1.5x", "--budget-tol", "0.3"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [config] = [json.loads(p.read_text()) for p in (tmp_path / "reports" / "smoke-synthetic").glob("model-phi*.json")
                if json.loads(p.read_text())["budget"]]
    latency = config["latency"]
    assert config["budget"]["tolerance"] == 0.3
    assert abs(latency["predicted_ms"] / (1.5 * latency["baseline_predicted_ms"]) - 1) <= 0.3
    assert latency["measured_ms"] > 0 and config["budget"]["kind"] == "ratio" and config["budget"]["unit"] == "ms"


@pytest.mark.slow
def test_ablate_scales_a_given_config(tmp_path, finished_run):
    import pandas as pd

    from scaling_search.settings.study import DeploymentSettings
    from scaling_search.network.spec import load_spec

    cwd, _, _ = finished_run
    exported = cwd / "reports" / "smoke-synthetic" / "model-phi1.json"
    cli_in_process(tmp_path, "ablate", "--figure", "3", *SMOKE, "--config", str(exported), "--study", "from-config",
                   "--widths", "1.4", "--depths", "1", "--resolutions", "1")
    frame = pd.read_csv(tmp_path / "reports" / "from-config" / "fig3_trials.csv")
    base = load_spec(exported)
    assert sorted(frame["point_macs"]) == sorted(
        [count_cost(DeploymentSettings().scale(base, width=1.4)).macs, count_cost(base).macs, count_cost(base).macs])
    assert (frame["proxy_resolution"] < frame["resolution"]).all()  # trained as proxies of the deployment config
    assert "baseline model-phi1.json" in (tmp_path / "reports" / "from-config" / "fig3.html").read_text()



@pytest.mark.slow
def test_issue_acceptance_b0_at_224_then_exports_at_4x_and_800m(finished_run):
    """From an empty directory (the fixture), the issue's command, then its exports, as a new user types them."""
    cwd, proc, _ = finished_run
    folder = cwd / "reports" / "smoke-synthetic"
    config = json.loads((folder / "model-phi1.json").read_text())
    b0_macs = 385_814_752  # B0 at 224 px, 1000 classes (the smoke data has 10: 1.3M MACs fewer)
    assert config["spec"]["resolution"] >= 224
    assert abs(config["cost"]["macs"] / (2 * b0_macs) - 1) <= 0.1
    product = config["alpha"] * config["beta"] ** 2 * config["gamma"] ** 2
    assert 1.8 <= product <= 2.2 and f"alpha*beta^2*gamma^2 = {product:.3f}" in proc.stdout
    for budget, target in (("4x", 4 * config["baseline_macs"]), ("800M", 800e6)):
        cli_in_process(cwd, "export", "--budget", budget, *SMOKE)
        [exported] = [json.loads(p.read_text()) for p in folder.glob("model-phi*.json")
                      if (json.loads(p.read_text())["budget"] or {}).get("text") == budget]
        assert abs(exported["cost"]["macs"] / target - 1) <= 0.05, (budget, exported["cost"]["macs"])


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_stops_every_worker(tmp_path):
    """SIGINT to the whole process group (a terminal's Ctrl-C) while two workers train grid points."""
    stage_1 = ["--preset", "smoke", "--no-progress", "--pruner", "none"]  # the default run: stage 1 searches
    process = subprocess.Popen([sys.executable, "-m", "scaling_search", "run", "--budget", "2x", *stage_1,
                                "--workers", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    db = tmp_path / "studies" / "smoke-synthetic.db"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        try:
            if db.exists() and "RUNNING" in [row[1] for row in _grid_rows(tmp_path)]:
                break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before a grid trial could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("scaling-search")]
    assert errors == ["scaling-search run: interrupted; re-run the same command to resume"], stderr
    time.sleep(1)
    states = subprocess.run(["ps", "-o", "stat=", "-g", str(process.pid)], capture_output=True, text=True).stdout
    assert [s for s in states.split() if not s.startswith("Z")] == []  # no worker left running (zombies await init)


@pytest.mark.slow
def test_compare_on_the_smoke_preset_uses_the_studys_coefficients(tmp_path, finished_run):
    import html
    import shutil

    import pandas as pd

    shutil.copytree(finished_run[0], tmp_path, dirs_exist_ok=True)
    out = cli_in_process(tmp_path, "compare", *SMOKE, "--budget", "2x")
    folder = tmp_path / "reports" / "smoke-synthetic"
    assert out.strip() == "report: reports/smoke-synthetic/index.html"
    frame = pd.read_csv(folder / "compare_trials.csv")
    assert sorted(frame["method"]) == sorted(["baseline", "compound", "fast", "v2", "rs", "width", "depth",
                                              "resolution"])
    assert (frame["state"] == "complete").all()
    exported = json.loads((folder / "model-phi1.json").read_text())
    compound = frame[frame["method"] == "compound"].iloc[0]
    assert f"alpha, beta, gamma = {exported['alpha']:g}, {exported['beta']:g}, {exported['gamma']:g} from the " \
           "study's grid" in (folder / "compare.html").read_text()
    assert abs(compound["macs"] / (2 * frame[frame["method"] == "baseline"]["macs"].iloc[0]) - 1) <= 0.05
    assert "At 2x the baseline's deployment MACs," in html.unescape((folder / "index.html").read_text())


@pytest.mark.slow
def test_run_strategy_exports_a_family_by_another_rule(tmp_path, finished_run):
    """``run --strategy fast`` scales stage 1's baseline by fast compound scaling (no grid needed) and records
    the rule; ``--strategy v2`` takes the grid's coefficients and caps the resolution; compound's exports stay."""
    import shutil

    from scaling_search import build_model
    from scaling_search.network.cost import count_cost
    from scaling_search.network.spec import load_spec

    shutil.copytree(finished_run[0], tmp_path, dirs_exist_ok=True)
    folder = tmp_path / "reports" / "smoke-synthetic"
    compound_before = (folder / "model-phi1.json").read_bytes()
    out = cli_in_process(tmp_path, "run", *SMOKE, "--budget", "2x", "--strategy", "fast", "--family", "2")
    fast = {path.name: json.loads(path.read_text()) for path in folder.glob("model-fast-phi*.json")}
    budgeted = [body for body in fast.values() if body["budget"]]
    assert len(fast) == 2 and len(budgeted) == 1, sorted(fast)
    member = budgeted[0]
    assert member["rule"]["rule"] == "fast" and member["rule"]["width_share"] == 0.8 and "Dollar" in member["rule"]["source"]
    assert abs(member["macs_ratio"] / 2 - 1) <= 0.05 and member["budget"]["text"] == "2x"
    # pycls's dWr: FLOPs shares 0.8 width, 0.1 depth, 0.1 resolution (channels and pixels count twice)
    assert member["multipliers"]["width"] == pytest.approx(member["rule"]["s"] ** 0.4)
    assert member["multipliers"]["depth"] == pytest.approx(member["rule"]["s"] ** 0.1)
    assert fast["model-fast-phi2.json"]["nominal_ratio"] == 4.0
    path = str(folder / "model-fast-phi2.json")  # anyone can build and cost the exported network
    assert count_cost(load_spec(path)).macs == fast["model-fast-phi2.json"]["cost"]["macs"]
    assert sum(p.numel() for p in build_model(path).parameters()) == fast["model-fast-phi2.json"]["cost"]["params"]
    assert "scaled by the fast rule (width_share=0.8" in out and "coefficients: alpha=" not in out  # no grid was needed

    compound = json.loads(compound_before)
    cli_in_process(tmp_path, "run", *SMOKE, "--budget", "4x", "--strategy", "v2", "--max-resolution", "256")
    [v2] = [json.loads(p.read_text()) for p in folder.glob("model-v2-phi*.json")]
    assert (v2["rule"]["alpha"], v2["rule"]["beta"], v2["rule"]["gamma"]) == \
        (compound["alpha"], compound["beta"], compound["gamma"])  # the study's grid, not the paper's
    assert v2["spec"]["resolution"] <= 256 and abs(v2["macs_ratio"] / 4 - 1) <= 0.05
    assert (folder / "model-phi1.json").read_bytes() == compound_before


def test_run_strategy_on_a_given_baseline_trains_nothing_and_says_so(tmp_path):
    out = cli_in_process(tmp_path, "run", *SMOKE, "--study", "rs-only", "--budget", "2x", "--strategy", "rs",
                         "--long-training")
    [path] = (tmp_path / "reports" / "rs-only").glob("model-rs-phi*.json")
    body = json.loads(path.read_text())
    assert body["rule"]["long_training"] is True and body["multipliers"]["width"] == 1.0  # depth takes the rest
    assert body["multipliers"]["depth"] > 1.0 and abs(body["macs_ratio"] / 2 - 1) <= 0.05
    assert "report: none (nothing was trained" in out and not (tmp_path / "studies" / "rs-only.db").exists()
