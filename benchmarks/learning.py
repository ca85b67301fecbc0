"""Does xdrl learn? Presets trained to their published budgets, next to the published numbers.

Trains ``cartpole_ppo`` to 100k frames and ``cartpole_dqn`` to 50k frames (and,
with ``--sac``, ``pendulum_sac`` to 20k frames) over several seeds, through the
same build path as ``xdrl train`` (full hook set, W&B off), then evaluates each
final policy deterministically on a fresh environment. Prints, per preset, the
mean and spread of the final return, each seed's return and wall time, and the
reference (RL Zoo3's benchmark table).

Goals: CartPole return >= 475 for both algorithms, Pendulum >= -200.

    python benchmarks/learning.py [--seeds 3] [--jobs 2] [--episodes 10] [--sac]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

# name: (reference text, goal)
PRESETS = {
    "cartpole_ppo": ("RL Zoo3 PPO CartPole-v1 @1e5: 500.0 +/- 0.0", 475.0),
    "cartpole_dqn": ("RL Zoo3 DQN CartPole-v1 @5e4: 500.0 +/- 0.0", 475.0),
    "pendulum_sac": ("RL Zoo3 SAC Pendulum-v1 @2e4: -157.0 +/- 88.7", -200.0),
}


def train_and_evaluate(preset: str, seed: int, episodes: int) -> tuple[float, float, int]:
    """(mean final return over ``episodes``, wall seconds, frames) of one seed."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    from xdrl.builder.experiment import build, evaluate
    from xdrl.config import compose_config, validate

    overrides = [f"experiment={preset}", f"seed={seed}", "logger=none", "hooks.policy_checkpoint.interval=0"]
    validated = validate(compose_config(overrides))
    # The run's files (trainer checkpoints: SAC's hold its replay buffer) go when the seed is done.
    with tempfile.TemporaryDirectory(prefix=f"xdrl-{preset}-{seed}-") as output_dir:
        start = time.perf_counter()
        experiment = build(validated, "cpu", output_dir=output_dir)
        experiment.trainer.train()
        seconds = time.perf_counter() - start
        returns = evaluate(experiment, episodes)
        return statistics.fmean(returns), seconds, int(experiment.trainer.collected_frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="trainings run in parallel (one core each)")
    parser.add_argument("--episodes", type=int, default=10, help="final evaluation episodes per seed")
    parser.add_argument("--sac", action="store_true", help="also pendulum_sac (slow on CPU)")
    parser.add_argument("--presets", nargs="*", help="run only these presets")
    args = parser.parse_args()
    presets = args.presets or [p for p in PRESETS if p != "pendulum_sac" or args.sac]
    jobs = {(p, s): None for p in presets for s in range(args.seeds)}
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {key: pool.submit(train_and_evaluate, key[0], key[1], args.episodes) for key in jobs}
        results = {key: future.result() for key, future in futures.items()}
    print(
        f"\n{'preset':<14} {'frames':>7} {'final return (mean +/- std over seeds)':>40} {'goal':>7} {'met':>4}  per seed (return, wall s)"
    )
    for preset in presets:
        runs = [results[(preset, s)] for s in range(args.seeds)]
        returns = [r[0] for r in runs]
        mean = statistics.fmean(returns)
        std = statistics.pstdev(returns)
        reference, goal = PRESETS[preset]
        per_seed = ", ".join(f"({r:.1f}, {t:.0f})" for r, t, _ in runs)
        print(
            f"{preset:<14} {runs[0][2]:>7} {f'{mean:.1f} +/- {std:.1f}':>40} {goal:>7.0f} {'yes' if mean >= goal else 'no':>4}  {per_seed}"
        )
        print(f"{'':<14} reference: {reference}")


if __name__ == "__main__":
    main()
