"""Time to solve, xdrl against Stable-Baselines3 with RL Zoo3's hyperparameters, side by side.

For each preset, SB3 (RL Zoo3's tuned hyperparameters for the task) and ``xdrl train``
(the preset, whose settings follow the same table) run alternately, one process at a
time, for ``--seeds`` seeds each. Both evaluate the deterministic policy at the same
frame interval (``--eval-every``, at the end of the update that crossed it) on the same
number of episodes, and the script records when the mean return first reaches the
reference (CartPole 475, Pendulum -200).

Printed per preset and runner: frames per second, the frames and the time to first
reach the reference, the final return, and the ratio xdrl / SB3 of the median time to
solve. Two times are given, both without the evaluations' own time (each side plays
its evaluation episodes its own way; the evaluations are the yardstick, not the work):

- process: from starting the process (``xdrl train ...`` as a user types it, or the
  Python process that builds and trains the SB3 model) to the end of the update after
  which the evaluation reached the reference: start-up, imports, building, training;
- trainer: the same moment measured from the start of training (xdrl: the trainer's
  ``timers/total_time``; SB3: from the first ``learn`` step).

A run that never reaches the reference counts as its whole time (marked ``*``).

xdrl runs with ``logger=none`` (SB3 logs nothing either) and the preset's other
defaults, its speed options included; ``--xdrl KEY=VALUE ...`` adds overrides to every
xdrl run (to measure a speed option: ``--xdrl collector.env_backend=serial``). On a
machine where torch sees CUDA, both sides train on the GPU (``--device``).

Needs the ``bench`` extra: ``pip install -e '.[bench]'``.

    python benchmarks/vs_sb3.py [--presets cartpole_ppo cartpole_dqn pendulum_sac] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

# preset: (gymnasium id, reference return, evaluation interval in frames, frames, eval max steps)
PRESETS: dict[str, dict[str, Any]] = {
    "cartpole_ppo": {"env": "CartPole-v1", "reference": 475.0, "eval_every": 5_120, "frames": 100_000},
    "cartpole_dqn": {"env": "CartPole-v1", "reference": 475.0, "eval_every": 5_120, "frames": 50_000},
    "pendulum_sac": {"env": "Pendulum-v1", "reference": -200.0, "eval_every": 1_000, "frames": 20_000},
}


# --------------------------------------------------------------------------------------------
# SB3 side: runs in its own process (``--sb3 PRESET SEED``), prints one JSON line per evaluation.
# --------------------------------------------------------------------------------------------


def _linear(start: float):
    """RL Zoo3's ``lin_<value>`` schedules: ``value * progress_remaining``."""
    return lambda progress_remaining: progress_remaining * start


def sb3_model(preset: str, seed: int, device: str) -> Any:
    """The RL Zoo3 hyperparameters of the task (``hyperparams/{ppo,dqn,sac}.yml``, RL Zoo3 2.x)."""
    from stable_baselines3 import DQN, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env

    env_id = PRESETS[preset]["env"]
    if preset == "cartpole_ppo":
        env = make_vec_env(env_id, n_envs=8, seed=seed)
        return PPO(
            "MlpPolicy",
            env,
            n_steps=32,
            batch_size=256,
            gae_lambda=0.8,
            gamma=0.98,
            n_epochs=20,
            ent_coef=0.0,
            learning_rate=_linear(1e-3),
            clip_range=_linear(0.2),
            seed=seed,
            device=device,
        )
    if preset == "cartpole_dqn":
        env = make_vec_env(env_id, n_envs=1, seed=seed)
        return DQN(
            "MlpPolicy",
            env,
            learning_rate=2.3e-3,
            batch_size=64,
            buffer_size=100_000,
            learning_starts=1_000,
            gamma=0.99,
            target_update_interval=10,
            train_freq=256,
            gradient_steps=128,
            exploration_fraction=0.16,
            exploration_final_eps=0.04,
            policy_kwargs={"net_arch": [256, 256]},
            seed=seed,
            device=device,
        )
    env = make_vec_env(env_id, n_envs=1, seed=seed)
    return SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device=device)


def run_sb3(
    preset: str, seed: int, eval_every: int, episodes: int, frames: int, device: str, until_solved: bool
) -> None:
    """Train SB3 on ``preset`` and print a JSON line per evaluation (and one at the start of training)."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)  # as an xdrl trial; SB3 is no faster with both cores here
    model = sb3_model(preset, seed, device)
    eval_env = make_vec_env(PRESETS[preset]["env"], n_envs=1, seed=seed + 10_000)

    class Evaluate(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = eval_every
            self.eval_seconds = 0.0
            self.solved = False

        def _on_training_start(self) -> None:
            print(json.dumps({"event": "start", "t": time.time()}), flush=True)

        def _on_step(self) -> bool:
            return not self.solved

        def _evaluate(self) -> None:
            start = time.perf_counter()
            returns, _ = evaluate_policy(
                self.model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
            )
            self.eval_seconds += time.perf_counter() - start
            row = {
                "event": "eval",
                "t": time.time() - self.eval_seconds,  # the moment, without the evaluations' time
                "frames": self.num_timesteps,
                "return": float(sum(returns) / len(returns)),
            }
            print(json.dumps(row), flush=True)
            if until_solved and row["return"] >= PRESETS[preset]["reference"]:
                self.solved = True

        def _on_rollout_start(self) -> None:
            # Called after each update (train) and before the next collection: the same point
            # at which xdrl evaluates (the end of an iteration).
            if self.num_timesteps >= self.next_eval:
                while self.next_eval <= self.num_timesteps:
                    self.next_eval += eval_every
                self._evaluate()

        def _on_training_end(self) -> None:
            if self.num_timesteps >= self.next_eval:
                self._evaluate()

    model.learn(total_timesteps=frames, callback=Evaluate())


# --------------------------------------------------------------------------------------------
# The driver: runs both sides as subprocesses and reads what they record.
# --------------------------------------------------------------------------------------------


def _sb3_rows(preset: str, seed: int, args: argparse.Namespace, frames: int) -> tuple[float, list[dict]]:
    command = [sys.executable, __file__, "--sb3", preset, str(seed), "--eval-every", str(_eval_every(preset, args))]
    command += ["--episodes", str(args.episodes), "--frames", str(frames), "--device", args.device]
    command += ["--until-solved"] if args.until_solved else []
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"SB3 {preset} seed {seed} failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return started, rows + [{"event": "exit", "t": time.time()}]


def _watch_rows(path: pathlib.Path, stamps: dict[int, float], stop: threading.Event, on_row: Any) -> None:
    """Stamp each metrics.jsonl row with the wall time it appeared (xdrl writes each row at the end of its iteration)."""
    while not stop.is_set():
        if path.exists():
            now = time.time()
            lines = path.read_text().splitlines(keepends=True)
            for index in range(len(stamps), len(lines)):
                if not lines[index].endswith("\n"):
                    break
                stamps[index] = now
                on_row(json.loads(lines[index]))
        time.sleep(0.005)


def _xdrl_rows(preset: str, seed: int, args: argparse.Namespace, frames: int) -> tuple[float, list[dict]]:
    output = pathlib.Path(tempfile.mkdtemp(prefix=f"vs_sb3-{preset}-{seed}-"))
    xdrl = pathlib.Path(sys.executable).with_name("xdrl")
    command = [str(xdrl), "train", f"experiment={preset}", f"seed={seed}", "logger=none", f"output_dir={output}"]
    command += [f"hooks.eval.interval_frames={_eval_every(preset, args)}", f"hooks.eval.episodes={args.episodes}"]
    command += [f"collector.total_frames={frames}", f"resources.device={args.device}", *args.xdrl]
    stamps: dict[int, float] = {}
    stop = threading.Event()
    started = time.time()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def on_row(row: dict) -> None:
        solved = row.get("eval/deterministic/reward/episode_reward_mean", -math.inf) >= PRESETS[preset]["reference"]
        if args.until_solved and solved:
            process.send_signal(signal.SIGINT)  # xdrl train stops after this iteration, as on Ctrl-C

    watcher = threading.Thread(target=_watch_rows, args=(output / "metrics.jsonl", stamps, stop, on_row), daemon=True)
    watcher.start()
    _, stderr = process.communicate()
    finished = time.time()
    stop.set()
    watcher.join()
    if process.returncode not in (0, 130, -signal.SIGINT):
        raise SystemExit(f"xdrl {preset} seed {seed} failed:\n{stderr[-3000:]}")
    metric_rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(output, ignore_errors=True)  # the run's checkpoints: up to 24 MB each (DQN's replay buffer)
    rows: list[dict] = []
    eval_seconds = 0.0
    trainer_start = None
    for index, row in enumerate(metric_rows):
        seen = stamps.get(index, finished)
        if trainer_start is None:
            trainer_start = seen - row["timers/total_time"]
            rows.append({"event": "start", "t": trainer_start})
        evaluation = row.get("timers/eval/deterministic/evaluation_time")
        if evaluation is None:
            continue
        eval_seconds += evaluation
        rows.append(
            {
                "event": "eval",
                "t": seen - eval_seconds,
                "trainer_t": row["timers/total_time"] - eval_seconds,
                "frames": row["counters/total_frames"],
                "return": row["eval/deterministic/reward/episode_reward_mean"],
            }
        )
    return started, rows + [{"event": "exit", "t": finished}]


def _eval_every(preset: str, args: argparse.Namespace) -> int:
    return args.eval_every or PRESETS[preset]["eval_every"]


def summarize(started: float, rows: list[dict], reference: float) -> dict[str, Any]:
    """Frames/s, time and frames to the reference (process and trainer clocks), final return."""
    start = next(r["t"] for r in rows if r["event"] == "start")
    evals = [r for r in rows if r["event"] == "eval"]
    exit_t = rows[-1]["t"]
    solved = next((r for r in evals if r["return"] >= reference), None)
    last = evals[-1]
    at = solved or last
    trainer = at.get("trainer_t", at["t"] - start)
    return {
        "solved": solved is not None,
        "process_s": (at["t"] if solved else exit_t) - started,
        "trainer_s": trainer,
        "frames": at["frames"],
        "final": last["return"],
        "fps": last["frames"] / (last.get("trainer_t") or (last["t"] - start)),
        "wall_s": exit_t - started,
    }


def _fmt(result: dict[str, Any]) -> str:
    mark = "" if result["solved"] else "*"
    return (
        f"{result['fps']:7.0f} fr/s  solved at {result['frames']:6d}{mark} fr  "
        f"process {result['process_s']:6.1f} s  trainer {result['trainer_s']:6.1f} s  "
        f"final {result['final']:8.1f}  whole run {result['wall_s']:6.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes (both sides)")
    parser.add_argument("--eval-every", type=int, default=0, help="evaluation interval in frames (preset default)")
    parser.add_argument("--frames", type=int, default=0, help="frames per run (default: the preset's budget)")
    parser.add_argument("--device", default="", help="cpu or cuda (default: cuda when torch sees one)")
    parser.add_argument(
        "--until-solved", action="store_true", help="stop each run once it reaches the reference (no final return)"
    )
    parser.add_argument("--xdrl", nargs="*", default=[], help="overrides added to every xdrl run")
    parser.add_argument("--sb3", nargs=2, metavar=("PRESET", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.device:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.sb3:
        preset, seed = args.sb3[0], int(args.sb3[1])
        run_sb3(preset, seed, args.eval_every, args.episodes, args.frames, args.device, args.until_solved)
        return
    os.environ.setdefault("WANDB_MODE", "offline")
    print(f"device {args.device}; seeds {args.first_seed}..{args.first_seed + args.seeds - 1}; xdrl {args.xdrl}")
    ratios = {}
    for preset in args.presets:
        reference = PRESETS[preset]["reference"]
        frames = args.frames or PRESETS[preset]["frames"]
        print(f"\n== {preset}: {frames} frames, eval every {_eval_every(preset, args)} frames, reference {reference}")
        results: dict[str, list[dict]] = {"sb3": [], "xdrl": []}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            # Alternate, and alternate who goes first: a drifting machine favours neither side.
            order = [("sb3", _sb3_rows), ("xdrl", _xdrl_rows)]
            for name, runner in order if seed % 2 == 0 else order[::-1]:
                started, rows = runner(preset, seed, args, frames)
                result = summarize(started, rows, reference)
                results[name].append(result)
                print(f"  seed {seed} {name:5s} {_fmt(result)}", flush=True)
        medians = {}
        for name, runs in results.items():
            medians[name] = {
                key: statistics.median(r[key] for r in runs) for key in ("process_s", "trainer_s", "fps", "frames")
            }
            solved = sum(r["solved"] for r in runs)
            print(
                f"  {name:5s} median: {medians[name]['fps']:7.0f} fr/s, solved {solved}/{len(runs)} at "
                f"{medians[name]['frames']:.0f} frames, process {medians[name]['process_s']:.1f} s, "
                f"trainer {medians[name]['trainer_s']:.1f} s, final "
                f"{statistics.fmean(r['final'] for r in runs):.1f}"
            )
        ratio = medians["xdrl"]["process_s"] / medians["sb3"]["process_s"]
        trainer_ratio = medians["xdrl"]["trainer_s"] / medians["sb3"]["trainer_s"]
        ratios[preset] = (ratio, trainer_ratio)
        print(f"  xdrl / SB3 time to solve: process {ratio:.2f}, trainer {trainer_ratio:.2f}")
    print("\nxdrl / SB3 time to solve (median over seeds; goal <= 1.0, cartpole_ppo <= 0.5):")
    for preset, (ratio, trainer_ratio) in ratios.items():
        print(f"  {preset:14s} process {ratio:.2f}  trainer {trainer_ratio:.2f}")


if __name__ == "__main__":
    main()
