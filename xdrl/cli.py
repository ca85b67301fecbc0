"""The ``xdrl`` command line.

    xdrl train experiment=cartpole_ppo algo.lr=1e-3       one run in this process
    xdrl train --resume runs/cartpole_ppo/20261125-101010  continue it from its newest checkpoint
    xdrl tune experiment=cartpole_ppo search=optuna        a Ray Tune search (local Ray, or RAY_ADDRESS)
    xdrl tune --resume runs/tune/cartpole_ppo-20261125-1010 restore an interrupted search
    xdrl report runs/tune/cartpole_ppo-20261125-1010        what the search found: report/report.md
    xdrl confirm runs/tune/cartpole_ppo-20261125-1010 --top 3 --seeds 5   the best ones again, over seeds
    xdrl eval runs/cartpole_ppo/20261125-101010 --episodes 10 --video play.mp4   play a saved policy
    xdrl eval runs/tune/cartpole_ppo-20261125-1010 --best                       the best trial's final policy
    xdrl demo --frames 20480                                PPO on CartPole (cartpole_ppo), full hook set, W&B
    xdrl drain --timeout 100                                on a node about to be preempted: trials checkpoint, hand over

Bad configuration prints one line naming the key, the value and what is accepted,
and exits with status 2 before anything is built.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import pathlib
import sys
import time
from collections.abc import Sequence

EXIT_CONFIG_ERROR = 2


def _quiet_third_parties() -> None:
    # Informational chatter of W&B and TorchRL would bury the one line that matters. Warnings
    # stay on: a deprecation xdrl's own use of a library causes is something to fix, not hide.
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RL_WARNINGS", "False")
    # Rendering envs start pygame, whose SDL looks for a sound card and a display xdrl never uses.
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    logging.getLogger("torchrl").setLevel(logging.WARNING)


def _train(args: argparse.Namespace) -> int:
    from xdrl import runner

    if args.resume:
        directory = pathlib.Path(args.resume).resolve()
        found = runner.resume_point(directory)  # before the overrides are saved: a refused resume changes nothing
        validated = runner.load_run_config(directory, args.overrides)
        result = runner.train(validated, directory, resume=True, resume_from=found, progress_bar=not args.no_progress)
    else:
        validated, directory = runner.prepare_new_run(args.overrides)
        print(f"run directory: {directory}", flush=True)
        result = runner.train(validated, directory, resume=False, progress_bar=not args.no_progress)
    print(runner.summary(result))
    return 0


def _tune(args: argparse.Namespace) -> int:
    from xdrl.distributed import tuner

    if args.resume:
        plan = tuner.plan_from_directory(args.resume)
    else:
        plan = tuner.plan(args.overrides)
    print(f"experiment directory: {plan.experiment_dir}", flush=True)
    study = tuner.study_line(plan)  # the URL with its password as ***; a missing password stops here
    if study is not None:
        print(study, flush=True)
    results = tuner.run(plan, resume=bool(args.resume))
    print(tuner.best_summary(results, plan))
    return 0


def _report(args: argparse.Namespace) -> int:
    from xdrl.report.build import build_report, terminal_summary

    print(terminal_summary(build_report(args.directory)))
    return 0


def _confirm(args: argparse.Namespace) -> int:
    from xdrl.distributed import confirm

    summary = confirm.confirm(args.directory, top=args.top, seeds=args.seeds, episodes=args.episodes)
    print(confirm.render(summary))
    print(f"confirmation experiment: {summary['experiment']}")
    return 0


#: The demo's experiment: the preset ``xdrl train experiment=cartpole_ppo`` runs.
DEMO_PRESET = "cartpole_ppo"
#: Evaluations and policy files over a demo run (every 5,120 frames at the default budget).
DEMO_REPORTS = 4
DEMO_EVAL_RETURN = "eval/deterministic/reward/episode_reward_mean"


def _hydra_quoted(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


def _demo_overrides(frames: int, out: pathlib.Path) -> list[str]:
    """The ``cartpole_ppo`` preset with the demo's budget, W&B (offline unless a key is configured) and ``out``."""
    from xdrl.config import compose_config

    frames_per_batch = compose_config([f"experiment={DEMO_PRESET}"])["collector"]["frames_per_batch"]
    every = max(frames // frames_per_batch // DEMO_REPORTS, 1)  # iterations
    return [
        f"experiment={DEMO_PRESET}",
        f"collector.total_frames={frames}",
        f"hooks.eval.interval_frames={every * frames_per_batch}",
        f"hooks.policy_checkpoint.interval={every}",
        "logger=wandb",
        "logger.mode=auto",
        "logger.project=xdrl-demo",
        "logger.run_name=demo",
        f"output_dir={_hydra_quoted(str(out))}",
    ]


def _demo(args: argparse.Namespace) -> int:
    from xdrl import runner
    from xdrl.builder.loggers import wandb_offline
    from xdrl.records.lineage import METRICS_FILE, read_jsonl

    out = pathlib.Path(args.out or f"runs/demo/{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    validated, directory = runner.prepare_new_run(_demo_overrides(args.frames, out))
    result = runner.train(validated, directory, resume=False)
    evaluations = [row[DEMO_EVAL_RETURN] for row in read_jsonl(directory / METRICS_FILE) if DEMO_EVAL_RETURN in row]
    last_eval = evaluations[-1] if evaluations else float("nan")
    print(f"frames: {result.frames}  iterations: {result.iterations}")
    print(f"last deterministic evaluation return: {last_eval:.1f}")
    print(f"policy checkpoints: {directory / 'policies'}")
    print(f"W&B run ({'offline' if wandb_offline(validated.config) else 'online'}): {directory / 'wandb'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from xdrl import policy_eval
    from xdrl.config.errors import ConfigError

    policy_eval.check_episodes(args.episodes)
    path = args.path
    if args.best:
        from xdrl.report.build import best_trial
        from xdrl.report.data import load_experiment

        trial = best_trial(load_experiment(args.path))
        if trial is None or trial.directory is None:
            raise ConfigError("--best", args.path, "a Tune experiment with a trial that reported the search metric")
        path = trial.directory
    target = policy_eval.locate(path, args.config)
    result = policy_eval.evaluate(
        target, episodes=args.episodes, stochastic=args.stochastic, seed=args.seed, video=args.video
    )
    print(policy_eval.to_json(result) if args.json else policy_eval.render(result))
    return 0


def _drain(args: argparse.Namespace) -> int:
    from xdrl.distributed import drain

    result = drain.drain(timeout=args.timeout, address=args.address)
    print(drain.summary(result))
    return 0 if not result.still_running else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xdrl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="run one experiment in this process")
    train.add_argument("overrides", nargs="*", help="Hydra overrides: experiment=cartpole_ppo algo.lr=1e-3 ...")
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest complete checkpoint")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    tune = commands.add_parser("tune", help="a Ray Tune search; every trial is a full training run")
    tune.add_argument(
        "overrides", nargs="*", help="Hydra overrides: experiment=cartpole_ppo search=optuna search.num_samples=8"
    )
    tune.add_argument("--resume", metavar="DIR", help="restore the interrupted experiment in DIR")
    tune.set_defaults(func=_tune)

    report = commands.add_parser("report", help="tables, figures and report.md of a tune experiment")
    report.add_argument("directory", metavar="DIR", help="the experiment directory (runs/tune/<name>)")
    report.set_defaults(func=_report)

    confirm = commands.add_parser("confirm", help="re-run the best configurations of a search over several seeds")
    confirm.add_argument("directory", metavar="DIR", help="the search's experiment directory")
    confirm.add_argument("--top", type=int, default=3, help="configurations to confirm (default: %(default)s)")
    confirm.add_argument("--seeds", type=int, default=5, help="seeds per configuration (default: %(default)s)")
    confirm.add_argument(
        "--episodes", type=int, default=10, help="final evaluation episodes per run (default: %(default)s)"
    )
    confirm.set_defaults(func=_confirm)

    play = commands.add_parser("eval", help="play a saved policy: returns, lengths, a video")
    play.add_argument(
        "path",
        metavar="PATH",
        help="a run directory (its newest policy), a policy file, or with --best a tune experiment directory",
    )
    play.add_argument("--episodes", type=int, default=10, help="episodes, side by side (default: %(default)s)")
    play.add_argument("--stochastic", action="store_true", help="sample actions (default: the policy's mode)")
    play.add_argument("--seed", type=int, default=None, help="first seed (default: the run's evaluation seed)")
    play.add_argument("--video", metavar="FILE", help="record the first episode: .mp4 (needs xdrl[video]) or .gif")
    play.add_argument("--json", action="store_true", help="print one JSON object")
    play.add_argument("--best", action="store_true", help="PATH is a tune experiment: its best trial's final policy")
    play.add_argument("--config", metavar="FILE", help="the run's config.yaml (default: the one above policies/)")
    play.set_defaults(func=_eval)

    demo = commands.add_parser(
        "demo", help="train PPO on CartPole-v1 (the cartpole_ppo preset) with the full xdrl hook set"
    )
    demo.add_argument("--frames", type=int, default=20_480, help="frames to collect (default: %(default)s)")
    demo.add_argument("--out", metavar="DIR", help="a new run directory (default: runs/demo/<date>-<time>)")
    demo.set_defaults(func=_demo)
    drain_parser = commands.add_parser(
        "drain", help="on a node about to go away: no new trials here, running ones checkpoint and hand over"
    )
    drain_parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds to wait for the trials (default: %(default)s)"
    )
    drain_parser.add_argument("--address", default=None, help="the cluster's GCS address (default: this node's)")
    drain_parser.set_defaults(func=_drain)
    return parser


@functools.cache  # once per process: main() also runs in-process (tests) more than once
def _skip_the_final_collection() -> None:
    """Leave the objects alive at exit to the OS instead of the interpreter's last garbage collection.

    torch, tensordict (which imports ``torch._dynamo``) and TorchRL leave close to 400,000
    tracked objects behind (after importing the trainer's modules): the collection Python runs
    while it tears down its modules made an ``xdrl train`` process take 1.43-1.64 s from the end of
    ``main`` to its exit, 0.31 s with this. ``gc.freeze`` moves them out of the collector's reach.
    Registered before xdrl imports W&B, Ray or torch, it runs after their exit handlers (exit
    handlers run last-registered first), so those run as before. Python does not promise to
    finalise objects still alive at exit in any case.
    """
    import atexit
    import gc

    atexit.register(gc.freeze)


def main(argv: Sequence[str] | None = None) -> int:
    _skip_the_final_collection()
    args = build_parser().parse_args(argv)
    _quiet_third_parties()
    from xdrl.config.errors import ConfigError

    try:
        return args.func(args)
    except ConfigError as error:
        print(f"xdrl: error: {error}", file=sys.stderr)
        return EXIT_CONFIG_ERROR


if __name__ == "__main__":
    sys.exit(main())
