"""A smoke run and its ablations, then the report rendered in headless Chromium (slow; CI installs Chromium)."""

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smoke_run import SMOKE, cli_in_process

# Figure 8 only: Figures 3 and 4 are drawn by the same code (tests/test_report.py checks their data).
ABLATE = ["ablate", "--figure", "8", "--phis", "1", *SMOKE]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


def _dump_dom(chromium: str, page, profile, screenshot: Path | None = None) -> str:
    """The page's DOM after its scripts ran; with ``screenshot``, a PNG of it from the same Chromium start."""
    shot = [f"--screenshot={screenshot}", "--window-size=1280,3000"] if screenshot else []
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", *shot, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    if screenshot:
        assert screenshot.stat().st_size > 10_000, proc.stderr[-1000:]
    return proc.stdout


@pytest.mark.slow
def test_the_landing_page_shows_the_answer_the_family_and_the_figures(tmp_path, smoke_run):
    chromium = _chromium()
    shutil.copytree(smoke_run[0], tmp_path, dirs_exist_ok=True)  # the session's 'run --budget 2x', copied
    cli_in_process(tmp_path, *ABLATE)
    folder = tmp_path / "reports" / "smoke-synthetic"
    configs = sorted(p.name for p in folder.glob("model-phi*.json"))
    # the report is rebuilt from the storage and the exported configs alone
    for page in folder.glob("*.html"):
        page.unlink()
    cli_in_process(tmp_path, "report", "smoke-synthetic", "--static", "png")
    for name in ("grid", "family", "fig8"):  # static copies for papers and slides, drawn offline by kaleido
        assert (folder / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.glob(".static-*"))  # drawn in a private folder, each renamed into place
    index = folder / "index.html"
    artifacts = Path(__file__).parent / "artifacts"
    artifacts.mkdir(exist_ok=True)
    dom = _dump_dom(chromium, index, tmp_path / "profile", screenshot=artifacts / "report-index.png")
    exported = json.loads((folder / "model-phi1.json").read_text())
    coefficients = re.search(r"id=\"coefficients\">([^<]+)", dom).group(1)
    for name in ("alpha", "beta", "gamma"):
        assert f"{name} = {exported[name]:g}" in coefficients
    assert "href=\"model-phi1.json\"" in dom
    family = re.search(r'<table id="family">(.*?)</table>', dom, re.S).group(1)
    assert family.count("<tr>") == 1 + len(configs)  # a header and one row per exported config
    drawn = re.findall(r'<div class="figure" id="figure-([a-z0-9_]+)">.*?class="main-svg"', dom, re.S)
    assert {"grid", "family", "fig8"} <= set(drawn)
    assert "compound scaling reached" in dom and "95% interval" in dom  # Figure 8's verdict
    shown = html.unescape(re.sub(r"<[^>]*>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)))
    assert "<br" not in shown and "<sup" not in shown  # no markup shown as text (plotly keeps it in attributes)
    for page in ("fig8.html", "family.html"):  # each figure also stands alone
        dom = _dump_dom(chromium, folder / page, tmp_path / "profile")
        assert dom.count('class="main-svg"') >= 1 and "scatterlayer" in dom, page


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_the_dashboard_serves_the_grid_with_its_params(tmp_path):
    """`scaling-search dashboard` on a study (fake trainer: no training), opened in headless Chromium."""
    import sys
    import time
    import urllib.request

    import optuna

    from scaling_search.network.budget import parse_budget
    from scaling_search.search import runner
    from scaling_search.settings.study import load_study_config
    from test_search_runner import fake_trainer

    chromium = _chromium()
    url = f"sqlite:///{tmp_path}/dash.db"
    config = load_study_config("smoke", {"search": {"baseline": "network", "pruner": "none"}}, "dash", url)
    runner.run(config, parse_budget("2x"), output=tmp_path / "reports", trainer=fake_trainer, progress=False)
    grid_id = optuna.storages.RDBStorage(url).get_study_id_from_name("dash:grid")
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "scaling_search", "dashboard", "dash", "--storage", url,
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as answer:
                    studies = json.loads(answer.read())["study_summaries"]
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stderr.read()[-2000:]
                time.sleep(0.2)
        assert {s["study_name"] for s in studies} == {"dash:grid"}
        page = f"http://127.0.0.1:{port}/dashboard/studies/{grid_id}"
        artifacts = Path(__file__).parent / "artifacts"
        artifacts.mkdir(exist_ok=True)
        proc = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000", "--window-size=1400,1200",
             f"--screenshot={artifacts / 'dashboard-grid.png'}", "--dump-dom", page],
            capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-1000:]
        dom = proc.stdout
        assert "dash:grid" in dom
        # the grid's params, drawn by the dashboard's own plots (hyperparameter importance)
        assert all(re.search(rf">\s*{name}\s*<", dom) for name in ("alpha", "beta", "gamma")), dom[-3000:]
    finally:
        server.terminate()
        server.wait(10)
