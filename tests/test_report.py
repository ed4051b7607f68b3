import pandas as pd
import pytest

from scaling_search import report


def _frame(rows):
    return pd.DataFrame(rows)


FIG3 = _frame([
    {"trial": i, "state": "complete", "dimension": d, "multiplier": m, "macs": 100 * m * (i + 1), "accuracy": 0.5 + 0.01 * i,
     "accuracy_std": std}
    for i, (d, m, std) in enumerate([("width", 1.0, 0.0), ("width", 1.4, 0.0), ("depth", 1.0, 0.0), ("depth", 2.0, 0.0),
                                     ("resolution", 1.0, 0.0), ("resolution", 1.3, 0.0)])
])


def test_figure3_has_one_panel_per_dimension_and_sorted_points():
    figure = report.draw_figure3(FIG3, " (trimmed)")
    assert [t.name for t in figure.data] == ["width", "depth", "resolution"]
    assert all(list(t.x) == sorted(t.x) for t in figure.data)
    assert "trimmed" in figure.layout.title.text
    assert figure.data[0].error_y.array is None  # no validation size and one seed: no noise known, no bars


def test_error_bars_are_95_percent_intervals_of_validation_and_seed_noise():
    import math

    one_seed = report.draw_figure3(FIG3.assign(val_images=1000)).data[0]
    assert list(one_seed.error_y.array) == pytest.approx(
        [1.96 * math.sqrt(a * (1 - a) / 1000) for a in one_seed.y])  # validation sampling alone
    seeded = report.draw_figure3(FIG3.assign(val_images=1000, accuracy_std=0.02, seeds=4)).data[0]
    assert list(seeded.error_y.array) == pytest.approx(
        [1.96 * math.sqrt(a * (1 - a) / 1000 + 0.02**2 / 4) for a in seeded.y])


def test_the_grid_accuracy_figure_puts_the_best_point_first_with_its_interval():
    grid = _frame([{"trial": i, "point": i, "state": "complete", "alpha": 1.0 + 0.1 * i, "beta": 1.0, "gamma": 1.1,
                    "achieved_ratio": 2.0, "accuracy": acc, "accuracy_std": None, "seeds": 1, "val_images": 1250}
                   for i, acc in enumerate([0.40, 0.46, 0.43])])
    trace = report.draw_grid_accuracy(grid).data[0]
    assert list(trace.y) == [0.46, 0.43, 0.40] and trace.x[0] == "1.1, 1, 1.1"
    assert all(0.02 < half < 0.03 for half in trace.error_y.array)  # about 2.7 points at 1,250 images


def test_pruned_points_are_not_drawn():
    frame = pd.concat([FIG3, _frame([{"trial": 9, "state": "pruned", "dimension": "width", "multiplier": 5.0,
                                      "macs": 10_000, "accuracy": None, "accuracy_std": None}])])
    assert len(report.draw_figure3(frame).data[0].x) == 2


def test_figure8_one_line_per_method():
    frame = _frame([{"trial": i, "state": "complete", "method": m, "macs": 10 * (i + 1), "accuracy": 0.3,
                     "accuracy_std": 0.0} for i, m in enumerate(["compound (paper)", "depth only", "width only"] * 2)])
    assert sorted(t.name for t in report.draw_figure8(frame).data) == ["compound (paper)", "depth only", "width only"]


def test_figure8_lines_start_from_the_common_baseline_point():
    rows = [{"trial": 0, "state": "complete", "method": "baseline", "macs": 10, "accuracy": 0.2, "accuracy_std": 0.0}]
    rows += [{"trial": i + 1, "state": "complete", "method": m, "macs": 20, "accuracy": 0.3, "accuracy_std": 0.0}
             for i, m in enumerate(["compound (paper)", "depth only"])]
    figure = report.draw_figure8(_frame(rows))
    assert sorted(t.name for t in figure.data) == ["compound (paper)", "depth only"]
    assert all(list(t.x) == [10, 20] and list(t.y) == [0.2, 0.3] for t in figure.data)
    assert "deployment MACs" in figure.layout.title.text


def test_pages_are_offline_and_the_index_links_everything(tmp_path):
    figures, tables = {"fig3": report.draw_figure3(FIG3)}, {"fig3_trials": FIG3}
    report.write_pages(tmp_path, figures, tables)
    index = report.write_index(tmp_path, "t", figures, tables, [])
    text = index.read_text()
    assert "href='fig3.html'" in text and "href='fig3_trials.csv'" in text
    assert text.count("<script src='plotly.min.js'></script>") == 1 and "cdn.plot.ly" not in text
    page = (tmp_path / "fig3.html").read_text()
    assert 'src="plotly.min.js"' in page and "cdn.plot.ly" not in page
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert pd.read_csv(tmp_path / "fig3_trials.csv").shape[0] == len(FIG3)


def test_trials_frame_skips_unfinished_and_idle():
    import optuna

    study = optuna.create_study(direction="maximize")
    study.enqueue_trial({}, user_attrs={"point": 0})
    study.optimize(lambda t: 0.5, n_trials=1)
    trial = study.ask()
    trial.set_user_attr("idle", True)
    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    frame = report.trials_frame(study)
    assert frame["trial"].tolist() == [0] and frame["value"].tolist() == [0.5]


@pytest.mark.parametrize("empty", [True])
def test_empty_points_frame_draws_nothing(empty):
    assert len(report.draw_figure4(_frame([{"trial": 0, "state": "pruned", "series": "a", "macs": 1,
                                            "multiplier": 1.0, "accuracy": None, "accuracy_std": None}])).data) == 0


def test_figure_notes_name_each_trimmed_dimension():
    from scaling_search.search.ablations import PAPER_DEPTHS, PAPER_WIDTHS
    from scaling_search.search.runner import _trimmed

    assert _trimmed("width", (1.0, 1.4), PAPER_WIDTHS) == "width 1, 1.4 of the paper's 1, 1.4, 1.8, 2.6, 3.8, 5"
    assert _trimmed("depth", PAPER_DEPTHS, PAPER_DEPTHS) == ""
    assert report.draw_figure3(FIG3, "").layout.title.text == "Figure 3: scaling one dimension of the baseline"
