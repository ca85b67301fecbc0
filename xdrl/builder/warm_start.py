"""Warm starts (``init.policy``): a built algorithm's policy takes the weights of a policy checkpoint.

The policy file holds the module at the run's policy path (``loss_module.actor_network``
for PPO and SAC, ``loss_module.value_network`` for DQN). Its tensors go into the
same module of the new trainer before training; the optimizer, counters, buffers and
every other network start fresh. Target networks of the loaded module (DQN's target
Q-network) start as copies of it, as they do at build time.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any

import torch

from xdrl.builder.algorithms import AlgorithmParts
from xdrl.config.errors import ConfigError
from xdrl.config.validation import ValidatedExperiment
from xdrl.records.runs import PolicyFileError, read_policy
from xdrl.trainer_hooks.checkpoints import resolve_attribute_path


def policy_path_of(validated: ValidatedExperiment, parts: AlgorithmParts) -> str:
    """The dotted path on the trainer of the module policy files hold."""
    return validated.config.hooks.policy_checkpoint.policy_path or parts.policy_path


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def mismatch(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str | None:
    """The first difference between a module's state dict and a file's (``None``: they fit).

    Examples:
        >>> net = torch.nn.Linear(4, 2).state_dict()
        >>> mismatch(net, torch.nn.Linear(4, 2).state_dict()) is None
        True
        >>> mismatch(net, torch.nn.Linear(4, 3).state_dict())
        'tensor weight is [3, 4] in the file and [2, 4] in the configured network'
    """
    for name, tensor in expected.items():
        if name not in found:
            return f"tensor {name} ({_shape(tensor)} in the configured network) is missing from the file"
        other = found[name]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape:
            shape = _shape(other) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"tensor {name} is {shape} in the file and {_shape(tensor)} in the configured network"
    for name, other in found.items():
        if name not in expected:
            shape = _shape(other) if isinstance(other, torch.Tensor) else type(other).__name__
            return f"tensor {name} ({shape}) in the file has no place in the configured network"
    return None


def load_policy_state(validated: ValidatedExperiment, parts: AlgorithmParts, path: str | pathlib.Path, key: str) -> int:
    """Load the policy file ``path`` into the algorithm's policy module; returns the file's step.

    Args:
        key: the setting that named the file, for errors (``init.policy`` or ``PATH``).

    Raises:
        ConfigError: the file is unreadable, not a policy checkpoint, or its tensors do not
            fit the configured network (the first mismatched tensor and both shapes named).
    """
    path = pathlib.Path(path)
    try:
        payload = read_policy(path)
    except PolicyFileError as error:
        raise ConfigError(key, str(path), f"a policy checkpoint of xdrl ({error})") from error
    module_path = policy_path_of(validated, parts)
    module = resolve_attribute_path(parts.trainer, module_path, owner="warm start", key="policy_path")
    expected = module.state_dict()
    found = payload["policy_state_dict"]
    meta = payload.get("meta") or {}
    problem = mismatch(expected, found)
    saved_path = meta.get("policy_path")
    if problem is None and saved_path is not None and saved_path != module_path:
        # Same shapes, another role (a DQN Q-network is not a PPO actor): the file says what it holds.
        first = next(iter(found), "?")
        problem = f"tensor {first} belongs to {saved_path} in the file, not to {module_path}"
    if problem is not None:
        origin = ", ".join(f"{k}={meta[k]}" for k in ("algo", "env") if k in meta)
        configured = f"algo={validated.algo.name}, env={validated.config.env.id}"
        raise ConfigError(
            key,
            str(path),
            f"a policy checkpoint that fits {module_path} ({configured}): {problem}"
            + (f" (the file comes from {origin})" if origin else ""),
        )
    module.load_state_dict({name: tensor.to(expected[name].device) for name, tensor in found.items()})
    _copy_to_targets(parts.trainer.loss_module, module_path)
    return int(payload.get("step", 0))


def _copy_to_targets(loss_module: Any, module_path: str) -> None:
    """Targets of the loaded network start equal to it (TorchRL keeps them as ``target_<name>_params``)."""
    name = module_path.rpartition(".")[2]
    source = getattr(loss_module, f"{name}_params", None)
    target = getattr(loss_module, f"target_{name}_params", None)
    if source is not None and target is not None:
        target.data.copy_(source.data)


def check_warm_start(validated: ValidatedExperiment) -> None:
    """``init.policy`` fits the configured networks: built on the CPU and loaded once, nothing written.

    Raises:
        ConfigError: as :func:`load_policy_state`.
    """
    if validated.config.init.policy is None:
        return
    from xdrl.builder.experiment import build_algorithm

    parts = build_algorithm(validated, "cpu")
    try:
        load_policy_state(validated, parts, validated.config.init.policy, "init.policy")
    finally:
        parts.trainer.collector.shutdown()
