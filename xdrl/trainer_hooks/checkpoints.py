"""Periodic policy checkpoints written atomically for offline analysis."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchrl.trainers.trainers import Trainer, TrainerHookBase

from xdrl.records.atomic import atomic_torch_save


def resolve_attribute_path(root: Any, path: str, *, owner: str, key: str) -> Any:
    """Follow a dotted attribute ``path`` from ``root`` with an error naming the failing part."""
    obj = root
    walked = []
    for part in path.split("."):
        if not hasattr(obj, part):
            raise AttributeError(
                f"{owner}: {key}={path!r} does not resolve: {type(obj).__name__} at "
                f"{'.'.join(walked) or '<trainer>'} has no attribute {part!r}."
            )
        obj = getattr(obj, part)
        walked.append(part)
    return obj


_PLAIN_SCALARS = (type(None), bool, int, float, str)


def _plain_meta(value: Any, where: str) -> Any:
    """``value`` as the plain Python values that ``torch.load(..., weights_only=True)`` accepts.

    Checked when the hook is built: a value the safe unpickler rejects would
    otherwise surface only when someone loads a checkpoint, long after training.
    """
    if isinstance(value, _PLAIN_SCALARS):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"PolicyCheckpointHook: {where} has the key {key!r} ({type(key).__name__}); "
                    "meta keys must be strings."
                )
            plain[key] = _plain_meta(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        # Any sequence (an OmegaConf ListConfig too) becomes a list; tuples stay tuples.
        items = [_plain_meta(item, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(
        f"PolicyCheckpointHook: {where}={value!r} is a {type(value).__name__}, which torch.load(weights_only=True) "
        "cannot read back; use None, bool, int, float, str, tensors, or lists, tuples and string-keyed dicts of them."
    )


class PolicyCheckpointHook(TrainerHookBase):
    """Periodically checkpoint policy weights for offline analysis.

    Stage: ``destination`` (``post_steps`` by default: once per trainer
    iteration, after the optimisation round). Every ``interval`` calls the hook
    writes ``{prefix}_step_{n:08d}.pt`` in ``directory`` (``n`` = calls so far).

    The payload is a plain dict: ``policy_state_dict`` (CPU tensors), ``step``
    (the calls so far, the key upstream readers look up), ``num_calls`` (the
    same number), ``collected_frames`` (of the trainer, 0 without one) and
    ``meta``. It holds only tensors and plain Python values, so a file loads
    with ``torch.load(path)`` under default arguments as well as with
    ``weights_only=True``, on a machine without the training device. Files are
    written atomically. ``num_calls`` is part of ``state_dict``, so a resumed
    trainer continues the numbering.

    Args:
        directory: Directory where ``.pt`` checkpoint files are written (created
            when needed).
        interval: Number of hook calls between checkpoints. Non-positive values
            disable file writes while still allowing the hook to be registered.
        policy: Policy module to checkpoint. If omitted, ``policy_path`` is
            resolved from the trainer during registration.
        policy_path: Dotted path to the policy module on the trainer, such as
            ``"loss_module.actor_network"``.
        prefix: Filename prefix used for checkpoint files.
        destination: TorchRL trainer operation where the hook is registered.
        meta: Extra metadata persisted in every checkpoint payload: plain
            Python values (``None``, ``bool``, ``int``, ``float``, ``str``,
            tensors, and lists, tuples and string-keyed dicts of them), so that
            ``weights_only`` loading works. NumPy scalars and paths are stored as
            their Python value and string, other sequences and mappings as lists
            and dicts.

    Raises:
        ValueError: when neither ``policy`` nor ``policy_path`` is given.
        TypeError: when ``meta`` holds a value that ``weights_only`` loading
            would reject (the error names its place in ``meta``).

    Examples:
        >>> import tempfile, torch
        >>> directory = tempfile.mkdtemp()
        >>> hook = PolicyCheckpointHook(directory=directory, interval=2, policy=torch.nn.Linear(2, 1))
        >>> hook(); hook()
        >>> hook.last_checkpoint_path.name
        'policy_step_00000002.pt'
        >>> payload = torch.load(hook.last_checkpoint_path)
        >>> payload["step"], payload["num_calls"], sorted(payload)
        (2, 2, ['collected_frames', 'meta', 'num_calls', 'policy_state_dict', 'step'])
    """

    def __init__(
        self,
        *,
        directory: str | pathlib.Path,
        interval: int,
        policy: torch.nn.Module | None = None,
        policy_path: str | None = None,
        prefix: str = "policy",
        destination: str = "post_steps",
        meta: dict[str, Any] | None = None,
    ) -> None:
        if policy is None and not policy_path:
            raise ValueError(
                "PolicyCheckpointHook needs policy= (a module) or policy_path= (a dotted path "
                "on the trainer such as 'loss_module.actor_network'); got neither."
            )
        self.policy = policy
        self.policy_path = policy_path
        self.directory = pathlib.Path(directory)
        self.interval = int(interval)
        self.prefix = prefix
        self.destination = destination
        self.meta = _plain_meta(dict(meta or {}), "meta")
        self.num_calls = 0
        self.last_checkpoint_path: pathlib.Path | None = None
        self._trainer: Trainer | None = None

    def checkpoint_path(self, num_calls: int) -> pathlib.Path:
        """Path of the checkpoint written at call ``num_calls``."""
        return self.directory / f"{self.prefix}_step_{num_calls:08d}.pt"

    def __call__(self, *_args: Any, **_kwargs: Any) -> None:
        self.num_calls += 1
        if self.interval <= 0 or self.num_calls % self.interval:
            return None
        self.save()
        return None

    def save(self) -> pathlib.Path:
        """Write the policy now, as the file of the current call count (also between intervals).

        The trainer's owner calls it for a final policy when a run ends between two
        intervals; the file is named, numbered and written as the periodic ones.
        """
        if self.policy is None:
            raise RuntimeError(
                f"PolicyCheckpointHook: policy_path={self.policy_path!r} is resolved in "
                "register(); register the hook on a trainer before calling it."
            )
        path = self.checkpoint_path(self.num_calls)
        payload = {
            "policy_state_dict": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            "step": self.num_calls,
            "num_calls": self.num_calls,
            "collected_frames": int(self._trainer.collected_frames) if self._trainer else 0,
            "meta": self.meta,
        }
        atomic_torch_save(payload, path)
        self.last_checkpoint_path = path
        return path

    def discard_after(self, num_calls: int) -> list[pathlib.Path]:
        """Remove this hook's files written after call ``num_calls``, and return them.

        A trainer restored from an older checkpoint calls the hook again from
        ``num_calls``; the files past it belong to the abandoned run and would
        otherwise stand beside the new ones.
        """
        stale = []
        for path in self.directory.glob(f"{self.prefix}_step_*.pt"):
            number = path.stem.rpartition("_")[2]
            if number.isdigit() and int(number) > num_calls:
                path.unlink(missing_ok=True)
                stale.append(path)
        return sorted(stale)

    def state_dict(self) -> dict[str, Any]:
        last = None if self.last_checkpoint_path is None else str(self.last_checkpoint_path)
        return {"num_calls": self.num_calls, "last_checkpoint_path": last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_calls = int(state_dict["num_calls"])
        last = state_dict.get("last_checkpoint_path")
        self.last_checkpoint_path = None if last is None else pathlib.Path(last)

    def register(self, trainer: Trainer, name: str = "policy_checkpoint_hook") -> None:
        """Register at this hook's stages (see the class docstring) as trainer module ``name``.

        Resolves ``policy_path`` on the trainer when no ``policy`` was given.

        Raises:
            AttributeError: when ``policy_path`` does not resolve on the trainer.
        """
        if self.policy is None:
            policy = resolve_attribute_path(trainer, self.policy_path, owner=type(self).__name__, key="policy_path")
            if not isinstance(policy, torch.nn.Module):
                raise TypeError(
                    f"PolicyCheckpointHook: policy_path={self.policy_path!r} resolves to a "
                    f"{type(policy).__name__}, not a torch.nn.Module."
                )
            self.policy = policy
        self._trainer = trainer
        trainer.register_module(name, self)
        trainer.register_op(self.destination, self)
