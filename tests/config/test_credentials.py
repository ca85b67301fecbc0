"""The study's database password: from the URL, else XDRL_STUDY_PASSWORD, else search.study.password_file."""

import secrets

import pytest
from sqlalchemy.engine import make_url

from xdrl.config.credentials import STUDY_PASSWORD_ENV, read_secret_file, study_storage
from xdrl.config.errors import ConfigError

SQLITE = "sqlite:////data/runs/sweep/optuna.db"


@pytest.fixture
def canary(monkeypatch):
    monkeypatch.delenv(STUDY_PASSWORD_ENV, raising=False)
    return f"canary-pw-{secrets.token_hex(8)}"


def test_no_storage_is_the_experiments_sqlite_file(canary, monkeypatch):
    monkeypatch.setenv(STUDY_PASSWORD_ENV, canary)  # set for some other database: SQLite has no login
    storage = study_storage(None, None, SQLITE)
    assert (storage.url, storage.shown, storage.password_from) == (SQLITE, SQLITE, None)
    assert study_storage(SQLITE, None, "").url == SQLITE


def test_a_password_in_the_url_is_used_and_shown_as_stars(canary, monkeypatch):
    monkeypatch.setenv(STUDY_PASSWORD_ENV, "not-this-one")
    storage = study_storage(f"postgresql://xdrl:{canary}@db:5432/optuna", None, SQLITE)
    assert storage.url == f"postgresql://xdrl:{canary}@db:5432/optuna"
    assert storage.shown == "postgresql://xdrl:***@db:5432/optuna"
    assert storage.password_from == "the URL"
    assert canary not in repr(storage)


def test_the_environment_variable_comes_before_the_file(canary, monkeypatch, tmp_path):
    password_file = tmp_path / "db-password"
    password_file.write_text("from-the-file\n")
    monkeypatch.setenv(STUDY_PASSWORD_ENV, canary)
    storage = study_storage("postgresql://xdrl@db/optuna", str(password_file), SQLITE)
    assert make_url(storage.url).password == canary and storage.password_from == STUDY_PASSWORD_ENV
    assert storage.shown == "postgresql://xdrl:***@db/optuna"

    monkeypatch.delenv(STUDY_PASSWORD_ENV)
    storage = study_storage("postgresql://xdrl@db/optuna", str(password_file), SQLITE)
    assert make_url(storage.url).password == "from-the-file" and storage.password_from == str(password_file)


def test_a_stored_url_gets_its_password_from_the_node(canary, monkeypatch):
    monkeypatch.setenv(STUDY_PASSWORD_ENV, canary)
    storage = study_storage("postgresql://xdrl:***@db/optuna?sslmode=require", None, SQLITE)
    assert storage.url == f"postgresql://xdrl:{canary}@db/optuna?sslmode=require"


def test_a_stored_url_without_a_password_on_the_node_names_the_key_and_where_to_put_it(canary):
    with pytest.raises(ConfigError) as raised:
        study_storage("postgresql://xdrl:***@db/optuna", None, SQLITE)
    message = str(raised.value)
    assert raised.value.key == "search.study.storage" and "\n" not in message
    assert "XDRL_STUDY_PASSWORD" in message and "search.study.password_file" in message


def test_a_user_without_a_password_anywhere_is_left_to_the_server(canary):
    # PostgreSQL's own ways (~/.pgpass, trust, peer): xdrl adds nothing.
    assert study_storage("postgresql://xdrl@db/optuna", None, SQLITE).url == "postgresql://xdrl@db/optuna"


def test_special_characters_survive_the_trip_through_the_url(monkeypatch):
    password = "p@ss/w:{0}%&?#"
    monkeypatch.setenv(STUDY_PASSWORD_ENV, password)
    storage = study_storage("postgresql://xdrl@db/optuna", None, SQLITE)
    assert make_url(storage.url).password == password
    # Optuna fills "{SCHEMA_VERSION}" into the URL with str.format: the braces must be escaped.
    assert storage.url.format(SCHEMA_VERSION=12) == storage.url


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_an_unreadable_or_empty_password_file_is_a_config_error(canary, tmp_path, content):
    path = tmp_path / "db-password"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as raised:
        study_storage("postgresql://xdrl@db/optuna", str(path), SQLITE)
    assert raised.value.key == "search.study.password_file" and raised.value.value == str(path)


def test_a_secret_file_error_never_repeats_the_content(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(b"\xff\xfe canary-" + secrets.token_hex(8).encode())  # not text
    with pytest.raises(ConfigError) as raised:
        read_secret_file(str(path), "logger.api_key_file", "the W&B API key")
    assert "canary" not in str(raised.value) and str(path) in str(raised.value)


def test_a_url_sqlalchemy_cannot_read_is_a_config_error_without_its_password(canary):
    with pytest.raises(ConfigError) as raised:
        study_storage(f"not a url://xdrl:{canary}@db", None, SQLITE)
    assert raised.value.key == "search.study.storage" and canary not in str(raised.value)
