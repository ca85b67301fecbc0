"""Where the W&B API key and the study's database password come from: the node, never a config or a job.

Secrets live on the machine that uses them: in the environment of the process (a Kubernetes
secret as pod env) or in a file (a secret volume, a file the cluster launcher copies to each
node). A config names at most the *file*; xdrl reads it when a run (W&B key) or the driver
(database password) starts and keeps the secret in memory. What xdrl writes or prints holds
URLs with the password as ``***`` (:mod:`xdrl.records.redaction`).

- W&B: :func:`xdrl.builder.loggers.wandb_api_key` (``WANDB_API_KEY``, ``wandb login``,
  ``logger.api_key_file``, :data:`WANDB_API_KEY_FILE_ENV`).
- Optuna's RDB: :func:`study_storage` (a password in the URL, :data:`STUDY_PASSWORD_ENV`,
  ``search.study.password_file``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

from xdrl.config.errors import ConfigError
from xdrl.records.redaction import REDACTED, hide_password

#: Names a file holding the W&B API key on the node (what a launcher sets on every node).
WANDB_API_KEY_FILE_ENV = "XDRL_WANDB_API_KEY_FILE"
#: The database password of ``search.study.storage``, in the environment of the driver's node.
STUDY_PASSWORD_ENV = "XDRL_STUDY_PASSWORD"


def read_secret_file(path: str, key: str, holding: str) -> str:
    """The secret in the file at ``path`` (``~`` expanded; surrounding whitespace dropped).

    Args:
        path: the file.
        key: the config key or environment variable that named it (for the error).
        holding: what the file holds (for the error).

    Raises:
        ConfigError: the file cannot be read or is empty (the message names the path, never the content).

    Examples:
        >>> import tempfile
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (folder / "key").write_text("  0123abcd\\n")
        >>> read_secret_file(str(folder / "key"), "logger.api_key_file", "the W&B API key")
        '0123abcd'
        >>> read_secret_file(str(folder / "none"), "logger.api_key_file", "the W&B API key")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: logger.api_key_file='.../none' is not accepted: expected a readable file holding the W&B API key ...
    """
    where = "on this node (the machine that runs this process)"
    try:
        secret = pathlib.Path(path).expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(key, path, f"a readable file holding {holding} {where}") from None
    if not secret:
        raise ConfigError(key, path, f"a file holding {holding} {where} (it is empty)")
    return secret


@dataclasses.dataclass(frozen=True)
class StudyStorage:
    """Optuna's RDB URL in two forms: the one Optuna opens and the one xdrl shows."""

    #: The URL with its password, for Optuna only: kept in memory, out of reprs.
    url: str = dataclasses.field(repr=False)
    #: The URL with the password as ``***``: what is stored, printed and logged.
    shown: str
    #: Where the password came from (the URL, :data:`STUDY_PASSWORD_ENV` or a file), ``None`` without one.
    password_from: str | None


def study_storage(storage: str | None, password_file: str | None, default: str) -> StudyStorage:
    """The study's URL with its password, taken from the driver's node when the URL has none.

    A URL naming a user without a password (``postgresql://xdrl@db/optuna``), or with the ``***``
    of a stored experiment, gets the password of :data:`STUDY_PASSWORD_ENV`, else the content of
    ``password_file``. A password written into the URL is used as it is. A URL without a user
    (SQLite) is left alone.

    Args:
        storage: ``search.study.storage`` (``None``: ``default``).
        password_file: ``search.study.password_file``.
        default: the URL when ``storage`` is ``None`` (the SQLite file of the experiment).

    Raises:
        ConfigError: ``storage`` is no database URL; a stored URL (``***``) and no password on this
            node; ``password_file`` named but unreadable.

    Examples:
        >>> os.environ[STUDY_PASSWORD_ENV] = "pw"
        >>> study_storage("postgresql://xdrl@db/optuna", None, "")
        StudyStorage(shown='postgresql://xdrl:***@db/optuna', password_from='XDRL_STUDY_PASSWORD')
        >>> _.url
        'postgresql://xdrl:pw@db/optuna'
        >>> del os.environ[STUDY_PASSWORD_ENV]
        >>> study_storage("postgresql://xdrl:***@db/optuna", None, "")
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: search.study.storage='postgresql://xdrl:***@db/optuna' is not accepted: expected the database password in XDRL_STUDY_PASSWORD or in a file named by search.study.password_file, on the driver's node (the URL is stored without it)
    """
    if storage is None:
        return StudyStorage(default, hide_password(default), None)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    shown = hide_password(storage)
    try:
        url = make_url(storage)
    except ArgumentError:
        raise ConfigError(
            "search.study.storage", shown, "an Optuna RDB URL such as postgresql://xdrl@db.internal/optuna"
        ) from None
    if url.password and url.password != REDACTED:
        return StudyStorage(storage, shown, "the URL")
    if url.password is None and not url.username:
        return StudyStorage(storage, shown, None)  # SQLite, or a server that needs no login
    password, source = _node_password(password_file)
    if password is None:
        if url.password == REDACTED:
            raise ConfigError(
                "search.study.storage",
                shown,
                f"the database password in {STUDY_PASSWORD_ENV} or in a file named by search.study.password_file, "
                "on the driver's node (the URL is stored without it)",
            )
        return StudyStorage(storage, shown, None)  # the server's own way: .pgpass, trust, peer
    full = url.set(password=password).render_as_string(hide_password=False)
    return StudyStorage(full, hide_password(full), source)


def _node_password(password_file: str | None) -> tuple[str | None, str | None]:
    if os.environ.get(STUDY_PASSWORD_ENV):
        return os.environ[STUDY_PASSWORD_ENV], STUDY_PASSWORD_ENV
    if password_file:
        return read_secret_file(password_file, "search.study.password_file", "the database password"), password_file
    return None, None
