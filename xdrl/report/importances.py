"""Optuna's parameter importances, per objective and in each objective's direction."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

#: Readable names of Optuna's importance evaluators (class name -> label of the figure and report.md).
EVALUATOR_NAMES = {
    "PedAnovaImportanceEvaluator": "PED-ANOVA",
    "FanovaImportanceEvaluator": "fANOVA",
    "MeanDecreaseImpurityImportanceEvaluator": "mean decrease impurity",
}
#: The share of the completed trials that counts as "good" for the importances (PED-ANOVA's default).
TOP_QUANTILE = 0.1


def param_importances(study: Any, metrics: Sequence[str]) -> tuple[str, dict[str, dict[str, float]]]:
    """Optuna's parameter importances for reaching good values of each objective, in its direction.

    PED-ANOVA (Optuna 5's default evaluator, passed explicitly so that the label names the evaluator
    that ran) scores how differently each parameter is distributed among the best ``TOP_QUANTILE`` of
    the completed trials than among all of them. Given a ``target`` it takes LOW values as the good ones whatever the
    study's direction, so a maximised objective is negated: "important" then always means important
    for good values of that objective. A multi-objective study gets one ranking per objective (Optuna's
    own multi-objective default ranks for the Pareto front as a whole, which names no objective).

    Args:
        study: The Optuna study (single- or multi-objective).
        metrics: The objectives' names, in the order of ``study.directions``.

    Returns:
        The evaluator's readable name, and metric -> parameter -> importance (each metric's importances
        sum to 1, most important first).

    Raises:
        ValueError: when fewer than two trials completed with finite values.

    Examples:
        >>> import optuna
        >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
        >>> study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
        >>> study.optimize(lambda t: t.suggest_float("x", 0, 1) + 0 * t.suggest_float("noise", 0, 1), n_trials=60)
        >>> name, importances = param_importances(study, ["score"])
        >>> name, next(iter(importances["score"]))
        ('PED-ANOVA', 'x')
    """
    import optuna

    if len(metrics) != len(study.directions):
        raise ValueError(
            f"{len(metrics)} metric names {list(metrics)} for a study of {len(study.directions)} objectives"
        )
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if all(math.isfinite(v) for v in t.values)
    ]
    if len(complete) < 2:
        raise ValueError(f"{len(complete)} completed trial(s) with finite values, at least 2 are needed")
    evaluator = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=TOP_QUANTILE)
    importances = {}
    for index, (metric, direction) in enumerate(zip(metrics, study.directions, strict=True)):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        with warnings.catch_warnings():
            # Its reminder that a target is minimised: the sign above is the answer to it.
            warnings.filterwarnings("ignore", message=".*achieve low `target` values")
            importances[metric] = optuna.importance.get_param_importances(
                study, evaluator=evaluator, target=lambda t, i=index, s=sign: s * t.values[i]
            )
    name = type(evaluator).__name__
    return EVALUATOR_NAMES.get(name, name), importances
