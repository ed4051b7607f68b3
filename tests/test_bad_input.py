"""A battery of users' mistakes across every subcommand: each must exit 2 with one line on stderr, no traceback,
and leave every file under the working folder (studies, reports, configs) byte-identical; the machine's dataset
cache alone may gain the data a refused command loaded.

The CLI runs in-process (``scaling_search.cli.main``) next to a finished study made with a fake trainer, so the
battery costs seconds, not interpreter start-ups.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from scaling_search.network.budget import parse_budget
from scaling_search.network.family import efficientnet
from scaling_search.cli import main
from scaling_search.search import runner
from scaling_search.settings.study import load_study_config
from scaling_search.training import default_threads
from test_search_runner import fake_trainer

FLAGS = ["--preset", "smoke", "--baseline", "b0", "--no-progress"]
CORES = default_threads()
FRESH = [*FLAGS, "--study", "fresh"]  # flags that change the stored study's settings would be refused first
STUDY = ["--preset", "smoke", "--baseline", "b0"]


def _write_inputs(folder: Path) -> None:
    """Bad files of every kind a user might point the tool at."""
    pixels = np.random.default_rng(0).integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(40) % 4
    (folder / "text.npz").write_text("x_train,y_train\n1,2\n")
    (folder / "notes.txt").write_text("not data\n")
    np.savez(folder / "empty.npz", x_train=np.zeros((0, 32, 32, 3), np.uint8), y_train=np.zeros(0, np.int64))
    nan = pixels.astype(np.float32) / 255
    nan[3, 0, 0, 0] = np.nan
    np.savez(folder / "nan.npz", x_train=nan, y_train=labels)
    np.savez(folder / "range.npz", x_train=pixels.astype(np.float32) * 1.5, y_train=labels)
    np.savez(folder / "huge_label.npz", x_train=pixels, y_train=np.where(labels == 3, 10**9, labels))
    np.savez(folder / "stray_label.npz", x_train=pixels, y_train=np.where(np.arange(40) == 7, 99_999, labels))
    np.savez(folder / "negative.npz", x_train=pixels, y_train=labels - 1)
    np.savez(folder / "unseen.npz", x_train=pixels, y_train=labels % 3, x_test=pixels[:8], y_test=labels[:8])
    np.savez(folder / "fewnames.npz", x_train=pixels, y_train=labels * 2, classes=np.array(["a", "b", "c", "d"]))
    np.savez(folder / "strings.npz", x_train=np.array([["a"] * 4] * 4), y_train=np.arange(4))
    np.savez(folder / "gray_test.npz", x_train=pixels, y_train=labels, x_test=pixels[:8, ..., :1], y_test=labels[:8])
    np.savez(folder / "small_test.npz", x_train=pixels, y_train=labels, x_test=pixels[:8, :16, :16], y_test=labels[:8])
    np.savez(folder / "no_y_test.npz", x_train=pixels, y_train=labels, x_test=pixels[:8])
    np.savez(folder / "one_image.npz", x_train=pixels[:1], y_train=labels[:1])
    np.savez(folder / "one_px.npz", x_train=pixels[:, :1, :1], y_train=labels)
    np.savez(folder / "either_layout.npz", x_train=pixels[:, :3, :3], y_train=labels)
    np.savez(folder / "oblong.npz", x_train=pixels[:, :, :20], y_train=labels)
    np.savez(folder / "no_channels.npz", x_train=pixels[..., :2], y_train=labels)
    (folder / "corrupt.db").write_text("this is not a database\n")
    (folder / "empty.db").write_bytes(b"")
    (folder / "dir.db").mkdir()
    with sqlite3.connect(folder / "plain.db") as connection:
        connection.execute("create table notes (x integer)")
    (folder / "bad.json").write_text("{not json")
    (folder / "spec.json").write_text('{"stem_channels": 32}')
    b0 = efficientnet("b0").to_dict()
    b0["stages"][0]["kernel"] = 7  # a network stage 1's space (kernels 3 and 5) cannot express
    (folder / "kernel7.json").write_text(json.dumps(b0))
    tomls = {"trials": "[search]\ntrials = 2.5\n", "epochs": '[train]\nepochs = "three"\n',
             "table": "[colour]\nx = 1\n", "key": "[train]\nepoch = 3\n", "broken": "[train\n",
             "width": "[proxy]\nwidth = 2.0\n", "rounding": '[deployment]\ndepth_rounding = "up"\n',
             "bool": "[train]\nzero_init = 1\n", "network": '[deployment]\nnetwork = "resnet50"\n',
             "workers": '[search]\nworkers = "many"\n', "infinite": "[train]\nlr = inf\n",
             "manyworkers": "[search]\nworkers = 1000000\n"}
    for name, text in tomls.items():
        (folder / f"{name}.toml").write_text(text)
    (folder / "latin1.toml").write_bytes("[train]\nepochs = 3  # r\xe9sum\xe9\n".encode("latin-1"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    overrides = {"search": {"baseline": "network", "pruner": "median"}, "deployment": {"network": "b0"}}
    config = load_study_config("smoke", overrides, None, f"sqlite:///{folder}/studies/smoke-synthetic.db")
    runner.run(config, parse_budget("2x"), [0.0, 1.0], output=folder / "reports", trainer=fake_trainer,
               progress=False)
    _write_inputs(folder)
    return folder


def _digests(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


CASES: list[tuple[str, list[str], str]] = [
    # budgets
    ("unreadable budget", ["run", "--budget", "lots", *FRESH], "cannot read budget 'lots'"),
    ("negative budget", ["run", "--budget", "-2x", *FRESH], "budget '-2x' must be a positive"),
    ("infinite budget", ["run", "--budget", "1e400x", *FRESH], "must be a positive, finite number"),
    ("zero budget", ["run", "--budget", "0x", *FRESH], "must be a positive, finite number"),
    ("huge ratio", ["run", "--budget", "1000000x", *FRESH], "is out of reach"),
    ("unreachable MACs", ["run", "--budget", "1e30", *FRESH], "is out of reach of compound scaling"),
    ("tiny MACs", ["run", "--budget", "10", *FRESH], "is out of reach of compound scaling"),
    ("unknown unit", ["run", "--budget", "3Q", *FRESH], "unknown unit 'Q'"),
    ("latency budget without latency cost", ["run", "--budget", "25ms", *FRESH], "add --cost latency"),
    ("latency cost without a table", ["run", "--cost", "latency", "--study", "lat", *FLAGS],
     "run 'scaling-search latency calibrate"),
    ("onnxruntime cost without its table", ["run", "--cost", "latency", "--latency-runtime", "onnxruntime",
                                            "--study", "lat", *FLAGS], "--runtime onnxruntime' first"),
    ("MACs budget with latency cost", ["run", "--budget", "800M", "--cost", "latency", "--study", "lat", *FLAGS],
     "run 'scaling-search latency calibrate"),
    ("budget tolerance out of range", ["run", "--budget-tol", "2", *FRESH], "budget_tol must be in (0, 1)"),
    ("negative screen", ["run", "--screen", "-5", *FRESH], "screen must be in 0..100000 (0: no screen)"),
    ("budget rounding cannot meet", ["export", "--budget", "3x", "--budget-tol", "0.000001", *FLAGS],
     "no scaled network lands within"),
    ("bad family", ["export", "--family", "5:1", *FLAGS], "cannot read --family '5:1'"),
    ("family out of range", ["export", "--family", "0,40", *FLAGS], "cannot read --family"),
    # presets and study files
    ("unknown preset", ["run", "--preset", "turbo", "--no-progress"], "unknown preset 'turbo'"),
    ("float where an integer is expected", ["run", "--preset", "trials.toml"], "[search] trials must be a whole number, got 2.5"),
    ("string epochs", ["run", "--preset", "epochs.toml"], "[train] epochs must be a whole number, got 'three'"),
    ("integer where a boolean is expected", ["run", "--preset", "bool.toml"], "[train] zero_init must be true or false"),
    ("unknown table", ["run", "--preset", "table.toml"], "unknown table(s) colour"),
    ("unknown key", ["run", "--preset", "key.toml"], "unknown key(s) in [train]: epoch"),
    ("broken TOML", ["run", "--preset", "broken.toml"], "not valid TOML"),
    ("proxy wider than the network", ["run", "--preset", "width.toml"], "[proxy] width must be in (0, 1]"),
    ("unknown depth rounding", ["run", "--preset", "rounding.toml"], "depth_rounding must be one of ceil, nearest"),
    ("unknown deployment network", ["run", "--preset", "network.toml"], "resnet50 does not exist"),
    # study names, settings, storages
    ("empty study name", ["run", *FLAGS, "--study", ""], "study name '' must be"),
    ("study name with a space", ["run", *FLAGS, "--study", "my study"], "study name 'my study' must be"),
    ("changed settings", ["run", "--epochs", "2", *FLAGS], "different settings (train.epochs: 1 stored, 2 given)"),
    ("export with changed settings", ["export", "--budget", "2x", "--epochs", "3", *FLAGS],
     "different settings (train.epochs: 1 stored, 3 given)"),
    ("grid with changed settings", ["grid", "--seed", "5", *FLAGS], "different settings"),
    ("ablate with changed settings", ["ablate", "--figure", "8", "--epochs", "2", *FLAGS], "different settings"),
    ("grid with other seeds per point than it was trained with", ["grid", "--repeats", "2", *FLAGS],
     "stage grid of study 'smoke-synthetic' was trained with 1 seed(s) per point"),
    ("export of a study that does not exist", ["export", "--study", "nosuch", *FLAGS], "has no coefficient grid"),
    ("empty grid", ["run", "--grid-step", "0.7", "--grid-tol", "0.0001", "--study", "other", *FLAGS],
     "the grid is empty"),
    ("negative grid tolerance", ["run", "--grid-tol", "-1", *FRESH], "--grid-tol must be >= 0"),
    ("storage under a file", ["run", "--storage", "sqlite:///bad.json/x.db", *FRESH], "bad.json is a file"),
    ("storage that is a folder", ["run", "--storage", "sqlite:///dir.db", *FRESH], "is a folder"),
    ("storage that is not SQLite", ["run", "--storage", "sqlite:///corrupt.db", *FRESH], "is not a SQLite database"),
    ("unknown storage dialect", ["run", "--storage", "nosuchdb://u:secret@host/db", *FRESH], "u:***@host"),
    ("storage driver missing", ["run", "--storage", "mysql://u:secret@127.0.0.1:1/db", *FRESH], "needs the Python module"),
    ("device that does not exist", ["run", "--device", "cuda", *FRESH], "no CUDA GPU is available"),
    ("device nobody knows", ["run", "--device", "tpu", *FRESH], "unknown device 'tpu'"),
    ("workers zero", ["run", "--workers", "0", *FRESH], "'0' is not a whole number of at least 1 or 'auto'"),
    ("workers in words", ["run", "--workers", "many", *FRESH], "'many' is not a whole number of at least 1 or 'auto'"),
    ("workers neither a number nor auto in a preset", ["run", "--preset", "workers.toml"],
     'search settings: workers must be in 1..64 or "auto"'),
    ("proxy below the stride", ["run", "--proxy-resolution", "16", *FRESH], "below the network's total stride"),
    ("proxy above the deployment", ["run", "--resolution", "64", "--proxy-resolution", "96", *FRESH],
     "exceeds the deployment resolution"),
    ("proxy width above one", ["run", "--proxy-width", "1.5", *FRESH], "[proxy] width must be in (0, 1]"),
    ("unknown baseline", ["run", "--baseline", "b9", "--preset", "smoke", "--study", "fresh"], "b9 does not exist"),
    ("baseline file missing", ["run", "--baseline", "missing.json", "--preset", "smoke", "--study", "fresh"],
     "missing.json does not exist"),
    ("baseline file not JSON", ["run", "--baseline", "bad.json", "--preset", "smoke", "--study", "fresh"],
     "is not valid JSON"),
    ("baseline file not a spec", ["run", "--baseline", "spec.json", "--preset", "smoke", "--study", "fresh"],
     "network spec field 'stages' must be a list"),
    ("a network stage 1 cannot defend", ["run", "--network", "kernel7.json", "--preset", "smoke", "--study",
                                          "fresh"], "it lies outside the search space"),
    # data
    ("data file missing", ["run", "--data", "missing.npz", *FRESH], "no such file or directory"),
    ("text file named .npz", ["run", "--data", "text.npz", *FRESH], "not a .npz archive of arrays"),
    ("file of unknown kind", ["run", "--data", "notes.txt", *FRESH], "cannot tell the data format"),
    ("empty arrays", ["run", "--data", "empty.npz", *FRESH], "holds no images"),
    ("NaN pixels", ["run", "--data", "nan.npz", *FRESH], "NaN or infinite pixel values"),
    ("pixels out of range", ["run", "--data", "range.npz", *FRESH], "pixel values must lie in 0..255"),
    ("label of 10^9", ["run", "--data", "huge_label.npz", *FRESH], "label 1000000000 is not a class index"),
    ("one stray label of 99,999", ["run", "--data", "stray_label.npz", *FRESH], "would make a 100000-class network"),
    ("negative label", ["run", "--data", "negative.npz", *FRESH], "labels must be class indices"),
    ("validation class unseen in training", ["run", "--data", "unseen.npz", *FRESH],
     "the validation split has class(es) the train split lacks"),
    ("too few class names", ["run", "--data", "fewnames.npz", *FRESH], "'classes' names 4 classes"),
    ("validation images of other channels", ["run", "--data", "gray_test.npz", *FRESH],
     "validation images are (C, H, W) = (1, 32, 32) but training images (3, 32, 32)"),
    ("validation images of another size", ["run", "--data", "small_test.npz", *FRESH],
     "give both splits with the same channels and size"),
    ("SQLite URL with options", ["run", *FLAGS, "--storage", "sqlite:///file:s.db?mode=ro&uri=true"],
     "options after '?' are not supported on a SQLite URL"),
    ("x_test without y_test", ["run", "--data", "no_y_test.npz", *FRESH], "has x_test but no y_test"),
    ("one image", ["run", "--data", "one_image.npz", *FRESH], "1 training image(s) leave none to hold out"),
    ("one-pixel images", ["run", "--data", "one_px.npz", *FRESH], "images are 1x1 px; they must be at least 8 px"),
    ("a shape both layouts read", ["run", "--data", "either_layout.npz", *FRESH],
     "reads as 3x3-px images of 3 channels both as NHWC and as NCHW"),
    ("oblong images", ["run", "--data", "oblong.npz", *FRESH], "images must be square, got 32x20"),
    ("no channel axis", ["run", "--data", "no_channels.npz", *FRESH], "cannot find the channel axis"),
    ("string pixels", ["run", "--data", "strings.npz", *FRESH], "npz"),
    ("subset larger than the data", ["run", "--subset", "100000", *FRESH], "larger than the 120 training images"),
    ("subset below the classes", ["run", "--subset", "3", *FRESH], "smaller than the 10 classes"),
    ("unknown data format", ["run", "--data-format", "parquet", *FRESH], "invalid choice: 'parquet'"),
    ("run a rule at a latency budget", ["run", "--strategy", "fast", "--budget", "20ms", "--cost", "latency", *FRESH],
     "--strategy fast scales to a MAC budget"),
    ("run v2 with a cap below the baseline", ["run", "--strategy", "v2", "--max-resolution", "100", *FRESH],
     "--max-resolution: max_resolution 100 px is below the baseline's 224 px"),
    ("run an unknown rule", ["run", "--strategy", "linear", *FRESH], "invalid choice: 'linear'"),
    ("baseline with an unknown preset", ["baseline", "--preset", "turbo"], "unknown preset 'turbo'"),
    ("baseline with zero trials", ["baseline", "--trials", "0", "--preset", "smoke"], "'0' must be at least 1"),
    # ablate and report
    ("ablate config missing", ["ablate", "--config", "missing.json", *FLAGS], "missing.json does not exist"),
    ("ablate negative widths", ["ablate", "--widths", "1,-2", *FLAGS], "must list positive numbers"),
    ("ablate unknown figure", ["ablate", "--figure", "9", *FLAGS], "invalid choice: '9'"),
    ("fidelity against the proxy itself", ["fidelity", "--reference-epochs", "1", *FLAGS],
     "the reference regime equals the proxy"),
    ("fidelity with no epochs", ["fidelity", "--reference-epochs", "0", *FLAGS], "--reference-epochs must be"),
    ("fidelity wider than deployed", ["fidelity", "--reference-width", "2", *FLAGS], "--reference-width must be in"),
    ("fidelity above the deployment resolution", ["fidelity", "--reference-resolution", "400", *FLAGS],
     "reference regime: [proxy] resolution 400 px exceeds the deployment resolution"),
    ("compare an unknown rule", ["compare", "--strategies", "compound,linear", *FLAGS], "name two or more of"),
    ("compare one rule", ["compare", "--strategies", "fast", *FLAGS], "name two or more of"),
    ("compare at a MAC budget", ["compare", "--budget", "800M", *FLAGS], "give ratios above 1"),
    ("compare below the baseline", ["compare", "--budget", "0.5x", *FLAGS], "give ratios above 1"),
    ("compare with a cap below the baseline", ["compare", "--max-resolution", "100", "--study", "cmp", *FLAGS],
     "max_resolution 100 px is below the baseline's 224 px"),
    ("report of nothing", ["report", "nosuch"], "no study database at"),
    ("report in an unknown static format", ["report", "x", "--static", "gif"], "choose png, svg and/or pdf"),
    ("report on a corrupt file", ["report", "x", "--storage", "sqlite:///corrupt.db"], "is not a SQLite database"),
    ("report on an empty file", ["report", "x", "--storage", "sqlite:///empty.db"], "is not a SQLite database"),
    ("report on a folder", ["report", "x", "--storage", "sqlite:///dir.db"], "is a folder"),
    ("report on SQLite without a study", ["report", "x", "--storage", "sqlite:///plain.db"], "cannot read"),
    ("report of an unknown study", ["report", "other", "--storage", "sqlite:///studies/smoke-synthetic.db"],
     "no finished trials of study 'other'"),
    # train, latency, cost
    ("train below the stride", ["train", "b0", "--resolution", "8", "--preset", "smoke", "--no-progress"],
     "below the network's total stride"),
    ("train too large to fit", ["train", "b0", "--resolution", "20000", "--preset", "smoke", "--no-progress"],
     "needs about"),
    ("train unknown model", ["train", "b9", "--preset", "smoke"], "unknown model 'b9'"),
    ("train bad arch", ["train", "--arch", "xx_r1", "--preset", "smoke"], "block type 'xx'"),
    ("train on text data", ["train", "b0", "--data", "text.npz", "--preset", "smoke"], "not a .npz archive"),
    ("train on a missing GPU", ["train", "b0", "--device", "cuda", "--preset", "smoke"], "no CUDA GPU"),
    ("train processes that do not split the batch", ["train", "b0", "--preset", "smoke", "--processes", "3"],
     "must split into 3 equal shares"),
    ("train bad preset types", ["train", "b0", "--preset", "epochs.toml"], "[train] epochs must be a whole number"),
    ("latency below the stride", ["latency", "b0", "--resolution", "8"], "below the network's total stride"),
    ("latency too large", ["latency", "b0", "--resolution", "60000", "--batch", "64"], "needs about"),
    ("latency prediction without a table", ["latency", "b0", "--predict"], "run 'scaling-search latency calibrate"),
    ("onnxruntime prediction without its table", ["latency", "b0", "--predict", "--runtime", "onnxruntime"],
     "run 'scaling-search latency calibrate --device cpu --runtime onnxruntime' first"),
    ("latency unknown runtime", ["latency", "b0", "--runtime", "tflite"], "invalid choice: 'tflite'"),
    ("latency zero rounds", ["latency", "b0", "--rounds", "0"], "--rounds"),
    ("latency negative warm-up", ["latency", "b0", "--warmup", "-1"], "--warmup must be >= 0"),
    ("latency on a missing GPU", ["latency", "b0", "--device", "cuda"], "no CUDA GPU"),
    ("latency --from without calibrate", ["latency", "b0", "--from", "spec.json"], "use it with 'scaling-search "
     "latency calibrate --from"),
    ("adapt from a missing table", ["latency", "calibrate", "--from", "missing.json"], "--from missing.json: no such file"),
    ("adapt from broken JSON", ["latency", "calibrate", "--from", "bad.json"], "not a readable JSON latency table"),
    ("adapt from JSON that is no table", ["latency", "calibrate", "--from", "spec.json"],
     "not a scaling-search latency table"),
    ("cost unknown model", ["cost", "b9"], "unknown model 'b9'"),
    ("cost missing config", ["cost", "--config", "missing.json"], "missing.json does not exist"),
    ("cost negative width", ["cost", "b0", "--width", "-1"], "must be a positive number"),
    ("cost nothing named", ["cost"], "name model(s)"),
    ("cost incomplete arch string", ["cost", "--arch", "ir_r2_k3"], "arch string 'ir_r2_k3': missing"),
    ("cost zero resolution", ["cost", "b0", "--resolution", "0"], "must be at least 1"),
    ("unknown command", ["fly"], "invalid choice: 'fly'"),
    # bounds on what a user types, checked before any work (#27)
    ("storage folder that cannot be made", ["run", "--storage", "sqlite:////proc/nonexistent/x.db", *FRESH],
     "cannot create the storage folder"),
    ("password in a storage URL's query", ["run", "--storage", "nosuchdb://u@host/db?password=secret", *FRESH],
     "password=***"),
    ("report of a study named as a path", ["report", "../../x"], "study name '../../x' must be"),
    ("study name too long", ["run", *FLAGS, "--study", "x" * 101], "at most 100 characters"),
    ("grid step that would build millions of points", ["run", "--grid-step", "1e-9", *FRESH],
     "grid_step must be in [0.01, 1]"),
    ("grid reaching too far", ["run", "--grid-max", "100", *FRESH], "grid_max must be in (1, 4.0]"),
    ("a million workers", ["run", "--workers", "1000000", *FRESH], "workers must be in 1..64"),
    ("a million workers in a preset", ["run", "--preset", "manyworkers.toml"], "workers must be in 1..64"),
    ("more workers than cores", ["run", "--workers", str(CORES + 1), *FRESH],
     f"--workers {CORES + 1} is more than the {CORES} core(s) this process may use"),
    ("more workers than cores for fidelity", ["fidelity", "--workers", str(CORES + 1), *FRESH],
     "add --oversubscribe to start them anyway"),
    ("a billion epochs", ["run", "--epochs", "1000000000", *FRESH], "epochs must be in 1..100000"),
    ("a billion trials", ["run", "--trials", "1000000000", *FRESH], "trials must be in 1..1000"),
    ("a billion repeats", ["run", "--repeats", "1000000000", *FRESH], "repeats must be in 1..100"),
    ("negative seed", ["run", "--seed", "-1", *FRESH], "seed must be in 0..2147483647"),
    ("seed beyond 32 bits", ["run", "--seed", "99999999999", *FRESH], "seed must be in 0..2147483647"),
    ("infinite float in a preset", ["run", "--preset", "infinite.toml"], "[train] lr must be a finite number"),
    ("cost of a million-fold depth", ["cost", "b0", "--depth", "1000000"], "is above 100x"),
    ("train of a million-fold width", ["train", "b0", "--width", "1e6", "--preset", "smoke"], "is above 100x"),
    ("a preset that is not UTF-8", ["run", "--preset", "latin1.toml"], "not UTF-8 text"),
    ("--network beside --baseline", ["run", "--network", "b1", *FRESH], "both name the deployment network"),
    ("in-memory storage", ["run", "--storage", "sqlite:///:memory:", *FRESH], "keeps nothing once the command ends"),
    ("output that is a file", ["run", "--output", "notes.txt", *FRESH], "--output notes.txt is a file"),
    ("output under a file", ["export", "--output", "notes.txt/reports", *FLAGS], "notes.txt is a file"),
    ("ablate output that is a file", ["ablate", "--figure", "8", "--output", "notes.txt", *FLAGS], "is a file"),
    ("report into a file", ["report", "smoke-synthetic", "--output", "notes.txt"], "--output notes.txt is a file"),
]


@pytest.mark.parametrize(("argv", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(workdir, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("SCALING_SEARCH_CACHE", str(workdir / "no-latency-table"))
    before = _digests(workdir)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err and "secret" not in captured.err
    after = _digests(workdir)
    assert {name: after.get(name) for name in before} == before  # nothing saved changed or went
    # A refusal that comes once the data is loaded (the storage's, say) may leave the data it loaded in the machine's
    # dataset cache (the synthetic set, rendered once): a valid entry the next run maps. Nothing else is new.
    assert all(name.startswith("no-latency-table/datasets/") for name in set(after) - set(before)), sorted(after)


def test_the_battery_is_large_and_covers_every_subcommand():
    commands = {case[1][0] for case in CASES}
    assert len(CASES) >= 60
    assert commands >= {"run", "baseline", "grid", "export", "ablate", "compare", "fidelity", "report", "train",
                        "latency", "cost"}
