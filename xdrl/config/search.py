"""The ``search`` config group, parsed and checked before any cluster resource is used.

Its distributions, the searched keys, points inside the space (each must give a
config that validates), ASHA's settings and the metrics. No Ray here:
:mod:`xdrl.distributed.search` turns the result into Ray Tune objects.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import random
from collections.abc import Iterator
from typing import Any

from xdrl.config.errors import ConfigError
from xdrl.config.schema import SearchConfig, from_mapping
from xdrl.config.validation import check_name, validate

DISTRIBUTIONS = ("uniform", "loguniform", "int", "choice")
#: ``search.scheduler`` values of population-based training (Ray Tune's PBT and PB2).
POPULATION_SCHEDULERS = ("pbt", "pb2")
#: Seeded random values tried per dimension besides its edges and midpoint, and seeded joint
#: samples of all dimensions: one validation takes milliseconds, a trial that fails takes a
#: worker, and a "multiple of" rule or a limit across keys shows only inside the space.
INTERIOR_SAMPLES = 4
JOINT_SAMPLES = 8


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One searched config key and its distribution."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    values: tuple[Any, ...] = ()

    def corners(self) -> list[Any]:
        """Values at the edges of the distribution (all values of a choice)."""
        if self.type == "choice":
            return list(self.values)
        return [int(self.low), int(self.high)] if self.type == "int" else [self.low, self.high]

    def interior(self, rng: random.Random, count: int) -> list[Any]:
        """The midpoint and ``count`` random values inside (none for a choice: :meth:`corners` has them all).

        Examples:
            >>> Dimension("algo.epochs", "int", 4.0, 20.0).interior(random.Random(0), 2)
            [12, 16, 17]
        """
        if self.type == "choice":
            return []
        if self.type == "int":
            middle: Any = int(self.low + self.high) // 2
        elif self.type == "loguniform":
            middle = math.sqrt(self.low * self.high)
        else:
            middle = (self.low + self.high) / 2
        return [middle, *(self.sample(rng) for _ in range(count))]

    def sample(self, rng: random.Random) -> Any:
        """One value drawn as Ray Tune's domain of this dimension draws it."""
        if self.type == "choice":
            return rng.choice(self.values)
        if self.type == "int":
            return rng.randint(int(self.low), int(self.high))
        if self.type == "loguniform":
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        return rng.uniform(self.low, self.high)


def _leaves(space: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(space, dict) and "type" not in space:
        for name, value in space.items():
            yield from _leaves(value, f"{prefix}.{name}" if prefix else str(name))
    else:
        yield prefix, space


def parse_dimensions(space: dict[str, Any], where_prefix: str = "search.space") -> list[Dimension]:
    """The leaves of a nested space mapping, checked.

    Raises:
        ConfigError: a malformed distribution, named by its ``<where_prefix>.<key>``
            (``search.space.<key>``, or ``search.pbt.mutations.<key>``).
    """
    dimensions = []
    if not isinstance(space, dict):
        raise ConfigError(where_prefix, space, "a mapping of config keys to distributions")
    for key, spec in _leaves(space):
        where = f"{where_prefix}.{key}"
        if not isinstance(spec, dict) or spec.get("type") not in DISTRIBUTIONS:
            raise ConfigError(where, spec, "{type: uniform|loguniform|int|choice, ...}")
        kind = spec["type"]
        if kind == "choice":
            values = spec.get("values")
            if set(spec) != {"type", "values"} or not isinstance(values, list) or not values:
                raise ConfigError(where, spec, "{type: choice, values: [a non-empty list]}")
            dimensions.append(Dimension(key, kind, values=tuple(values)))
            continue
        low, high = spec.get("low"), spec.get("high")
        # inf would reach Tune's samplers (and nan passes no comparison): finite bounds only.
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and _finite(v) for v in (low, high))
        if set(spec) != {"type", "low", "high"} or not numbers or not low < high:
            raise ConfigError(where, spec, f"{{type: {kind}, low: a finite number, high: a larger finite number}}")
        if kind == "loguniform" and low <= 0:
            raise ConfigError(where, spec, "a positive low bound for loguniform")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(where, spec, "integer bounds for int")
        dimensions.append(Dimension(key, kind, float(low), float(high)))
    if not dimensions:
        raise ConfigError(where_prefix, space, "at least one dimension")
    return dimensions


def _finite(number: int | float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond any float
        return False


def get_dotted(raw: dict[str, Any], key: str) -> Any:
    node: Any = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def leaf_keys(raw: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a nested config that holds a value (not a mapping)."""
    keys = []
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        keys.extend(leaf_keys(value, key) if isinstance(value, dict) else [key])
    return keys


def with_values(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of a nested config with dotted ``values`` set (the keys must exist)."""
    merged = copy.deepcopy(raw)
    for key, value in values.items():
        *parents, last = key.split(".")
        node = merged
        for part in parents:
            node = node[part]
        if last not in node:
            raise KeyError(key)
        node[last] = value
    return merged


def parse_search(raw: dict[str, Any]) -> SearchConfig:
    """The typed ``search`` section, with its own consistency checks.

    Raises:
        ConfigError: missing search, wrong types, or inconsistent metric/mode/scheduler settings.
    """
    if raw.get("search") is None:
        raise ConfigError("search", None, "a search config for xdrl tune, for example search=optuna")
    search = from_mapping(SearchConfig, raw["search"], "search")
    for name in ("num_samples", "max_concurrent_trials"):
        if getattr(search, name) <= 0:
            raise ConfigError(f"search.{name}", getattr(search, name), "a positive number")
    if search.max_failures < 0:
        raise ConfigError("search.max_failures", search.max_failures, "0 or more")
    asha = search.asha
    if asha.grace_period < 1:
        raise ConfigError(
            "search.asha.grace_period", asha.grace_period, "1 or more (iterations before ASHA may stop a trial)"
        )
    if asha.reduction_factor <= 1:
        raise ConfigError("search.asha.reduction_factor", asha.reduction_factor, "a number above 1")
    if asha.max_t is not None and asha.max_t < 1:
        raise ConfigError("search.asha.max_t", asha.max_t, "null (every iteration of the run) or 1 or more")
    if asha.max_t is not None and asha.grace_period > asha.max_t:
        raise ConfigError("search.asha.grace_period", asha.grace_period, f"at most search.asha.max_t={asha.max_t}")
    if search.experiment_name is not None:
        check_name("search.experiment_name", search.experiment_name)
    metrics = search.metric if isinstance(search.metric, list) else [search.metric]
    modes = search.mode if isinstance(search.mode, list) else [search.mode]
    if isinstance(search.metric, list) != isinstance(search.mode, list) or len(metrics) != len(modes):
        raise ConfigError("search.mode", search.mode, f"one mode per metric ({len(metrics)} metric(s): {metrics})")
    if isinstance(search.metric, list) and search.scheduler == "asha" and search.scheduler_metric is None:
        raise ConfigError(
            "search.scheduler_metric",
            None,
            "a single metric for ASHA when search.metric is a list (or search.scheduler=none)",
        )
    if isinstance(search.metric, list) and search.searcher != "optuna":
        raise ConfigError("search.searcher", search.searcher, "optuna for a multi-objective (list) metric")
    if search.scheduler in POPULATION_SCHEDULERS:
        _check_pbt_settings(search)
    return search


def _check_pbt_settings(search: SearchConfig) -> None:
    """The PBT/PB2 settings that need nothing but the search section."""
    pbt, scheduler = search.pbt, search.scheduler
    if search.searcher == "optuna":
        raise ConfigError(
            "search.searcher",
            search.searcher,
            f"random or grid with search.scheduler={scheduler} (Ray Tune's population-based training samples "
            "the first population itself and takes no search algorithm; search=pbt sets this)",
        )
    if isinstance(search.metric, list):
        raise ConfigError("search.metric", search.metric, f"a single metric for search.scheduler={scheduler}")
    if pbt.perturbation_interval < 1:
        raise ConfigError("search.pbt.perturbation_interval", pbt.perturbation_interval, "1 or more iterations")
    if not 0 < pbt.quantile_fraction <= 0.5:
        raise ConfigError("search.pbt.quantile_fraction", pbt.quantile_fraction, "a number above 0 and at most 0.5")
    if not 0 <= pbt.resample_probability <= 1:
        raise ConfigError("search.pbt.resample_probability", pbt.resample_probability, "a number from 0 to 1")


def check_pbt(search: SearchConfig, base: dict[str, Any], iterations: int) -> list[Dimension]:
    """PBT/PB2 against the experiment: every mutated key changes on a live trainer, checkpoints at every boundary.

    Returns:
        The mutated dimensions (none without a PBT scheduler).

    Raises:
        ConfigError: a key that cannot change mid-run (with the reason), a range the config
            rejects, a PB2 range that is a choice, or a perturbation interval that is not a
            multiple of ``checkpoint.interval`` or leaves no decision within the run.
    """
    from xdrl.config.algorithms import live_key_refusal

    if search.scheduler not in POPULATION_SCHEDULERS:
        return []
    where = "search.pbt.mutations"
    dimensions = parse_dimensions(search.pbt.mutations, where)
    algo = base["algo"]["name"]
    for dimension in dimensions:
        reason = live_key_refusal(algo, dimension.key)
        if reason is not None:
            from xdrl.config.algorithms import ALGORITHMS

            live = ", ".join(f"algo.{k}" for k in ALGORITHMS[algo].live_keys)
            raise ConfigError(
                f"{where}.{dimension.key}",
                dimension.key,
                f"a key a live {algo} trainer can change ({live}); {dimension.key} cannot: {reason}",
            )
        scheduled = [i for i, entry in enumerate(base.get("schedule") or []) if dimension.key in entry["values"]]
        if scheduled:
            raise ConfigError(
                f"schedule[{scheduled[0]}].values.{dimension.key}",
                base["schedule"][scheduled[0]]["values"][dimension.key],
                f"no key that search.pbt.mutations also changes (the schedule would undo every exploit's {dimension.key})",
            )
        if search.scheduler == "pb2" and dimension.type == "choice":
            raise ConfigError(
                f"{where}.{dimension.key}",
                "choice",
                "a uniform, loguniform or int range for PB2 (its bandit fits bounds)",
            )
    check_space_values(dimensions, base, search.seed, where)
    # The first population: members exploit each other's whole trainer, so what differs between them
    # must be something a live trainer can take from its config (a network size, say, could not load).
    for dimension in parse_dimensions(search.space):
        reason = live_key_refusal(algo, dimension.key)
        if reason is not None:
            raise ConfigError(
                f"search.space.{dimension.key}",
                dimension.key,
                f"keys a live {algo} trainer can change with search.scheduler={search.scheduler} (members load each "
                f"other's whole trainer); {dimension.key} cannot: {reason}",
            )
    interval = search.pbt.perturbation_interval
    checkpoint_interval = base["checkpoint"]["interval"]
    if interval % checkpoint_interval:
        raise ConfigError(
            "search.pbt.perturbation_interval",
            interval,
            f"a multiple of checkpoint.interval={checkpoint_interval} (a member exploits a donor's checkpoint of the "
            "boundary it reached, so every boundary must have one)",
        )
    if interval >= iterations:
        raise ConfigError(
            "search.pbt.perturbation_interval",
            interval,
            f"fewer than the run's {iterations} iterations (collector.total_frames / collector.frames_per_batch), "
            "else no member ever exploits",
        )
    return dimensions


def check_space_keys(dimensions: list[Dimension], base: dict[str, Any]) -> None:
    """Every searched key must be a value of the experiment config (not the search itself)."""
    keys = [k for k in leaf_keys(base) if not k.startswith("search.")]
    for dimension in dimensions:
        if dimension.key not in keys:
            parent = dimension.key.rpartition(".")[0]
            near = [k for k in keys if k.startswith(parent + ".")] if parent else []
            raise ConfigError(
                "search.space", dimension.key, "a key of the experiment config: " + ", ".join(near or keys)
            )


#: Searched keys that change the shapes of the policy's tensors (or what they mean).
SHAPE_KEYS = ("algo.name", "algo.hidden_sizes", "env.")


def check_space_keeps_shapes(dimensions: list[Dimension]) -> None:
    """With ``init.policy``, no searched key may change the policy network's shapes: every trial loads the file."""
    for dimension in dimensions:
        if any(dimension.key == key or (key.endswith(".") and dimension.key.startswith(key)) for key in SHAPE_KEYS):
            raise ConfigError(
                "search.space",
                dimension.key,
                "keys that keep the policy network's shapes with init.policy (every trial starts from its weights; "
                "not algo.name, algo.hidden_sizes or env.*)",
            )


def check_space_values(
    dimensions: list[Dimension], base: dict[str, Any], seed: int, where: str = "search.space"
) -> None:
    """The experiment config must accept values from every part of the space, before any trial starts.

    Per dimension, with the others at their base value: its edges, its midpoint and
    :data:`INTERIOR_SAMPLES` seeded random values (a "multiple of" rule shows only inside);
    then :data:`JOINT_SAMPLES` seeded samples of all dimensions together (a limit across
    keys, such as ``algo.minibatch_size`` at most ``collector.frames_per_batch``). Passing
    is evidence, not proof: the searcher may still draw a value in between.

    Raises:
        ConfigError: naming ``search.space.<key>`` and the value, or for a combination
            ``search.space`` and the smallest set of keys and values found to fail together.
    """
    rng = random.Random(seed)
    for dimension in dimensions:
        for value in [*dimension.corners(), *dimension.interior(rng, INTERIOR_SAMPLES)]:
            _check_point(base, {dimension.key: value}, where)
    if len(dimensions) > 1:
        for _ in range(JOINT_SAMPLES):
            _check_point(base, {d.key: d.sample(rng) for d in dimensions}, where)


def _rejection(base: dict[str, Any], point: dict[str, Any]) -> ConfigError | None:
    try:
        validate(with_values(base, point))
    except ConfigError as error:
        return error
    return None


def _check_point(base: dict[str, Any], point: dict[str, Any], where: str = "search.space") -> None:
    error = _rejection(base, point)
    if error is None:
        return
    culprits = dict(point)
    for key in point:  # drop every key the failure does not need, so the message names only the culprits
        fewer = {k: v for k, v in culprits.items() if k != key}
        if fewer and _rejection(base, fewer) is not None:
            culprits = fewer
    if len(culprits) > 1:
        error = _rejection(base, culprits) or error
        raise ConfigError(where, culprits, f"values the config accepts together ({error})")
    ((key, value),) = culprits.items()
    raise ConfigError(f"{where}.{key}", value, f"values the config accepts ({error})")


def check_grid(search: SearchConfig, dimensions: list[Dimension]) -> None:
    """A grid search enumerates values: every dimension must be a choice."""
    if search.searcher != "grid":
        return
    for dimension in dimensions:
        if dimension.type != "choice":
            raise ConfigError(
                f"search.space.{dimension.key}", dimension.type, "choice dimensions only, for search.searcher=grid"
            )


def check_asha_iterations(search: SearchConfig, iterations: int) -> None:
    """ASHA's first rung must come within the run, else no trial is ever compared."""
    if search.scheduler == "asha" and search.asha.grace_period > iterations:
        raise ConfigError(
            "search.asha.grace_period",
            search.asha.grace_period,
            f"at most the run's {iterations} iterations (collector.total_frames / collector.frames_per_batch)",
        )


def check_metrics(search: SearchConfig, schema: list[str]) -> None:
    """The searched and the scheduled metrics must be among the hook set's metric names."""
    metrics = search.metric if isinstance(search.metric, list) else [search.metric]
    wanted = [("search.metric", m) for m in metrics]
    if search.scheduler == "asha":
        wanted.append(("search.scheduler_metric", search.scheduler_metric or metrics[0]))
    for key, metric in wanted:
        if metric not in schema:
            raise ConfigError(key, metric, "a metric the hook set produces: " + ", ".join(schema))
