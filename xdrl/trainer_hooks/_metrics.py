"""Tensor-to-metric helpers shared by the collection and evaluation hooks.

Plumbing: masking a collected batch, splitting a (possibly vector) reward into
its scalarized value and its objectives, and turning a tensor into the
``_min/_mean/_max`` family of scalars that every ``xdrl`` metric uses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from tensordict.utils import NestedKey

COLLECTOR_MASK_KEY = ("collector", "mask")


class MissingKeyError(KeyError):
    """A key a hook needs is absent; the message lists the keys that are there."""

    def __str__(self) -> str:
        return str(self.args[0])


def _key_str(key: NestedKey) -> str:
    return str(key) if isinstance(key, str) else str(tuple(key))


def get_key(batch: TensorDictBase, key: NestedKey, owner: str, hint: str = "") -> torch.Tensor:
    """Read ``key`` from ``batch`` with an error that lists what is there.

    Args:
        batch: the TensorDict to read.
        key: the nested key.
        owner: name of the hook asking, repeated in the error.
        hint: extra advice appended to the error.

    Raises:
        MissingKeyError: (a ``KeyError``) naming the key, the hook and the leaf
            keys available.
    """
    value = batch.get(key, None)
    if value is None:
        available = ", ".join(sorted(_key_str(k) for k in batch.keys(True, True)))
        raise MissingKeyError(
            f"{owner}: key {_key_str(key)} is not in the batch; available leaf keys: "
            f"{available}.{(' ' + hint) if hint else ''}"
        )
    return value


def flatten_batch(batch: TensorDictBase, tensor: torch.Tensor) -> torch.Tensor:
    """Flatten the batch dimensions of ``tensor`` into one, keeping only valid frames.

    The collector mask ``("collector", "mask")``, when present, selects the frames
    that were really collected (padding from split trajectories is dropped).

    Returns:
        A tensor of shape ``(n_valid, *feature_dims)``.
    """
    mask = batch.get(COLLECTOR_MASK_KEY, None)
    if mask is not None:
        return tensor[mask.to(torch.bool)]
    return tensor.reshape(-1, *tensor.shape[batch.ndim :])


def get_reward(batch: TensorDictBase, key: NestedKey, owner: str, hint: str = "") -> torch.Tensor:
    """Read a reward-like leaf as ``(n_valid, *agent_dims, k)``: valid frames first, objectives last.

    A reward stored without an objective dimension (its shape is the batch shape
    of the TensorDict that holds it, e.g. ``(T,)`` under a ``[T]`` batch) gets one
    of size 1: otherwise its frames would be taken for objectives.

    Raises:
        MissingKeyError: when ``key`` is absent (see :func:`get_key`).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> batch = TensorDict({"next": {"reward": torch.tensor([1.0, 2.0, 3.0])}}, batch_size=[3])
        >>> get_reward(batch, ("next", "reward"), owner="doc").shape
        torch.Size([3, 1])
    """
    values = get_key(batch, key, owner, hint)
    if values.ndim == _holder_batch_dims(batch, key):
        values = values.unsqueeze(-1)
    return flatten_batch(batch, values)


def _holder_batch_dims(batch: TensorDictBase, key: NestedKey) -> int:
    """Batch dimensions of the (nested) TensorDict that holds ``key``: a group's include its agent dimension."""
    if isinstance(key, str) or len(key) == 1:
        return batch.batch_dims
    return batch.get(tuple(key[:-1])).batch_dims


def scalarize(
    values: torch.Tensor, weights: Sequence[float] | None, *, owner: str, key: NestedKey | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Split rewards ``(..., k)`` into a weighted scalar and per-objective values.

    A scalar reward (``k == 1``) is returned as it is, whatever the weights: a
    multi-objective run may log an already scalarized step reward next to a
    vector episode return that the weights are meant for. The weights apply to a
    vector reward (``k > 1``) only, and must then have one entry per objective.

    Args:
        values: rewards whose last dimension holds the ``k`` objectives (``k == 1``
            for ordinary scalar rewards).
        weights: one weight per objective, or ``None``.
        owner: name used in error messages.
        key: key the rewards were read from, named in error messages.

    Returns:
        ``(scalar, objectives)``: ``scalar`` has the last dimension removed (``None``
        when the reward is a vector and no weights are given); ``objectives`` keeps
        it and is ``None`` for scalar rewards.

    Raises:
        ValueError: when a vector reward has a number of objectives other than the
            number of weights.

    Examples:
        >>> import torch
        >>> scalar, objectives = scalarize(torch.tensor([[1.0, -2.0]]), [0.5, 1.0], owner="doc")
        >>> scalar.tolist(), objectives.tolist()
        ([-1.5], [[1.0, -2.0]])
        >>> scalar, objectives = scalarize(torch.tensor([[4.0]]), [0.5, 1.0], owner="doc")
        >>> scalar.tolist(), objectives
        ([4.0], None)
    """
    values = values.float()
    if values.ndim == 0:
        values = values.reshape(1)
    num_objectives = values.shape[-1]
    if num_objectives == 1:
        return values.squeeze(-1), None
    if weights is None:
        return None, values
    if len(weights) != num_objectives:
        where = "" if key is None else f"key {_key_str(key)}, "
        raise ValueError(
            f"{owner}: episode_reward_weights={list(weights)} has {len(weights)} entries but the reward "
            f"has {num_objectives} objectives ({where}shape {tuple(values.shape)}); give one weight per "
            "objective."
        )
    weight = torch.as_tensor(list(weights), dtype=values.dtype, device=values.device)
    return (values * weight).sum(-1), values


def stats(name: str, values: torch.Tensor, reduce_stats: bool | None) -> dict[str, float]:
    """Summarise ``values`` as scalars named after ``name``.

    ``reduce_stats=None`` gives ``name_min/_mean/_max`` when there is more than one
    element and the plain ``name`` otherwise; ``True`` always gives the three
    statistics (a stable metric schema); ``False`` always gives the plain mean.
    An empty tensor gives no metric at all.

    Examples:
        >>> import torch
        >>> stats("collection/reward/reward", torch.tensor([1.0, 3.0]), None)
        {'collection/reward/reward_min': 1.0, 'collection/reward/reward_mean': 2.0, 'collection/reward/reward_max': 3.0}
        >>> stats("x", torch.tensor([4.0]), None)
        {'x': 4.0}
    """
    values = values.detach().float().reshape(-1)
    if values.numel() == 0:
        return {}
    if reduce_stats is False or (reduce_stats is None and values.numel() == 1):
        return {name: values.mean().item()}
    return {
        f"{name}_min": values.min().item(),
        f"{name}_mean": values.mean().item(),
        f"{name}_max": values.max().item(),
    }


def stat_names(name: str, reduce_stats: bool | None) -> list[str]:
    """Every key :func:`stats` may produce for ``name`` (both forms when ``reduce_stats`` is ``None``).

    Examples:
        >>> stat_names("x", True)
        ['x_min', 'x_mean', 'x_max']
    """
    reduced = [f"{name}_min", f"{name}_mean", f"{name}_max"]
    return [name] if reduce_stats is False else reduced if reduce_stats else [name, *reduced]


def reward_metric_names(
    prefix: str, name: str, *, group: str | None, objectives: int, scalar: bool, reduce_stats: bool | None
) -> list[str]:
    """Every key :func:`reward_metrics` may produce (see there for the layout)."""
    names = []
    if scalar:
        names += stat_names(f"{prefix}/reward/{name}", reduce_stats)
        if group is not None:
            names += stat_names(f"{prefix}/{group}/reward/{name}", reduce_stats)
    if objectives > 1:
        for index in range(objectives):
            names += stat_names(f"{prefix}/reward/objective_{index}/{name}", reduce_stats)
    return names


def reward_metrics(
    prefix: str,
    name: str,
    values: torch.Tensor,
    *,
    group: str | None,
    weights: Sequence[float] | None,
    reduce_stats: bool | None,
    owner: str,
    key: NestedKey | None = None,
) -> dict[str, float]:
    """Metrics of reward-like values of shape ``(n, *agent_dims, k)``.

    Gives ``{prefix}/reward/{name}_*`` (agent dimensions averaged), the same under
    ``{prefix}/{group}/reward/`` when ``group`` is given (every agent value counts),
    and ``{prefix}/reward/objective_{i}/{name}_*`` for each objective of a vector
    reward. ``weights`` apply as in :func:`scalarize` (``key`` is named in its error).
    """
    scalar, objectives = scalarize(values, weights, owner=owner, key=key)
    out: dict[str, float] = {}
    if scalar is not None:
        out.update(stats(f"{prefix}/reward/{name}", _mean_agents(scalar), reduce_stats))
        if group is not None:
            out.update(stats(f"{prefix}/{group}/reward/{name}", scalar, reduce_stats))
    if objectives is not None:
        for index in range(objectives.shape[-1]):
            per_objective = _mean_agents(objectives[..., index])
            out.update(stats(f"{prefix}/reward/objective_{index}/{name}", per_objective, reduce_stats))
    return out


def _mean_agents(values: torch.Tensor) -> torch.Tensor:
    """Average every dimension after the first (the agent dimensions)."""
    if values.ndim <= 1:
        return values
    return values.reshape(values.shape[0], -1).mean(-1)


def key_in_group(key: NestedKey, group: str) -> bool:
    """Whether a nested key lives under the agent group ``group``."""
    return not isinstance(key, str) and group in tuple(key)
