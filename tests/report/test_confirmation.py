"""The confirmation summary (``confirm.json``) and how ``xdrl report`` shows it, without Ray."""

import numpy as np
import pytest

from tests.report.test_build import driven_by_x, experiment_dir
from xdrl.records.experiment import read_confirmation, write_confirmation
from xdrl.report.build import build_report
from xdrl.report.confirmation import render, summarize

pytestmark = pytest.mark.slow


def test_summary_of_two_candidates():
    scores = {0: [10.0, 30.0, 20.0, 40.0], 1: [5.0, 15.0, 25.0, 35.0]}
    summary = summarize([{"lr": 0.001}, {"lr": 0.01}], ["t1", "t2"], scores)
    first, second = summary["candidates"]
    assert (first["rank"], first["search_trial"], first["params"]) == (1, "t1", {"lr": 0.001})
    assert first["iqm"] == pytest.approx((20 + 30) / 2) and second["iqm"] == pytest.approx((15 + 25) / 2)
    assert first["ci95"][0] <= first["iqm"] <= first["ci95"][1]
    # P(1 > 2) by hand: of the 16 pairs, 1 beats 2 in 10 (10>5, 20>5,15, 30>5,15,25, 40>all four).
    (pair,) = [p for p in summary["probability_of_improvement"] if (p["x"], p["y"]) == (1, 2)]
    assert pair["p"] == pytest.approx(10 / 16)
    assert pair["ci95"][0] <= pair["p"] <= pair["ci95"][1]


def test_a_candidate_without_finished_runs_has_no_statistics():
    summary = summarize([{"lr": 0.001}, {"lr": 0.01}], ["t1", "t2"], {0: [1.0, 2.0]})
    assert summary["candidates"][1]["iqm"] is None and summary["candidates"][1]["ci95"] is None
    assert summary["probability_of_improvement"] == []
    assert render(summary).splitlines()[2].startswith("2     t2            -")


def test_report_shows_the_confirmation_of_its_search(tmp_path):
    directory = experiment_dir(tmp_path / "sweep", driven_by_x, ["score"], ["max"])
    assert build_report(directory).confirmation is None
    summary = summarize([{"x": 0.9}, {"x": 0.8}], ["t1", "t2"], {0: list(np.arange(5.0)), 1: [0.0, 1.0]})
    write_confirmation(directory, summary)
    assert read_confirmation(directory) == summary
    report = build_report(directory)
    assert report.confirmation == summary
    markdown = report.markdown.read_text()
    assert "## Seeds: the best configurations again (`xdrl confirm`)" in markdown
    assert render(summary) in markdown
