"""Tune's saved experiment state, read through Ray's ``ExperimentAnalysis`` while Tune may be rewriting it.

``ExperimentAnalysis`` reads the newest ``experiment_state-*.json`` of an experiment with
Ray's own deserialisation (``Trial.from_json_state``): each trial's id, config, failures
and directory. It only reads: the experiment is left as it was, whether Tune finished,
was interrupted or is still running.

Two things it does not do, and this module adds:

- Tune rewrites the state file in place (``TuneController.save_to_dir``, ray 2.60.0), so
  a reader of a running experiment can catch it half written. The read is tried again
  until the file parses (the next save completes it within milliseconds).
- It reports a trial that is RUNNING as PENDING: ``Trial.__setstate__`` (ray 2.60.0) rewrites
  the status the way a *resume* must see it. The report and the tests want the status Tune
  saved, so it is read from the same file (see :func:`xdrl._compat.saved_trial_statuses`).
"""

from __future__ import annotations

import json
import logging
import pathlib
import time
from typing import Any

from xdrl._compat import saved_trial_statuses

#: How often, and how far apart, :func:`tune_state` reads a state file that does not parse. Tune rewrites
#: ``experiment_state-*.json`` in place, so a report on a running experiment can catch it half written;
#: the next save completes it within milliseconds, the window here is ample on a loaded machine.
STATE_READ_ATTEMPTS = 10
STATE_READ_DELAY_S = 0.1
#: Tune's name for its experiment state files (``TuneController.CKPT_FILE_TMPL``, ray 2.60.0).
STATE_PATTERN = "experiment_state-*.json"


class ExperimentStateError(json.JSONDecodeError):
    """Tune's experiment state file never parsed, however long it was waited for.

    A ``json.JSONDecodeError`` so that callers which treat an unreadable state as "Tune is writing
    it right now" (polling tests, for one) keep working unchanged.
    """

    def __init__(self, msg: str, doc: str, pos: int, path: pathlib.Path | None = None) -> None:
        super().__init__(msg, doc, pos)
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:  # JSONDecodeError's own drops ``path``
        return self.__class__, (self.msg, self.doc, self.pos, self.path)


def _newest_state(directory: pathlib.Path) -> pathlib.Path | None:
    # The newest is the greatest name (a timestamp), the rule of Ray's own lookup.
    states = sorted(directory.glob(STATE_PATTERN))
    return states[-1] if states else None


def _analysis(path: pathlib.Path) -> Any:
    from ray.tune import ExperimentAnalysis

    # Given the file rather than the directory, it reads the same state as saved_trial_statuses. It also
    # loads every trial's results eagerly and warns for each trial without any yet (pending, or started
    # after the state was saved): expected while an experiment runs, so not shown.
    analysis_log = logging.getLogger("ray.tune.analysis.experiment_analysis")
    level = analysis_log.level
    analysis_log.setLevel(logging.ERROR)
    try:
        return ExperimentAnalysis(str(path))
    finally:
        analysis_log.setLevel(level)


def tune_state(
    directory: str | pathlib.Path, *, attempts: int = STATE_READ_ATTEMPTS, delay: float = STATE_READ_DELAY_S
) -> dict[str, dict[str, Any]]:
    """Trial id -> status, config, directory name and failures, from Tune's newest experiment state.

    Args:
        directory: The experiment directory.
        attempts: Reads of a state file that does not parse before giving up.
        delay: Seconds between those reads.

    Returns:
        ``{trial_id: {"status", "config", "dirname", "failures"}}``; empty before Tune saved a state.
        ``dirname`` is the trial's directory name, ``None`` for a trial that has not started.

    Raises:
        ExperimentStateError: when the newest state file still does not parse after ``attempts`` reads.
    """
    directory = pathlib.Path(directory)
    error: json.JSONDecodeError | None = None
    path = None
    for attempt in range(attempts):
        if attempt:
            time.sleep(delay)
        # Looked up again on every attempt: Tune may have started a newer file (or removed this one) meanwhile.
        path = _newest_state(directory)
        if path is None:
            return {}
        try:
            analysis = _analysis(path)
            statuses = saved_trial_statuses(path)
        except FileNotFoundError:
            continue
        except json.JSONDecodeError as torn:
            error = torn
            continue
        return {
            trial.trial_id: {
                # Tune may have saved the file again between the two reads: Ray's status is the fallback.
                "status": statuses.get(trial.trial_id, trial.status),
                "config": trial.config,
                "dirname": trial.storage.trial_dir_name,
                "failures": trial.num_failures,
            }
            for trial in analysis.trials
        }
    if error is None:  # every file listed vanished before it could be read
        return {}
    raise ExperimentStateError(
        f"Tune's experiment state {path} is not valid JSON after {attempts} reads {delay:g} s apart "
        f"(torn by an interrupted write?): {error.msg}",
        error.doc,
        error.pos,
        path,
    )
