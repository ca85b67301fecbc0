"""``xdrl train``: one experiment in this process, with checkpoints, resume and clean stops."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import pathlib
import signal
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from xdrl.config import ConfigError, ValidatedExperiment, compose_config, validate
from xdrl.config.loading import with_new_defaults
from xdrl.config.schema import to_dict
from xdrl.config.validation import check_device_here, check_output_dir
from xdrl.records.atomic import atomic_write_text
from xdrl.records.runs import CONFIG_FILE, write_run_config

_log = logging.getLogger(__name__)


@dataclasses.dataclass
class RunResult:
    """What a finished (or stopped) run leaves behind."""

    output_dir: pathlib.Path
    iterations: int
    frames: int
    last_metrics: dict[str, Any]
    resumed_from: pathlib.Path | None
    stopped_early: bool


def load_run_config(directory: pathlib.Path, overrides: Sequence[str] = ()) -> ValidatedExperiment:
    """The config stored in a run directory, validated, with ``overrides`` such as a longer budget.

    Overrides are typed as for a new run (Hydra's grammar); the result is validated like a
    new config and only then saved into the run's ``config.yaml``, the record of what it
    trains with. Keys baked into the saved state (environment, network shapes, seed, ...)
    keep their stored value.

    Raises:
        ConfigError: not a run directory, a malformed override, a change of a key frozen on
            resume, an invalid result or a device this host lacks (``config.yaml`` unchanged).
    """
    from xdrl.config.overrides import apply_resume_overrides

    path = directory / CONFIG_FILE
    if not path.is_file():
        raise ConfigError("--resume", str(directory), f"a run directory of xdrl train (with {CONFIG_FILE})")
    stored = path.read_text()
    # A run stored by an earlier xdrl lacks the keys added since: at their defaults.
    validated = validate(apply_resume_overrides(with_new_defaults(yaml.safe_load(stored)), overrides))
    check_device_here(validated.config.resources.device)
    text = yaml.safe_dump(to_dict(validated.config), sort_keys=False)
    if overrides and text != stored:
        atomic_write_text(path, text)
    return validated


def prepare_new_run(overrides: Sequence[str]) -> tuple[ValidatedExperiment, pathlib.Path]:
    """Compose and validate a config, create its output directory and store the resolved config.

    Every check (config, device, output directory) runs before the first write.
    """
    validated = validate(compose_config(overrides))
    config = validated.config
    check_device_here(config.resources.device)
    output_dir = pathlib.Path(config.output_dir).resolve()
    if (output_dir / CONFIG_FILE).exists():
        raise ConfigError(
            "output_dir", str(output_dir), f"a new directory (to continue this run: xdrl train --resume {output_dir})"
        )
    check_output_dir(output_dir)
    from xdrl.builder.warm_start import check_warm_start

    check_warm_start(validated)
    if config.logger.run_id is None:
        config.logger.run_id = uuid.uuid4().hex[:12]  # stored, so --resume continues the same W&B run
    created = [p for p in (output_dir, *output_dir.parents) if not p.exists()]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        write_run_config(output_dir, to_dict(config))
    except OSError as error:
        # What the check above cannot see (a full disk, a server refusing root): leave no half-made run.
        for made in created:
            with contextlib.suppress(OSError):
                made.rmdir()
        raise ConfigError("output_dir", str(output_dir), f"a directory this process can write ({error})") from error
    return validated, output_dir


@contextlib.contextmanager
def stop_on_signals(request_stop: Any) -> Iterator[None]:
    """First SIGINT/SIGTERM: finish the iteration, checkpoint, stop. A second SIGINT interrupts at once.

    SIGTERM (preemption) also marks the W&B run as preempting.
    """
    from xdrl.builder.checkpointing import PREEMPTED

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: Any) -> None:
        _log.warning("%s received: stopping after this iteration (checkpoint first)", signal.Signals(signum).name)
        request_stop(PREEMPTED if signum == signal.SIGTERM else "interrupted")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def resume_point(directory: pathlib.Path) -> tuple[dict[str, Any], pathlib.Path] | None:
    """The newest checkpoint ``xdrl train --resume`` continues from (``None``: the run saved none yet).

    Raises:
        ConfigError: the run has checkpoints and none can be read (written by another xdrl
            version, or all damaged): resuming would start over and drop them, so it is refused
            and the directory left as it is.
    """
    from xdrl.builder.checkpointing import checkpoint_paths, load_latest

    found = load_latest(directory / "checkpoints")
    files = checkpoint_paths(directory / "checkpoints")
    if found is None and files:
        raise ConfigError(
            "--resume",
            str(directory),
            f"a run with a checkpoint this xdrl reads: none of its {len(files)} checkpoint(s) could be read "
            "(see the warnings: another xdrl version's format, or damaged files); nothing was changed",
        )
    return found


def train(
    validated: ValidatedExperiment,
    output_dir: pathlib.Path,
    *,
    resume: bool,
    resume_from: tuple[dict[str, Any], pathlib.Path] | None = None,
    progress_bar: bool = True,
) -> RunResult:
    """Build the experiment in ``output_dir`` and train it, from its newest checkpoint when ``resume``.

    ``resume_from`` is what :func:`resume_point` found, when the caller already looked.
    """
    from xdrl.builder.experiment import build, restore

    found = (resume_from or resume_point(output_dir)) if resume else None
    experiment = build(validated, output_dir=output_dir, progress_bar=progress_bar)
    resumed_from = None
    if resume:
        payload = None
        if found is None:
            _log.warning("no checkpoint in %s yet: starting from the beginning", output_dir / "checkpoints")
        else:
            payload, resumed_from = found
        restore(experiment, payload)
    trainer = experiment.trainer
    with stop_on_signals(experiment.checkpoints.request_stop):
        if trainer.collected_frames < trainer.total_frames:
            trainer.train()
    return RunResult(
        output_dir=output_dir,
        iterations=experiment.router.iteration,
        frames=int(trainer.collected_frames),
        last_metrics=dict(experiment.router.last_row or {}),
        resumed_from=resumed_from,
        stopped_early=experiment.checkpoints.stopped_by is not None,
    )


def summary(result: RunResult) -> str:
    """A few lines for the terminal."""
    metrics = result.last_metrics
    lines = [f"run directory: {result.output_dir}", f"iterations: {result.iterations}  frames: {result.frames}"]
    if result.resumed_from:
        lines.append(f"resumed from: {result.resumed_from}")
    for key in ("eval/deterministic/reward/episode_reward_mean", "collection/reward/episode_reward_mean"):
        if key in metrics:
            lines.append(f"{key}: {metrics[key]:.2f}")
    if result.stopped_early:
        lines.append(f"stopped early; continue with: xdrl train --resume {result.output_dir}")
    return "\n".join(lines)
