"""`ablate --figure all --preset smoke`, then its pages rendered in headless Chromium (slow; CI installs Chromium)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

ABLATE = ["ablate", "--figure", "all", "--preset", "smoke", "--no-progress", "--widths", "1,1.4", "--depths", "1,2",
          "--resolutions", "1,1.5", "--phis", "1"]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing in CI: .ci/run installs Debian's chromium")
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    return found


def _dump_dom(chromium: str, page, profile) -> str:
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", "--virtual-time-budget=15000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
    return proc.stdout


@pytest.mark.slow
def test_ablation_pages_render_in_headless_chromium(tmp_path):
    chromium = _chromium()
    proc = subprocess.run([sys.executable, "-m", "scaling_search", *ABLATE], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "reports" / "smoke-synthetic"
    # the report is rebuilt from the storage alone
    shutil.rmtree(folder)
    proc = subprocess.run([sys.executable, "-m", "scaling_search", "report", "smoke-synthetic"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    index = folder / "index.html"
    dom = _dump_dom(chromium, index, tmp_path / "profile")
    pages = re.findall(r'href="([^"]+\.html)"', dom)
    assert sorted(pages) == ["fig3.html", "fig4.html", "fig8.html"]
    for page in pages:
        dom = _dump_dom(chromium, folder / page, tmp_path / "profile")
        assert dom.count('class="main-svg"') >= 1, page  # plotly drew its SVG
        assert "scatterlayer" in dom and "Error" not in dom, page
    for table in ("fig3_trials.csv", "fig4_trials.csv", "fig8_trials.csv"):
        assert (folder / table).stat().st_size > 0
