"""``key=value`` overrides of a stored run config (``xdrl train --resume DIR key=value``).

Values go through Hydra's own override grammar, so ``algo.lr=1e-3`` is the float 0.001
on resume exactly as in ``xdrl train algo.lr=1e-3``. Keys baked into the saved state of a
run (its networks, replay buffer, environment, random streams, identity) keep their
stored value; the error says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xdrl.config.errors import ConfigError

#: Keys a resumed run cannot change, with the reason. A key covers the keys below it.
FROZEN_ON_RESUME: dict[str, str] = {
    "env": "the environment is part of the saved state (env batch, observation normalisation, "
    "reward weights, episode cap) and of every metric so far",
    "algo.name": "the saved networks, optimizer and buffers belong to this algorithm",
    "algo.hidden_sizes": "the saved networks have these layers",
    "algo.activation": "the saved networks were trained with this activation",
    "algo.buffer_size": "the saved replay buffer has this capacity",
    "algo.anneal_lr": "the learning-rate schedule (or its absence) is part of the saved optimizer state",
    "collector.frames_per_batch": "the run's iterations, counters and checkpoints count batches of this size",
    "init": "the run started from these weights; its checkpoint holds what it learned since",
    "seed": "the run's random streams continue from its checkpoint",
    "name": "it names the run and its W&B group",
    "output_dir": "the run stays in its directory",
    "logger.run_id": "the resumed run continues its W&B run",
    "logger.project": "the resumed run continues its W&B run, which lives in this project",
    "logger.backend": "the run's metric records continue where they are",
}
#: Keys below a frozen one that may still change.
#: ``env.reference_point`` is read by ``xdrl report`` only, never by training.
CHANGEABLE_ON_RESUME = ("env.reference_point",)


def frozen_reason(key: str) -> str | None:
    """Why ``key`` cannot change on resume (``None``: it can).

    Examples:
        >>> frozen_reason("algo.lr") is None
        True
        >>> frozen_reason("algo.hidden_sizes")
        'the saved networks have these layers'
        >>> frozen_reason("env.reference_point") is None
        True
    """
    if key in CHANGEABLE_ON_RESUME:
        return None
    for frozen, reason in FROZEN_ON_RESUME.items():
        if key == frozen or key.startswith(frozen + "."):
            return reason
    return None


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, Any]]:
    """``key=value`` strings as ``(key, typed value)`` pairs, typed by Hydra's override grammar.

    Raises:
        ConfigError: malformed syntax, a sweep (``a=1,2``), ``+key``/``~key`` or ``key@package``.

    Examples:
        >>> parse_overrides(["algo.lr=1e-3", "algo.hidden_sizes=[32,32]", "logger.group=null"])
        [('algo.lr', 0.001), ('algo.hidden_sizes', [32, 32]), ('logger.group', None)]
        >>> parse_overrides(["algo.lr=1e-3,1e-4"])
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: algo.lr='1e-3,1e-4' is not accepted: expected a single value (no sweep on --resume)
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as error:
        raise ConfigError("override", error.override, "key=value (Hydra override syntax)") from error
    pairs = []
    for override in parsed:
        key, text = override.key_or_group, override.input_line.partition("=")[2]
        if not key or override.type != OverrideType.CHANGE or override.package is not None:
            raise ConfigError("override", override.input_line, "key=value of a stored key (no +, ~ or @ on --resume)")
        if override.is_sweep_override():
            raise ConfigError(key, text, "a single value (no sweep on --resume)")
        pairs.append((key, override.value()))
    return pairs


def apply_resume_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``raw`` (a stored run config) with ``overrides`` applied, as plain resolved data.

    Raises:
        ConfigError: a malformed override, a key the stored config lacks, a whole
            config group (``algo=dqn``), or a change of a key in :data:`FROZEN_ON_RESUME`.

    Examples:
        >>> stored = {"seed": 0, "algo": {"name": "ppo", "lr": 3e-4}}
        >>> apply_resume_overrides(stored, ["algo.lr=1e-3", "seed=0"])
        {'seed': 0, 'algo': {'name': 'ppo', 'lr': 0.001}}
        >>> apply_resume_overrides(stored, ["seed=1"])
        Traceback (most recent call last):
        ...
        xdrl.config.errors.ConfigError: seed=1 is not accepted: expected the stored value 0 on --resume: the run's random streams continue from its checkpoint (a new run can change it)
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    missing = object()
    config = OmegaConf.create(raw)
    for key, value in parse_overrides(overrides):
        stored = OmegaConf.select(config, key, default=missing)
        if stored is missing:
            raise ConfigError(key, value, "an existing key of the stored config")
        if isinstance(stored, DictConfig):
            raise ConfigError(key, value, "key=value of one setting (config groups cannot change on --resume)")
        if isinstance(stored, ListConfig):
            stored = OmegaConf.to_container(stored)
        reason = frozen_reason(key)
        if reason is not None and value != stored:
            raise ConfigError(
                key, value, f"the stored value {stored!r} on --resume: {reason} (a new run can change it)"
            )
        try:
            OmegaConf.update(config, key, value, merge=False)
        except OmegaConfBaseException as error:
            raise ConfigError(key, value, str(error).splitlines()[0]) from error
    return OmegaConf.to_container(config, resolve=True)
