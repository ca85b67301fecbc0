"""URL passwords never reach what xdrl stores: redaction as SQLAlchemy does it, applied on write."""

import secrets

import pytest
import yaml
from sqlalchemy.engine import make_url

from tests.helpers import files_containing
from xdrl.records import experiment
from xdrl.records.redaction import REDACTED, has_password, hide_password, hide_passwords

URLS_WITH_PASSWORDS = [
    "postgresql://xdrl:s3cret@db.internal:5432/optuna",
    "postgresql+psycopg2://xdrl:s3cret@db.internal/optuna?sslmode=require",
    "mysql+pymysql://root:pa%40ss@10.0.0.7:3306/optuna",
    "postgresql://:s3cret@db/optuna",
    "postgresql://xdrl:s3cret@[::1]:5432/optuna",
]


@pytest.mark.parametrize("url", URLS_WITH_PASSWORDS)
def test_redaction_is_sqlalchemys_hide_password(url):
    assert hide_password(url) == make_url(url).render_as_string(hide_password=True)
    assert has_password(url) and not has_password(hide_password(url))
    assert hide_password(hide_password(url)) == hide_password(url)  # a stored URL stays as it is


@pytest.mark.parametrize(
    "text",
    ["sqlite:////data/optuna.db", "postgresql://xdrl@db/optuna", "s3://bucket/runs", "runs/tune", "a=b", ""],
)
def test_text_without_a_url_password_is_left_alone(text):
    assert hide_password(text) == text and not has_password(text)


def test_an_unescaped_at_in_the_password_is_hidden_whole():
    # SQLAlchemy would read the password as "p" (and the host as "ss@db"): all of it is the user's secret.
    assert hide_password("postgresql://xdrl:p@ss@db/optuna") == f"postgresql://xdrl:{REDACTED}@db/optuna"


def test_nested_values_are_redacted_and_left_unchanged_otherwise():
    value = {"a": ["x=postgresql://u:pw@h/db", ("keep", 1)], "b": None, "c": 2.5}
    assert hide_passwords(value) == {"a": ["x=postgresql://u:***@h/db", ("keep", 1)], "b": None, "c": 2.5}
    assert value["a"][0] == "x=postgresql://u:pw@h/db"  # a copy: the caller's data keeps the password


def test_the_base_config_is_stored_without_the_password(tmp_path):
    canary = f"canary-pw-{secrets.token_hex(8)}"
    url = f"postgresql://xdrl:{canary}@127.0.0.1:5432/optuna"
    base = {"seed": 0, "search": {"study": {"storage": url, "name": None, "password_file": None}}}
    overrides = ["experiment=cartpole_ppo", f"search.study.storage={url}", f"+search.note='{url}'"]
    experiment.write_base_config(str(tmp_path), base, overrides)

    assert files_containing(canary, tmp_path) == []
    stored, stored_overrides = experiment.read_base_config(str(tmp_path))
    assert stored["search"]["study"]["storage"] == "postgresql://xdrl:***@127.0.0.1:5432/optuna"
    assert stored_overrides[1] == "search.study.storage=postgresql://xdrl:***@127.0.0.1:5432/optuna"
    assert base["search"]["study"]["storage"] == url  # the caller's plan keeps it, in memory
    assert yaml.safe_load((tmp_path / experiment.BASE_CONFIG).read_text())["seed"] == 0
