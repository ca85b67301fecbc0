"""The ``xdrl`` command line.

    xdrl train experiment=cartpole_ppo algo.lr=1e-3       one run in this process
    xdrl train --resume runs/cartpole_ppo/20261125-101010  continue it from its newest checkpoint
    xdrl tune experiment=cartpole_ppo search=optuna        a Ray Tune search (local Ray, or RAY_ADDRESS)
    xdrl tune --resume runs/tune/cartpole_ppo-20261125-1010 restore an interrupted search
    xdrl report runs/tune/cartpole_ppo-20261125-1010        what the search found: report/report.md
    xdrl confirm runs/tune/cartpole_ppo-20261125-1010 --top 3 --seeds 5   the best ones again, over seeds
    xdrl demo                                               PPO on CartPole with the hook set, no config

Bad configuration prints one line naming the key, the value and what is accepted,
and exits with status 2 before anything is built.
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import sys
import warnings
from collections.abc import Sequence

EXIT_CONFIG_ERROR = 2


def _quiet_third_parties() -> None:
    # Deprecation chatter of TorchRL/gymnasium would bury the one line that matters.
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*experimental/prototype.*")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RL_WARNINGS", "False")
    logging.getLogger("torchrl").setLevel(logging.WARNING)


def _train(args: argparse.Namespace) -> int:
    from xdrl import runner

    if args.resume:
        directory = pathlib.Path(args.resume).resolve()
        validated = runner.load_run_config(directory, args.overrides)
        result = runner.train(validated, directory, resume=True, progress_bar=not args.no_progress)
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


def _demo(args: argparse.Namespace) -> int:
    from torchrl.record.loggers.wandb import WandbLogger

    from xdrl.demo import make_ppo_trainer, register_full_hook_set

    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    offline = not os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE") == "offline"
    logger = WandbLogger(
        exp_name="demo", offline=offline, save_dir=str(out), project="xdrl-demo", log_env_packages=False
    )
    trainer = make_ppo_trainer(
        total_frames=args.frames, frames_per_batch=512, minibatch=128, lr=1e-3, logger=logger, progress_bar=True
    )
    hooks = register_full_hook_set(
        trainer,
        checkpoint_dir=out / "policies",
        checkpoint_interval=10,
        eval_interval_frames=5120,
        eval_max_steps=500,
        wandb=True,
    )
    trainer.train()
    last_eval = trainer._log_dict.get("eval/deterministic/reward/episode_reward_mean", [float("nan")])[-1]
    print(f"frames: {hooks.counters_hook.total_frames}  iterations: {hooks.counters_hook.iteration}")
    print(f"last deterministic evaluation return: {last_eval:.1f}")
    print(f"policy checkpoints: {out / 'policies'}")
    print(f"W&B run ({'offline' if offline else 'online'}): {out / 'wandb'}")
    return 0


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

    demo = commands.add_parser("demo", help="train PPO on CartPole-v1 with the full xdrl hook set (no config)")
    demo.add_argument("--frames", type=int, default=20_480, help="frames to collect (default: %(default)s)")
    demo.add_argument("--out", default="runs/demo", help="output directory (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
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
