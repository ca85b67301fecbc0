"""Passwords kept out of what xdrl writes and prints: every ``scheme://user:password@`` in it, redacted.

A database URL may carry its password (``postgresql://xdrl:s3cret@db/optuna``). What xdrl
stores (``xdrl_experiment.yaml``), prints (``xdrl tune``'s summary) or logs holds it as
``postgresql://xdrl:***@db/optuna``, the form SQLAlchemy's
``make_url(url).render_as_string(hide_password=True)`` gives; the URL with the password
lives in memory only, where Optuna opens the study (:mod:`xdrl.config.credentials`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: What stands for a password in a redacted URL (SQLAlchemy's own placeholder).
REDACTED = "***"

# SQLAlchemy's URL grammar (sqlalchemy.engine.url._parse_url): user up to ":" or "/", then the password.
# The password runs to the last "@" of the word, not the first: an "@" the user did not escape
# (p@ss) would otherwise leave the rest of the password in the open.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][\w+.\-]*://[^:/@\s]*):(?P<password>\S*)@")


def hide_password(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``.

    Examples:
        >>> hide_password("postgresql://xdrl:s3cret@db.internal:5432/optuna")
        'postgresql://xdrl:***@db.internal:5432/optuna'
        >>> hide_password("search.study.storage=mysql+pymysql://root:p@ss@db/optuna")
        'search.study.storage=mysql+pymysql://root:***@db/optuna'
        >>> hide_password("postgresql://xdrl@db/optuna"), hide_password("sqlite:////data/optuna.db")
        ('postgresql://xdrl@db/optuna', 'sqlite:////data/optuna.db')
    """
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@" if m["password"] else m[0], text)


def hide_passwords(value: Any) -> Any:
    """A copy of ``value`` (mappings, lists, strings) with :func:`hide_password` applied to every string.

    Examples:
        >>> hide_passwords({"study": {"storage": "postgresql://u:pw@h/db", "name": None}, "o": ["a=b"]})
        {'study': {'storage': 'postgresql://u:***@h/db', 'name': None}, 'o': ['a=b']}
    """
    if isinstance(value, str):
        return hide_password(value)
    if isinstance(value, Mapping):
        return {key: hide_passwords(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(hide_passwords(item) for item in value)
    return value


def has_password(text: str) -> bool:
    """Whether ``text`` holds a URL with a password (the redacted ``***`` is none).

    Examples:
        >>> has_password("postgresql://u:pw@h/db"), has_password("postgresql://u:***@h/db"), has_password("u@h")
        (True, False, False)
    """
    return any(m["password"] and m["password"] != REDACTED for m in _URL_PASSWORD.finditer(text))
