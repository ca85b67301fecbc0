"""Cost of the xdrl hook set on a TorchRL PPO trainer (goal: ratio >= 0.98).

Both sides come from the builder, on the ``cartpole_ppo`` preset at the
benchmark's sizes (512-frame batches, 4 epochs of 128-frame minibatches, seed
0, one torch thread):

- bare: ``build_algorithm(config, logger=None)``, the preset's TorchRL trainer without any xdrl hook;
- hooked: ``build(config)`` with ``logger=none``, what ``xdrl train`` runs:
  the same trainer plus the metric router writing ``metrics.jsonl``, the
  logging hook set (collection, training, counter, progress and timer
  metrics), policy checkpoints every 5 iterations and trainer checkpoints
  (``checkpoint.interval``); no evaluation, no W&B.

The two alternate in one process with the same seed (so the same episodes and
updates). Only ``trainer.train()`` is timed.

Two measures are printed, because a shared 2-core VM moves single runs by
+-10% whatever they do:

- A/B: frames per second of each round, the ratio bare/hooked of the
  fastest round of each (the least disturbed run of each configuration), and
  the median of the rounds' paired ratios (each pair ran back to back);
- in-run accounting: inside every hooked run, the wall time spent in the xdrl
  hook ops themselves, and the ratio ``1 - hook_time / run_time``.

With ``--eval-interval FRAMES`` the hooked side also evaluates (``hooks.eval``,
``--eval-episodes`` episodes side by side, CartPole's 500-step cap): the ratio then
says what the evaluations cost on top of the hook set, and the in-run accounting
splits the evaluations' own time from the other hooks'.

    python benchmarks/hook_overhead.py [--frames 5120] [--rounds 6] [--eval-interval 0] [--eval-episodes 5]
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time
from typing import Any

from xdrl.builder.experiment import build, build_algorithm, prepare_process
from xdrl.config import ValidatedExperiment, compose_config, validate
from xdrl.records.lineage import METRICS_FILE, read_jsonl

STAGES = [
    "_batch_process_ops",
    "_pre_steps_log_ops",
    "_post_optim_complete_log_ops",
    "_post_steps_ops",
    "_post_steps_log_ops",
    "_setup_ops",
    "_shutdown_ops",
]


def _is_xdrl_op(op: Any) -> bool:
    target = getattr(op, "__wrapped__", op)
    target = getattr(target, "func", target)  # functools.partial: the function it calls
    owner = getattr(target, "__self__", None)  # bound methods: the hook object
    module = (type(owner).__module__ if owner is not None else getattr(target, "__module__", "")) or ""
    # The algorithm's own ops (PPO's advantages, DQN's epsilon annealing) are part of the bare trainer
    # too (``build_algorithm`` registers them): not the hook set.
    return module.startswith("xdrl.") and not module.startswith("xdrl.builder.algorithms")


def _account(trainer: Any, spent: list[float]) -> None:
    """Wrap every xdrl op registered on ``trainer`` with a timer adding to ``spent[0]``."""

    def timed(op: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return op(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start

        return run

    for stage in STAGES:
        ops = getattr(trainer, stage)
        ops[:] = [(timed(op) if _is_xdrl_op(op) else op, kwargs) for op, kwargs in ops]


def benchmark_config(frames: int, eval_interval: int = 0, eval_episodes: int = 5) -> ValidatedExperiment:
    """The ``cartpole_ppo`` preset at the benchmark's sizes; no logger but metrics.jsonl; evaluation if asked."""
    return validate(
        compose_config(
            [
                "experiment=cartpole_ppo",
                f"collector.total_frames={frames}",
                "collector.frames_per_batch=512",
                "algo.minibatch_size=128",
                "algo.epochs=4",
                "seed=0",
                "resources.num_threads=1",  # one core per trainer: less scheduler noise on small machines
                f"hooks.eval.interval_frames={eval_interval}",
                f"hooks.eval.episodes={eval_episodes}",
                "hooks.policy_checkpoint.interval=5",
                "logger=none",
            ]
        )
    )


def timed_run(validated: ValidatedExperiment, hooks: bool) -> tuple[float, float, float]:
    """(wall seconds of ``train()``, seconds of it inside xdrl hooks, seconds of those in evaluations)."""
    spent = [0.0]
    with tempfile.TemporaryDirectory(prefix="xdrl-hook-overhead-") as output_dir:
        if hooks:
            trainer = build(validated, "cpu", output_dir=output_dir).trainer
            _account(trainer, spent)
        else:
            prepare_process(validated.config)  # what build() does first: threads and seeds
            trainer = build_algorithm(validated, "cpu", logger=None).trainer
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        evaluating = 0.0
        if hooks:
            rows = read_jsonl(pathlib.Path(output_dir) / METRICS_FILE)
            evaluating = sum(row.get("timers/eval/deterministic/evaluation_time", 0.0) for row in rows)
        return seconds, spent[0], evaluating


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=5_120)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--eval-interval", type=int, default=0, help="frames between evaluations (0: none)")
    parser.add_argument("--eval-episodes", type=int, default=5)
    args = parser.parse_args()
    validated = benchmark_config(args.frames, args.eval_interval, args.eval_episodes)
    timed_run(benchmark_config(1024), hooks=True)  # warm-up (imports, allocator)
    bare: list[float] = []
    hooked: list[tuple[float, float]] = []
    evaluating: list[float] = []
    for round_index in range(args.rounds):
        order = (False, True) if round_index % 2 == 0 else (True, False)
        for with_hooks in order:
            seconds, in_hooks, in_evaluations = timed_run(validated, with_hooks)
            if with_hooks:
                hooked.append((seconds, in_hooks))
                evaluating.append(in_evaluations)
            else:
                bare.append(seconds)
        print(
            f"round {round_index + 1}: bare {args.frames / bare[-1]:7.1f} fps, hooks {args.frames / hooked[-1][0]:7.1f} fps"
            f" (ratio {bare[-1] / hooked[-1][0]:.3f}); time inside hooks {1000 * hooked[-1][1]:.1f} ms"
            f" of {hooked[-1][0]:.2f} s"
        )
    best_bare, best_hooked = min(bare), min(seconds for seconds, _ in hooked)
    print(
        f"A/B (fastest round of each): bare TorchRL {args.frames / best_bare:.1f} frames/s, "
        f"with hook set {args.frames / best_hooked:.1f} frames/s, ratio {best_bare / best_hooked:.3f} (goal >= 0.98)"
    )
    paired = [b / h for b, (h, _) in zip(bare, hooked, strict=True)]
    print(f"A/B (median of the rounds' paired ratios bare/hooked): {statistics.median(paired):.3f} (goal >= 0.98)")
    share = sum(h for _, h in hooked) / sum(s for s, _ in hooked)
    print(
        f"in-run accounting: hooks take {100 * share:.2f}% of the hooked runs' time, ratio {1 - share:.4f} (goal >= 0.98)"
    )
    if args.eval_interval:
        total = sum(s for s, _ in hooked)
        evaluations = args.frames // args.eval_interval
        eval_share = sum(evaluating) / total
        print(
            f"evaluations ({evaluations} per run of {args.eval_episodes} episodes): "
            f"{sum(evaluating) / len(evaluating) / evaluations:.2f} s each, {100 * eval_share:.2f}% of the hooked runs' time; "
            f"the other hooks {100 * (share - eval_share):.2f}%"
        )


if __name__ == "__main__":
    main()
