"""The study's storage on a real password-protected PostgreSQL: the password works, and no pickle holds it."""

import pickle
import secrets

import optuna
import pytest
import ray.cloudpickle

from tests.deploy.postgres_server import postgres_server, unavailable
from tests.helpers import files_containing
from xdrl.config import compose_config
from xdrl.config.credentials import STUDY_PASSWORD_ENV, study_storage
from xdrl.config.errors import ConfigError
from xdrl.config.search import parse_search
from xdrl.distributed.search import make_searcher
from xdrl.distributed.study import StudyRDBStorage

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"PostgreSQL: {unavailable()}")

PASSWORD = f"canary-pw-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def server():
    with postgres_server(PASSWORD) as running:
        yield running


@pytest.fixture(autouse=True)
def no_password(monkeypatch):
    monkeypatch.delenv(STUDY_PASSWORD_ENV, raising=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_server_checks_the_password(server):
    with pytest.raises(Exception, match="password authentication failed") as raised:
        optuna.storages.RDBStorage(server.url("not-the-password"))
    assert "not-the-password" not in str(raised.value)  # SQLAlchemy prints URLs as ***


@pytest.mark.parametrize("dumps", [pickle.dumps, ray.cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_the_pickled_storage_holds_no_password_and_gets_it_back_from_the_node(server, monkeypatch, dumps):
    monkeypatch.setenv(STUDY_PASSWORD_ENV, PASSWORD)
    storage = StudyRDBStorage(study_storage(server.url(), None, default=""), password_file=None)
    study = optuna.create_study(storage=storage, study_name=f"pickled-{dumps.__module__}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    state = dumps(study)  # Tune pickles the searcher, and the study and storage with it

    assert PASSWORD.encode() not in state
    restored = pickle.loads(state)
    assert len(restored.trials) == 2 and restored._storage is not None

    monkeypatch.delenv(STUDY_PASSWORD_ENV)
    with pytest.raises(ConfigError, match=r"^search.study.storage='postgresql\+pg8000://xdrl:\*\*\*@"):
        pickle.loads(state)


def test_a_password_file_is_named_in_the_pickle_and_read_again(server, monkeypatch, tmp_path):
    password_file = tmp_path / "db-password"
    password_file.write_text(PASSWORD)
    storage = StudyRDBStorage(study_storage(server.url(), str(password_file), default=""), str(password_file))
    restored = pickle.loads(pickle.dumps(storage))
    assert restored.url == server.url(PASSWORD)


def test_the_searchers_saved_state_holds_no_password(server, monkeypatch, tmp_path):
    """Ray's OptunaSearch as xdrl builds it, saved and restored as Tune does on ``--resume``."""
    monkeypatch.setenv(STUDY_PASSWORD_ENV, PASSWORD)
    overrides = [f"search.study.storage={server.url()}", "search.study.name=saved"]
    search = parse_search(compose_config(["experiment=cartpole_ppo", "search=optuna", *overrides]))
    searcher = make_searcher(search, "saved", tmp_path)
    searcher.set_search_properties(search.metric, search.mode, {"lr": ray.tune.uniform(0.0, 1.0)})
    searcher.suggest("trial-1")
    searcher.save_to_dir(str(tmp_path), session_str="s")

    assert files_containing(PASSWORD, tmp_path) == []
    again = make_searcher(search, "saved", tmp_path / "elsewhere")
    again.restore_from_dir(str(tmp_path))
    assert len(again._ot_study.trials) == 1
