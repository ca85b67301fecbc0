"""The ``xdrl`` command line."""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence


def _demo(args: argparse.Namespace) -> int:
    # Imported here: `xdrl --help` should not pay for torch.
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
    print(f"W&B run ({'offline' if offline else 'online'}): {logger.experiment.dir if not offline else out / 'wandb'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xdrl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train PPO on CartPole-v1 with the full xdrl hook set")
    demo.add_argument("--frames", type=int, default=20_480, help="frames to collect (default: %(default)s)")
    demo.add_argument("--out", default="runs/demo", help="output directory (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
