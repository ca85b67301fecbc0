"""Parameter importances in each objective's direction, and a report that leaves no temporary files behind.

Synthetic Optuna studies made directly with Optuna (no Ray): the report reads the study of an
experiment directory the way ``xdrl tune`` leaves it (``xdrl_experiment.yaml`` and ``optuna.db``).
"""

import os
import pathlib
import tempfile

import optuna
import pytest
import yaml
from PIL import Image

from xdrl.report.build import build_report, param_importances

optuna.logging.set_verbosity(optuna.logging.WARNING)


def driven_by_x(trial):
    """A maximised score that x drives and y does not touch."""
    x = trial.suggest_float("x", 0.0, 1.0)
    trial.suggest_float("y", 0.0, 1.0)
    return 10.0 * x


def good_from_one_bad_from_the_other(trial):
    """Two objectives where the parameter behind the GOOD values is not the one behind the BAD values.

    ``reward`` (maximised): high values need a high x; y < 0.1 ruins it. ``cost`` (minimised): low
    values need a low y; x < 0.1 ruins it. An evaluator that reads an objective in the wrong direction
    ranks the parameter that ruins it first, so the ranking shows whether the direction was honoured.
    """
    x = trial.suggest_float("x", 0.0, 1.0)
    y = trial.suggest_float("y", 0.0, 1.0)
    return x - 100.0 * (y < 0.1), y + 100.0 * (x < 0.1)


def make_study(objective, directions, storage=None, trials=200, seed=0):
    study = optuna.create_study(
        study_name="search",
        storage=storage,
        directions=directions,
        sampler=optuna.samplers.RandomSampler(seed=seed),
    )
    study.optimize(objective, n_trials=trials)
    return study


def experiment_dir(path, objective, metrics, modes):
    """A directory as ``xdrl tune`` leaves it for the report: its base config and its Optuna study."""
    path.mkdir()
    search = {
        "searcher": "optuna",
        "scheduler": "none",
        "num_samples": 200,
        "metric": metrics if len(metrics) > 1 else metrics[0],
        "mode": modes if len(modes) > 1 else modes[0],
        "study": {"name": "search", "storage": None},
    }
    (path / "xdrl_experiment.yaml").write_text(yaml.safe_dump({"search": search, "env": {}, "_overrides": []}))
    directions = ["maximize" if m == "max" else "minimize" for m in modes]
    make_study(objective, directions, storage=f"sqlite:///{path / 'optuna.db'}")
    return path


def test_the_parameter_that_drives_a_maximised_objective_ranks_first():
    study = make_study(driven_by_x, ["maximize"])
    evaluator, importances = param_importances(study, ["score"])
    assert evaluator == "PED-ANOVA"  # Optuna 5's default evaluator, named as such (not fANOVA)
    assert list(importances) == ["score"]
    assert list(importances["score"]) == ["x", "y"]
    assert importances["score"]["x"] > 0.9 and sum(importances["score"].values()) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1])
def test_each_objective_ranks_the_parameter_behind_its_good_values(seed):
    study = make_study(good_from_one_bad_from_the_other, ["maximize", "minimize"], seed=seed)
    _, importances = param_importances(study, ["reward", "cost"])
    assert next(iter(importances["reward"])) == "x" and importances["reward"]["x"] > 0.8
    assert next(iter(importances["cost"])) == "y" and importances["cost"]["y"] > 0.8
    # The same study read as "lower is better" throughout (Optuna's reading of a plain target)
    # ranks y first for reward: the direction above is what puts x there.
    with pytest.warns(UserWarning, match="low `target` values"):
        naive = optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
    assert next(iter(naive)) == "y"


def test_the_only_objective_of_a_maximised_study_is_read_in_its_direction():
    study = make_study(lambda t: good_from_one_bad_from_the_other(t)[0], ["maximize"])
    _, importances = param_importances(study, ["reward"])
    assert next(iter(importances["reward"])) == "x"


def test_importances_need_two_finished_trials():
    study = make_study(driven_by_x, ["maximize"], trials=1)
    with pytest.raises(ValueError, match="1 completed trial"):
        param_importances(study, ["score"])


def assert_figure(path):
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        width, height = image.size
    assert width >= 400 and height >= 250


def open_files_under(directory: pathlib.Path) -> list[str]:
    """Paths under ``directory`` that this process holds open (Linux: /proc/self/fd)."""
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:  # closed between listdir and readlink
            continue
    return [t for t in targets if t.startswith(str(directory))]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A temporary directory of the test's own, for tempfile (other processes share the system one)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.mark.slow
def test_report_labels_importances_and_deletes_its_copy_of_the_study(tmp_path, scratch):
    directory = experiment_dir(tmp_path / "max-search", driven_by_x, ["score"], ["max"])
    before = sorted(scratch.glob("xdrl-report-*"))
    report = build_report(directory)
    assert sorted(scratch.glob("xdrl-report-*")) == before == []
    assert open_files_under(scratch) == []  # the copy's SQLite connection was closed, not just unlinked
    assert report.data.study is not None and len(report.data.study.trials) == 200  # read from that copy
    assert report.importance_evaluator == "PED-ANOVA" and next(iter(report.importances["score"])) == "x"
    assert_figure(report.figures["param_importances"])
    markdown = report.markdown.read_text()
    assert "## Parameter importances (Optuna, PED-ANOVA)" in markdown and "fANOVA" not in markdown
    assert "`score` (higher is better)" in markdown and "Most important: `score`: `x`." in markdown
    build_report(directory)  # every call cleans up after itself
    assert sorted(scratch.glob("xdrl-report-*")) == []


@pytest.mark.slow
def test_report_ranks_importances_per_objective(tmp_path, scratch):
    directory = experiment_dir(
        tmp_path / "two-objectives", good_from_one_bad_from_the_other, ["reward", "cost"], ["max", "min"]
    )
    report = build_report(directory)
    assert {m: next(iter(v)) for m, v in report.importances.items()} == {"reward": "x", "cost": "y"}
    assert_figure(report.figures["param_importances"])
    assert "Most important: `reward`: `x`; `cost`: `y`." in report.markdown.read_text()
    assert sorted(scratch.glob("xdrl-report-*")) == []
