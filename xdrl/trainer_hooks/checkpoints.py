"""Periodic policy checkpoints written atomically for offline analysis."""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import torch
from torchrl.trainers.trainers import Trainer, TrainerHookBase


def atomic_write(path: pathlib.Path, write: Callable[[BinaryIO], None]) -> None:
    """Let ``write`` fill a temporary file in the same directory, fsync it, then rename it to ``path``.

    A crash at any point leaves either the previous file or the complete new one,
    never a truncated file that a later load would trip over.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: pathlib.Path) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    atomic_write(path, lambda handle: torch.save(obj, handle))


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


class PolicyCheckpointHook(TrainerHookBase):
    """Periodically checkpoint policy weights for offline analysis.

    Stage: ``destination`` (``post_steps`` by default: once per trainer
    iteration, after the optimisation round). Every ``interval`` calls the hook
    writes ``{prefix}_step_{n:08d}.pt`` in ``directory`` (``n`` = calls so far),
    holding ``policy_state_dict``, ``num_calls``, ``collected_frames`` (of the
    trainer) and ``meta``. Files are written atomically and load with
    ``torch.load(path, weights_only=True)``. ``num_calls`` is part of
    ``state_dict``, so a resumed trainer continues the numbering.

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
        meta: Extra metadata persisted in every checkpoint payload (plain
            Python values, so that ``weights_only`` loading works).

    Examples:
        >>> import tempfile, torch
        >>> directory = tempfile.mkdtemp()
        >>> hook = PolicyCheckpointHook(directory=directory, interval=2, policy=torch.nn.Linear(2, 1))
        >>> hook(); hook()
        >>> hook.last_checkpoint_path.name
        'policy_step_00000002.pt'
        >>> torch.load(hook.last_checkpoint_path, weights_only=True)["num_calls"]
        2
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
        self.meta = dict(meta or {})
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
        if self.policy is None:
            raise RuntimeError(
                f"PolicyCheckpointHook: policy_path={self.policy_path!r} is resolved in "
                "register(); register the hook on a trainer before calling it."
            )
        path = self.checkpoint_path(self.num_calls)
        payload = {
            "policy_state_dict": {k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
            "num_calls": self.num_calls,
            "collected_frames": int(self._trainer.collected_frames) if self._trainer else 0,
            "meta": self.meta,
        }
        atomic_torch_save(payload, path)
        self.last_checkpoint_path = path
        return None

    def state_dict(self) -> dict[str, Any]:
        last = None if self.last_checkpoint_path is None else str(self.last_checkpoint_path)
        return {"num_calls": self.num_calls, "last_checkpoint_path": last}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.num_calls = int(state_dict["num_calls"])
        last = state_dict.get("last_checkpoint_path")
        self.last_checkpoint_path = None if last is None else pathlib.Path(last)

    def register(self, trainer: Trainer, name: str = "policy_checkpoint_hook") -> None:
        """Registers the hook in the trainer at a default location.

        Resolves ``policy_path`` on the trainer when no ``policy`` was given.

        Args:
            trainer (Trainer): the trainer where the hook must be registered.
            name (str): the name of the hook.

        Raises:
            AttributeError: when ``policy_path`` does not resolve on the trainer.

        Note:
            To register the hook at another location than the default, use
            ``register_op()``.
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
