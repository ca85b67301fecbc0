"""Optuna's RDB storage for a Tune search: its database password stays out of Tune's pickles.

Ray Tune pickles the searcher into the experiment (``tuner.pkl``, ``searcher-state-*.pkl``),
and with it the storage. Optuna's ``RDBStorage`` pickles its URL as given, password and all;
:class:`StudyRDBStorage` pickles the URL with the password as ``***`` and, unpickled on
``xdrl tune --resume``, takes the password from the driver's node again
(``XDRL_STUDY_PASSWORD`` or ``search.study.password_file``, see :mod:`xdrl.config.credentials`).

Relies on ``RDBStorage``'s pickled state being its ``__dict__`` with the URL under ``url``
(verified on optuna 5.0.0): ``tests/distributed/test_study.py`` pickles a study on a real
password-protected PostgreSQL and fails when a release changes that.
"""

from __future__ import annotations

from typing import Any

import optuna

from xdrl.config.credentials import StudyStorage, study_storage


class StudyRDBStorage(optuna.storages.RDBStorage):
    """An ``optuna.storages.RDBStorage`` whose pickled state holds no password.

    Examples:
        >>> import pickle, tempfile
        >>> url = f"sqlite:///{tempfile.mkdtemp()}/optuna.db"
        >>> storage = StudyRDBStorage(StudyStorage(url, url, None), password_file=None)
        >>> pickle.loads(pickle.dumps(storage)).url == url
        True
    """

    def __init__(self, storage: StudyStorage, password_file: str | None) -> None:
        self._shown_url = storage.shown
        self._password_file = password_file
        super().__init__(storage.url)

    def __getstate__(self) -> dict[Any, Any]:
        return {**super().__getstate__(), "url": self._shown_url}

    def __deepcopy__(self, memo: dict[int, Any]) -> StudyRDBStorage:
        # A copy in this process keeps the password it has (no trip through the pickled state).
        return StudyRDBStorage(StudyStorage(self.url, self._shown_url, None), self._password_file)

    def __setstate__(self, state: dict[Any, Any]) -> None:
        url = study_storage(state["url"], state["_password_file"], default="").url
        super().__setstate__({**state, "url": url})
