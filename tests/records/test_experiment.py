"""The experiment directory's files, in a local directory and behind a storage URI (``file://``)."""

import json

import pytest

from xdrl.records import experiment


@pytest.fixture(params=["path", "uri"])
def location(request, tmp_path):
    """One experiment, addressed as a local path or as a storage URI; and where its files land."""
    directory = tmp_path / "storage" / "sweep"
    return (str(directory) if request.param == "path" else f"file://{directory}"), directory


def test_files_round_trip(location):
    where, directory = location
    assert experiment.read_experiment_file(where, "note.txt") is None
    experiment.write_experiment_file(where, "note.txt", "first")
    experiment.write_experiment_file(where, "note.txt", "second")  # replaced, not appended
    assert experiment.read_experiment_file(where, "note.txt") == "second"
    assert sorted(p.name for p in directory.iterdir()) == ["note.txt"]  # no temporary file left behind


def test_base_config_keeps_its_overrides_apart(location):
    where, directory = location
    assert experiment.read_base_config(where) is None
    experiment.write_base_config(where, {"seed": 3, "search": {"metric": "m"}}, ["experiment=cartpole_ppo"])
    stored = (directory / experiment.BASE_CONFIG).read_text()
    assert stored.index("seed") < stored.index(experiment.OVERRIDES_KEY)  # config order kept, overrides last
    assert experiment.read_base_config(where) == ({"seed": 3, "search": {"metric": "m"}}, ["experiment=cartpole_ppo"])


def test_location_of_an_experiment():
    assert experiment.experiment_location("file:///data/runs", "sweep") == "file:///data/runs/sweep"
    assert experiment.experiment_location("gs://bucket", "sweep") == "gs://bucket/sweep"
    assert experiment.experiment_location("/data/runs", "sweep") == "/data/runs/sweep"


def test_confirmation_lives_beside_the_search(tmp_path):
    search = tmp_path / "sweep"
    summary = {"candidates": [{"rank": 1, "iqm": 2.5}], "probability_of_improvement": []}
    path = experiment.write_confirmation(search, summary)
    assert path == tmp_path / "sweep-confirm" / experiment.CONFIRM_FILE
    assert json.loads(path.read_text()) == summary
    assert experiment.read_confirmation(search) == summary
    assert experiment.read_confirmation(tmp_path / "other") is None


def test_train_command_drops_the_search_overrides():
    overrides = ["experiment=cartpole_ppo", "search=optuna", "search.num_samples=3", "~search.asha", "seed=1"]
    command = experiment.train_command(overrides, {"algo.lr": 0.001, "algo.epochs": 4})
    assert command == "xdrl train experiment=cartpole_ppo seed=1 algo.lr=0.001 algo.epochs=4"
