"""``xdrl eval``: play a saved policy, score it, and record a video of it.

The environment and the policy come from the same build path as ``xdrl train``
(:func:`xdrl.builder.experiment.build_algorithm` and the evaluation environment of
the run, with its wrappers, observation normalisation and reward weights); the
weights are loaded with ``weights_only=True``. By default the episodes start from the
seed the run's own evaluations use, so with the same number of episodes ``xdrl eval``
reproduces the run's deterministic evaluation of the same policy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from typing import Any

import yaml

from xdrl.config import ConfigError, ValidatedExperiment, validate
from xdrl.config.loading import with_new_defaults
from xdrl.records.runs import CONFIG_FILE, PolicyFileError, resolve_policy, run_directory_of

#: Episodes of ``xdrl eval`` when not given (RL Zoo3's final evaluations play 10 too).
DEFAULT_EPISODES = 10
#: The most episodes one evaluation plays (they run side by side, one environment each).
MAX_EPISODES = 1024


@dataclasses.dataclass
class Target:
    """What ``xdrl eval`` plays: a policy file and the validated config of its run."""

    policy_file: pathlib.Path
    config_file: pathlib.Path
    validated: ValidatedExperiment


def locate(path: str | pathlib.Path, config_file: str | pathlib.Path | None = None, key: str = "PATH") -> Target:
    """The policy file ``path`` names (a run directory: its newest) and the config it was trained with.

    Raises:
        ConfigError: no policy checkpoint there, no config found, or a config that does not validate.
    """
    try:
        policy_file = resolve_policy(path)
    except PolicyFileError as error:
        raise ConfigError(
            key, str(path), f"a run directory with a policy checkpoint, or a policy file ({error})"
        ) from error
    if config_file is None:
        run_dir = run_directory_of(policy_file)
        if run_dir is None:
            raise ConfigError(
                "--config",
                None,
                f"the config.yaml of the run that wrote {policy_file} (none found in the directory above its policies/)",
            )
        config_path = run_dir / CONFIG_FILE
    else:
        config_path = pathlib.Path(config_file).expanduser().resolve()
        if not config_path.is_file():
            raise ConfigError("--config", str(config_file), "a run's config.yaml")
    stored = yaml.safe_load(config_path.read_text())
    if not isinstance(stored, dict):
        raise ConfigError("--config", str(config_path), "a run's config.yaml (a mapping)")
    raw = with_new_defaults(stored)
    # Where the run started from does not matter to playing its policy (and may be gone by now).
    raw["init"] = {**raw.get("init", {}), "policy": None}
    raw["search"] = None
    return Target(policy_file, config_path, validate(raw))


def check_episodes(episodes: int) -> None:
    if not 1 <= episodes <= MAX_EPISODES:
        raise ConfigError("--episodes", episodes, f"an integer from 1 to {MAX_EPISODES}")


def _stats(values: list[float]) -> dict[str, float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def evaluate(
    target: Target,
    *,
    episodes: int = DEFAULT_EPISODES,
    stochastic: bool = False,
    seed: int | None = None,
    video: str | pathlib.Path | None = None,
) -> dict[str, Any]:
    """Play ``episodes`` episodes of the target's policy; their statistics as plain data.

    Args:
        episodes: episodes, played side by side (one environment each), to their end or
            ``hooks.eval.max_steps``.
        stochastic: sample actions from the policy's distribution (default: its mode).
        seed: where the episodes start (default: the run's evaluation seed).
        video: write the first episode's rendered frames here (.mp4 or .gif, :func:`write_video`).

    Raises:
        ConfigError: the policy does not fit the config's network (the tensor named), or
            ``video`` is asked of an environment that cannot render rgb frames.
    """
    from xdrl.builder.envs import VECTOR_REWARD, observation_statistics, render_problem
    from xdrl.builder.experiment import build_algorithm, eval_seed, make_eval_env, prepare_process
    from xdrl.builder.warm_start import load_policy_state
    from xdrl.trainer_hooks.evaluation import play_episodes

    check_episodes(episodes)
    validated = target.validated
    config, info = validated.config, validated.env_info
    video_path = None if video is None else pathlib.Path(video).expanduser().resolve()
    if video_path is not None:
        problem = video_problem(video_path)
        if problem is not None:
            raise ConfigError("--video", str(video), problem)
        problem = render_problem(config.env)
        if problem is not None:
            raise ConfigError("--video", str(video), f"an env that renders rgb frames ({config.env.id}: {problem})")
    seed = eval_seed(config) if seed is None else seed
    prepare_process(config)
    parts = build_algorithm(validated, "cpu")
    try:
        step = load_policy_state(validated, parts, target.policy_file, "PATH")
        norm = observation_statistics(config.env, info, seed=config.seed) if config.env.normalize_observations else None
        env = make_eval_env(validated, norm, episodes=episodes, render=video_path is not None)
        try:
            played = play_episodes(
                parts.policy,
                env,
                max_steps=config.hooks.eval.max_steps,
                deterministic=not stochastic,
                render=video_path is not None,
                seed=seed,
                owner="xdrl eval",
            )
        except RuntimeError as error:  # a render that gives no frame
            if video_path is None:
                raise
            raise ConfigError("--video", str(video), f"an environment that renders rgb frames ({error})") from error
        finally:
            env.close()
    finally:
        parts.trainer.collector.shutdown()
    rollout = played.rollout
    returns = played.returns(rollout["next", "reward"]).reshape(episodes).tolist()
    lengths = played.lengths.tolist()
    result: dict[str, Any] = {
        "policy": str(target.policy_file),
        "step": step,
        "config": str(target.config_file),
        "env": config.env.id,
        "algo": validated.algo.name,
        "episodes": episodes,
        "deterministic": not stochastic,
        "seed": seed,
        "return": _stats(returns),
        "length": _stats([float(n) for n in lengths]),
        "returns": returns,
        "lengths": lengths,
    }
    if info.multi_objective:
        vector = played.returns(rollout["next", VECTOR_REWARD]).reshape(episodes, -1)
        result["objectives"] = [_stats(column.tolist()) for column in vector.T]
        result["reward_weights"] = list(config.env.reward_weights)
    if video_path is not None:
        result["video"] = str(write_video(played.frames, video_path, fps=config.hooks.eval.video_fps))
        result["video_frames"] = len(played.frames)
    return result


#: Video formats of ``--video``, by file suffix.
VIDEO_FORMATS = {".mp4": "H.264 through PyAV (pip install 'xdrl[video]')", ".gif": "animated GIF through Pillow"}


def video_problem(path: pathlib.Path) -> str | None:
    """Why ``path`` cannot take a video (``None``: it can), checked before anything is built."""
    if path.suffix.lower() not in VIDEO_FORMATS:
        return "a file ending in " + " or ".join(f"{suffix} ({what})" for suffix, what in VIDEO_FORMATS.items())
    if path.is_dir() or not path.parent.is_dir():
        return "a file path in an existing directory"
    if path.suffix.lower() == ".mp4":
        try:
            import av  # noqa: F401
        except ImportError:
            return "a .gif file, or PyAV installed for .mp4 (pip install 'xdrl[video]')"
    return None


def write_video(frames: list[Any], path: pathlib.Path, fps: int) -> pathlib.Path:
    """Write rgb ``frames`` (H, W, 3) to ``path`` (.mp4 or .gif, see :data:`VIDEO_FORMATS`), atomically.

    An MP4 holds every frame (H.264, constant frame rate). A GIF stores a frame equal
    to the one before it as one longer frame (Pillow does so), so it may list fewer
    frames than steps while playing for the same time.
    """
    from xdrl.records.atomic import atomic_write

    if path.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(frame) for frame in frames]
        duration = max(round(1000 / fps), 1)
        atomic_write(
            path,
            lambda file: images[0].save(
                file, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
            ),
        )
        return path
    import av
    import numpy as np

    def encode(file: Any) -> None:
        with av.open(file, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            height, width = frames[0].shape[:2]
            # yuv420p, what every player reads, needs even sizes: an odd edge is repeated once.
            stream.width, stream.height, stream.pix_fmt = width + width % 2, height + height % 2, "yuv420p"
            for frame in frames:
                padded = np.pad(frame[..., :3], ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(padded), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, encode)
    return path


def render(result: dict[str, Any]) -> str:
    """The terminal lines of an evaluation."""
    ret, length = result["return"], result["length"]
    mode = "deterministic" if result["deterministic"] else "stochastic"
    lines = [
        f"policy: {result['policy']} (iteration {result['step']})",
        f"{result['env']} {result['algo']}: {result['episodes']} episodes, {mode}, seed {result['seed']}",
        f"return: mean {ret['mean']:.2f}  std {ret['std']:.2f}  min {ret['min']:.2f}  max {ret['max']:.2f}",
        f"length: mean {length['mean']:.1f}  std {length['std']:.1f}  min {length['min']:.0f}  max {length['max']:.0f}",
    ]
    for index, objective in enumerate(result.get("objectives", [])):
        lines.append(
            f"objective {index}: mean {objective['mean']:.2f}  std {objective['std']:.2f}  "
            f"min {objective['min']:.2f}  max {objective['max']:.2f}"
        )
    if "video" in result:
        lines.append(f"video: {result['video']} ({result['video_frames']} frames)")
    return "\n".join(lines)


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result)
