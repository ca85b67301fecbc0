"""Population-based training against ASHA + TPE and random search, at equal trials and frames per trial.

Each method is a real ``xdrl tune`` search (``tuner.plan`` then ``tuner.run``, in this process,
on one local Ray): PPO on CartPole-v1 at a tight budget (``--frames`` per trial), ``--population``
trials of which ``--concurrent`` run at a time, all searching the same keys (learning rate, clip
range, entropy coefficient: ``search.pbt.mutations`` of the PPO preset) on the same metric (the
deterministic evaluation return, every ``--eval-every`` iterations). By default the whole population
runs at once, sharing the machine's cores: with fewer slots than members PBT pauses and restarts members
at every decision so that all advance, which random search does not have to do.

- ``pbt``: ``search=pbt``, every member deciding at each evaluation (``perturbation_interval``);
- ``asha``: Optuna's seeded TPE with ASHA stopping the weaker trials (grace period: the first evaluation);
- ``random``: random search, every trial to its end.

Every method runs with each search seed (``--seeds``; the seed also seeds training), in
alternating order. The best trial of each search (by its last reported metric; for PBT the best
member, whose weights carry its lineage's schedule) is then re-evaluated: its final policy
plays ``--episodes`` deterministic episodes on held-out environment seeds (100000 + search
seed, never used in training or in the search's own evaluations).

Printed: per search, its wall time, frames collected, best trial and held-out return; per
method, the interquartile mean (IQM) of the held-out returns over the search seeds with a
stratified-bootstrap 95% interval, and the probability that PBT beats each other method
(bootstrap interval too; ``xdrl.report.stats``). The exploits' cost: PBT's wall time against
random search's (same trials, frames and checkpoints, no exploit), and the seconds each exploit
spent loading and applying the donor's checkpoint, with the checkpoint's size.

Goal: PBT's IQM at least the best other method's, with at most 5% wall time spent on exploits.

    python benchmarks/pbt.py [--seeds 5] [--frames 16384] [--population 4] [--concurrent 4]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tempfile
import time
import warnings

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RL_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("RL_WARNINGS", "False")
warnings.filterwarnings("ignore")

METRIC = "eval/deterministic/reward/episode_reward_mean"
FRAMES_PER_BATCH = 256  # the cartpole_ppo preset's: 8 envs x 32 steps
SPACE = (
    "{algo:{lr:{type:loguniform,low:1.0e-4,high:3.0e-3},clip_epsilon:{type:uniform,low:0.1,high:0.3},"
    "entropy_coef:{type:uniform,low:0.0,high:0.02}}}"
)
METHODS = {
    "pbt": ["search=pbt"],
    "asha": ["search=optuna", "search.scheduler=asha", f"search.space={SPACE}"],
    "random": ["search=optuna", "search.searcher=random", "search.scheduler=none", f"search.space={SPACE}"],
}


def search_overrides(method: str, seed: int, args: argparse.Namespace, storage: str) -> list[str]:
    eval_frames = args.eval_every * FRAMES_PER_BATCH
    return [
        "experiment=cartpole_ppo",
        *METHODS[method],
        f"seed={seed}",
        f"search.seed={seed}",
        f"collector.total_frames={args.frames}",
        f"collector.frames_per_batch={FRAMES_PER_BATCH}",
        f"hooks.eval.interval_frames={eval_frames}",
        "hooks.eval.max_steps=500",
        f"hooks.policy_checkpoint.interval={args.eval_every}",
        f"checkpoint.interval={args.eval_every // 2}",
        f"search.pbt.perturbation_interval={args.eval_every}",
        f"search.asha.grace_period={args.eval_every}",
        f"search.pbt.mutations={SPACE}",
        f"search.num_samples={args.population}",
        f"search.max_concurrent_trials={args.concurrent}",
        f"resources.cpus_per_trial={(os.cpu_count() or 1) / args.concurrent}",
        f"search.metric={METRIC}",
        "search.mode=max",
        "logger=none",
        f"search.storage_path={storage}",
        f"search.experiment_name={method}-{seed}",
    ]


def held_out_return(trial_dir: pathlib.Path, seed: int, episodes: int) -> float:
    from xdrl import policy_eval

    target = policy_eval.locate(trial_dir)
    return float(policy_eval.evaluate(target, episodes=episodes, seed=100_000 + seed)["return"]["mean"])


def run_search(method: str, seed: int, args: argparse.Namespace, storage: str) -> dict:
    from xdrl.distributed import tuner
    from xdrl.records.experiment import PBT_EVENTS
    from xdrl.records.lineage import read_jsonl

    plan = tuner.plan(search_overrides(method, seed, args, storage))
    start = time.perf_counter()
    results = tuner.run(plan)
    wall = time.perf_counter() - start
    best = results.get_best_result(metric=METRIC, mode="max", scope="last")
    trial_dirs = [pathlib.Path(r.path) for r in results]
    frames = sum(len(read_jsonl(d / "metrics.jsonl")) * FRAMES_PER_BATCH for d in trial_dirs)
    events = [e for d in trial_dirs if (d / PBT_EVENTS).exists() for e in read_jsonl(d / PBT_EVENTS)]
    return {
        "method": method,
        "seed": seed,
        "wall": wall,
        "frames": frames,
        "errors": len(results.errors),
        "best": pathlib.Path(best.path).name[:21],
        "best_metric": best.metrics.get(METRIC),
        "held_out": held_out_return(pathlib.Path(best.path), seed, args.episodes),
        "exploits": len(events),
        "exploit_seconds": [e["seconds"] for e in events],
        "checkpoint_mb": [e["checkpoint_bytes"] / 1e6 for e in events],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--frames", type=int, default=16_384, help="frames per trial")
    parser.add_argument("--population", type=int, default=4, help="trials per search (PBT: members)")
    parser.add_argument(
        "--concurrent",
        type=int,
        default=4,
        help="trials at a time, sharing this machine's cores (default: the whole population: PBT then pauses no member)",
    )
    parser.add_argument("--eval-every", type=int, default=8, help="iterations between evaluations (PBT decisions)")
    parser.add_argument("--episodes", type=int, default=10, help="held-out evaluation episodes of each best trial")
    parser.add_argument("--methods", nargs="*", default=list(METHODS))
    args = parser.parse_args()

    import numpy as np
    import ray

    from xdrl.report.stats import bootstrap_iqm, bootstrap_probability_of_improvement

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    storage = tempfile.mkdtemp(prefix="xdrl-pbt-bench-")
    rows = []
    print(f"PPO CartPole-v1, {args.frames} frames per trial, {args.population} trials ({args.concurrent} at a time)")
    print(
        f"{'method':7} {'seed':>4} {'wall s':>7} {'frames':>7} {'err':>3} {'exploits':>8}  best trial  metric  held-out"
    )
    for seed in range(args.seeds):
        order = args.methods if seed % 2 == 0 else list(reversed(args.methods))
        for method in order:
            row = run_search(method, seed, args, storage)
            rows.append(row)
            print(
                f"{method:7} {seed:>4} {row['wall']:7.1f} {row['frames']:7d} {row['errors']:3d} {row['exploits']:8d}"
                f"  {row['best']}  {row['best_metric'] or float('nan'):6.1f}  {row['held_out']:7.1f}",
                flush=True,
            )
    ray.shutdown()

    scores = {m: np.array([r["held_out"] for r in rows if r["method"] == m]) for m in args.methods}
    print("\nheld-out return of each search's best trial (IQM over search seeds, stratified bootstrap 95% interval):")
    for method, values in scores.items():
        interval = bootstrap_iqm(values)
        walls = [r["wall"] for r in rows if r["method"] == method]
        print(
            f"  {method:7} IQM {interval.estimate:6.1f} [{interval.low:6.1f}, {interval.high:6.1f}]"
            f"  returns {np.round(values, 1).tolist()}  wall {statistics.fmean(walls):6.1f} s per search"
        )
    if "pbt" in scores:
        for method in (m for m in scores if m != "pbt"):
            better = bootstrap_probability_of_improvement(scores["pbt"], scores[method])
            print(f"  P(PBT > {method}) = {better.estimate:.2f} [{better.low:.2f}, {better.high:.2f}]")
        pbt_rows = [r for r in rows if r["method"] == "pbt"]
        seconds = [s for r in pbt_rows for s in r["exploit_seconds"]]
        sizes = [s for r in pbt_rows for s in r["checkpoint_mb"]]
        if seconds:
            share = sum(seconds) / sum(r["wall"] for r in pbt_rows)
            print(
                f"\nexploits: {len(seconds)} in {len(pbt_rows)} searches, {statistics.fmean(seconds):.3f} s each to load"
                f" and apply the donor's checkpoint ({statistics.fmean(sizes):.3f} MB): {100 * share:.2f}% of PBT's wall time"
            )
        if "random" in scores:
            pbt_wall = sum(r["wall"] for r in pbt_rows)
            random_wall = sum(r["wall"] for r in rows if r["method"] == "random")
            by_seed = {r["seed"]: r["wall"] for r in rows if r["method"] == "random"}
            paired = [r["wall"] / by_seed[r["seed"]] for r in pbt_rows if r["seed"] in by_seed]
            print(
                f"PBT wall time / random search's (same trials, frames and checkpoints, no exploits): "
                f"{pbt_wall / random_wall:.3f} in all, median of the seeds' ratios {statistics.median(paired):.3f}"
                f" ({', '.join(f'{ratio:.2f}' for ratio in paired)}; goal <= 1.05; the evaluations' own cost differs:"
                " better policies play longer episodes)"
            )


if __name__ == "__main__":
    main()
