"""The cluster path on hosts that share nothing by accident: a head, two GPU workers and a laptop, each a
network namespace with a private /tmp and home, one shared storage mount (see :mod:`tests.cluster.netns`).

Everything goes through what a user runs: ``cluster/submit.sh`` from the laptop (token auth, the job API
reached by address), ``xdrl tune`` as the job's driver on the head, trials on the workers, ``xdrl report``
from the laptop on the shared storage. The faults are a cloud's: a node's Ray processes get SIGTERM
(preemption), a node's processes all die at once (hard loss), the job's driver dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import tempfile
import time

import optuna
import pytest

from tests.cluster.netns import NODE_RAY_TEMP, NODE_WANDB_KEY_FILE, namespace_cluster, namespaces_available
from tests.deploy.postgres_server import postgres_server
from tests.deploy.postgres_server import unavailable as postgres_unavailable
from tests.distributed.helpers import TINY_PPO, assert_one_history, results, trial_dirs, trial_info, wandb_runs
from tests.helpers import REPO, files_containing
from xdrl.records.lineage import read_jsonl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(namespaces_available() is not None, reason=f"no test cluster here: {namespaces_available()}"),
]

#: A preset that exists only in the working directory the job ships (not in the installed package).
STUDY_READER = """
import json, sys
import optuna
from xdrl.config.credentials import study_storage
study = optuna.load_study(study_name=sys.argv[2], storage=study_storage(sys.argv[1], None, default="").url)
print(json.dumps([[t.state.name for t in study.trials], [t.value for t in study.trials]]))
"""

SHIPPED_PRESET = """# @package _global_
# Only in the submitted working directory.
defaults:
  - override /env: cartpole
  - override /algo: ppo
name: shipped_only
env:
  num_envs: 1
collector:
  total_frames: 512
  frames_per_batch: 128
algo:
  minibatch_size: 64
  epochs: 2
"""


@pytest.fixture(scope="module")
def scratch():
    # Outside /tmp: every node hides the machine's /tmp behind its own.
    root = pathlib.Path(tempfile.mkdtemp(prefix="xdrl-cluster-test-", dir="/var/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


#: The study's database password: in the environment of every node (what `ray start` runs with), nowhere else.
STUDY_PASSWORD = f"canary-pw-{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def cluster(scratch):
    with namespace_cluster(scratch / "storage", node_env={"XDRL_STUDY_PASSWORD": STUDY_PASSWORD}) as built:
        built.wait_for_job_agent()
        yield built


@pytest.fixture(scope="module")
def study_server(cluster):
    """A password-protected PostgreSQL in the head's network (the cluster's database host)."""
    if postgres_unavailable() is not None:
        pytest.skip(f"PostgreSQL: {postgres_unavailable()}")
    enter = ["nsenter", "-t", str(cluster.head.pid), "--net", "--"]
    with postgres_server(STUDY_PASSWORD, host=cluster.head.ip, enter=enter) as server:
        yield server


@pytest.fixture(scope="module")
def workdir(scratch):
    """What a user submits from: a copy of the repository's code with a preset of its own."""
    target = scratch / "workdir"
    for name in ("xdrl", "configs", "cluster", "pyproject.toml", "README.md"):
        source = REPO / name
        if source.is_dir():
            # symlinks=True: xdrl/configs is a link to configs/ in a checkout, as in what a user submits.
            shutil.copytree(source, target / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / name)
    (target / "configs" / "experiment" / "shipped_only.yaml").write_text(SHIPPED_PRESET)
    return target


def _submit(cluster, workdir, *args: str, wait: bool = True):
    """``cluster/submit.sh`` on the laptop, from the user's working directory.

    The user's shell holds the W&B key too: it must not travel with the job.
    """
    argv = ["bash", "cluster/submit.sh", "--address", cluster.dashboard, *(["--wait"] if wait else []), "--", *args]
    env = cluster.env(cluster.laptop, WANDB_API_KEY=cluster.wandb_key)
    return cluster.run(cluster.laptop, argv, cwd=workdir, timeout=900, env=env)


def _job_views(cluster, job_id: str) -> str:
    """What anyone with the job API sees: the job list, the job's verbose status and its logs."""
    said = []
    for args in (["list"], ["status", "--verbose", job_id], ["logs", job_id]):
        done = cluster.run(cluster.laptop, ["ray", "job", args[0], "--address", cluster.dashboard, *args[1:]])
        assert done.returncode == 0, done.stderr[-2000:]
        said.append(done.stdout + done.stderr)
    return "\n".join(said)


def _job_id(output: str) -> str:
    return re.search(r"^job: (\S+)", output, re.M).group(1)


def _sweep(cluster, name: str, *extra: str) -> list[str]:
    return [*TINY_PPO, f"search.storage_path={cluster.shared_path}/tune", f"search.experiment_name={name}", *extra]


def test_submitted_sweep_runs_on_the_workers_and_lands_in_the_shared_storage(cluster, workdir, study_server):
    started = time.monotonic()
    submitted = _submit(
        cluster,
        workdir,
        "tune",
        *_sweep(cluster, "sweep", "experiment=shipped_only", "search.num_samples=2", "search.scheduler=none"),
        "resources.gpus_per_trial=1",
        "search.max_concurrent_trials=2",
        "hooks.policy_checkpoint.interval=2",
        f"search.study.storage={study_server.url()}",  # no password: the head has it
    )
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode == 0, output[-6000:]
    elapsed = time.monotonic() - started
    experiment_dir = cluster.shared_dir / "tune" / "sweep"
    dirs = trial_dirs(experiment_dir)
    assert len(dirs) == 2
    worker_ips = {w.ip for w in cluster.workers}
    finals = []
    for trial_dir in dirs:
        (attempt,) = trial_info(trial_dir)
        assert attempt["node_ip"] in worker_ips and len(attempt["gpu_ids"]) == 1  # a worker's logical GPU
        assert_one_history(trial_dir, 4)
        (run,) = wandb_runs(trial_dir)
        assert run.finished and run.exit_code == 0
        final = results(trial_dir)[-1]
        # One W&B run per trial: id = Tune's trial id, group = the experiment, name = the trial's name.
        assert run.run_id == final["trial_id"] and run.group == "sweep" and run.name.startswith("run_trial_")
        finals.append(final["eval/deterministic/reward/episode_reward_mean"])
        assert list((trial_dir / "checkpoints").glob("trainer_*.pt"))
        assert list((trial_dir / "policies").glob("policy_step_*.pt"))
    stored = (experiment_dir / "xdrl_experiment.yaml").read_text()
    assert "name: shipped_only" in stored  # the preset that only the working directory has
    # The study, read from the laptop with the password of its environment (what `xdrl report` does).
    read = cluster.run(
        cluster.laptop,
        ["python", "-c", STUDY_READER, study_server.url(), "sweep"],
        timeout=120,
    )
    assert read.returncode == 0, read.stderr
    states, values = json.loads(read.stdout.strip().splitlines()[-1])
    assert states == ["COMPLETE", "COMPLETE"]
    assert sorted(values) == sorted(finals)  # the study holds what the trials reported
    assert f"storage: {study_server.url()}\n" in stored  # as given: without its password
    # The laptop reads the results where they are: the shared storage.
    report = cluster.run(
        cluster.laptop, ["python", "-m", "xdrl.cli", "report", f"{cluster.shared_path}/tune/sweep"], timeout=300
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert (experiment_dir / "report" / "report.md").exists()

    # The W&B key: each trial read it from its node's file (the laptop's WANDB_API_KEY did not travel, or
    # it would have come first), and it is in no file of any node but that one, nor in the job's views.
    views = _job_views(cluster, _job_id(submitted.stdout))
    key_lines = set(re.findall(rf"xdrl: W&B API key from {re.escape(NODE_WANDB_KEY_FILE)} \(run (\S+)\)", views))
    assert len(key_lines) == 2
    assert cluster.wandb_key not in views and cluster.wandb_key not in output
    shown = study_server.url().replace("xdrl@", "xdrl:***@")
    assert f"optuna study: {shown} (study sweep, password from XDRL_STUDY_PASSWORD)" in views
    assert STUDY_PASSWORD not in views and STUDY_PASSWORD not in output
    # (session_latest is a link to an absolute path: seen from this machine it would point outside the node)
    (head_session,) = [p for p in cluster.head.path(NODE_RAY_TEMP).glob("session_2*") if not p.is_symlink()]
    assert list(head_session.glob("logs/runtime_env_agent*.log")) and list(head_session.glob("logs/job-driver-*.log"))
    key_files = {node.path(NODE_WANDB_KEY_FILE) for node in cluster.nodes}
    leaked = files_containing(cluster.wandb_key, *(node.path("/tmp") for node in cluster.nodes), cluster.shared_dir)
    assert [path for path in leaked if path not in key_files] == []
    everywhere = (*(node.path("/tmp") for node in cluster.nodes), cluster.shared_dir)
    assert files_containing(STUDY_PASSWORD, *everywhere) == []  # Tune's pickles of the searcher included
    assert list(experiment_dir.glob("tuner.pkl")) and list(experiment_dir.glob("searcher-state-*.pkl"))
    print(f"submitted sweep: {elapsed:.1f} s")


def test_a_job_with_a_relative_storage_path_is_refused_before_any_trial(cluster, workdir):
    # On a multi-node cluster a relative path would land in the job's temporary working directory.
    submitted = _submit(cluster, workdir, "tune", *_sweep(cluster, "relative"), "search.storage_path=runs/tune")
    output = submitted.stdout + submitted.stderr
    assert submitted.returncode != 0
    assert "xdrl: error: search.storage_path='runs/tune' is not accepted: expected an absolute path" in output
    assert "the cluster has 3 nodes" in output
    assert not (workdir / "runs").exists() and not (cluster.shared_dir / "tune" / "relative").exists()


def _job_status(cluster, job_id: str) -> str:
    said = cluster.run(cluster.laptop, ["ray", "job", "status", "--address", cluster.dashboard, job_id], timeout=120)
    found = re.search(r"Job '[^']+' (succeeded|failed|stopped|is running|is pending)", said.stdout + said.stderr)
    return found.group(1) if found else (said.stdout + said.stderr)[-500:]


def _wait_for_job(cluster, job_id: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = _job_status(cluster, job_id)
        if status in ("succeeded", "failed", "stopped"):
            return status
        time.sleep(2)
    raise TimeoutError(f"job {job_id}: {status}")


def _wait_for(predicate, timeout: float = 300, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError("the moment never came")


def _first_trial_with_rows(experiment_dir: pathlib.Path, rows: int):
    def ready():
        for trial_dir in trial_dirs(experiment_dir) if experiment_dir.exists() else []:
            if (trial_dir / "trial_info.json").exists() and len(read_jsonl(trial_dir / "metrics.jsonl")) >= rows:
                return trial_dir
        return None

    return ready


def _node_of(cluster, trial_dir):
    ip = trial_info(trial_dir)[-1]["node_ip"]
    (node,) = [n for n in cluster.nodes if n.ip == ip]
    return node


#: Iterations of the trial whose node goes. At 16 (0.3-0.4 s each with xdrl's own collector) the
#: trial could finish before the drain reached it.
ITERATIONS = 48


@pytest.mark.parametrize("drained", [True, False], ids=["preemption-drained", "hard-loss"])
def test_a_lost_worker_node_moves_its_trial_to_the_other_worker_with_one_history(cluster, workdir, drained):
    """Preemption: ``xdrl drain`` on the node (a preStop hook), then SIGTERM to all its processes. Hard loss:
    every process of the node SIGKILLed at once."""
    name = "node-preempted" if drained else "node-lost"
    submitted = _submit(
        cluster,
        workdir,
        "tune",
        # 48 iterations: the trial must still be training when ``xdrl drain`` (a process start) reaches it.
        *_sweep(
            cluster, name, "search.num_samples=1", "search.scheduler=none", f"collector.total_frames={128 * ITERATIONS}"
        ),
        "resources.gpus_per_trial=1",
        "checkpoint.interval=4",
        "hooks.eval.interval_frames=512",
        "search.max_failures=3",
        wait=False,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = _job_id(submitted.stdout)
    experiment_dir = cluster.shared_dir / "tune" / name
    # Tune holds the checkpoint of iteration 4 once row 5 is written; the node goes after row 6.
    trial_dir = _wait_for(_first_trial_with_rows(experiment_dir, 6))
    node = _node_of(cluster, trial_dir)
    lost_at = time.monotonic()
    if drained:
        drain = cluster.run(node, ["python", "-m", "xdrl.cli", "drain", "--timeout", "120"], timeout=180)
        assert drain.returncode == 0, drain.stdout + drain.stderr
        assert "trials signalled: 1" in drain.stdout and "accepted" in drain.stdout, drain.stdout
    signalled = cluster.signal_node(node, signal.SIGTERM if drained else signal.SIGKILL)
    status = _wait_for_job(cluster, job_id)
    logs = cluster.run(cluster.laptop, ["ray", "job", "logs", "--address", cluster.dashboard, job_id], timeout=120)
    assert status == "succeeded", (logs.stdout + logs.stderr)[-6000:]
    attempts = trial_info(trial_dir)
    assert attempts[0]["node_ip"] == node.ip
    assert attempts[-1]["node_ip"] != node.ip and attempts[-1]["node_ip"] in {w.ip for w in cluster.workers}
    rows = assert_one_history(trial_dir, ITERATIONS)
    runs = wandb_runs(trial_dir)
    assert {r.run_id for r in runs} == {runs[0].run_id} and runs[-1].exit_code == 0
    if drained:
        # The drained trial stopped at an iteration boundary with a checkpoint Tune received: nothing lost,
        # and its W&B run was finished as preempting with every row.
        first = runs[0]
        assert first.preempting and first.finished
        stopped_at = first.history[-1]["counters/iter"]
        assert attempts[1]["resumed_after"] == stopped_at
        assert [h["counters/iter"] for h in first.history] == list(range(1, stopped_at + 1))
    else:
        assert attempts[-1]["resumed_after"] >= 4  # at most the iterations since the last checkpoint were lost
    print(
        f"{name}: {len(signalled)} processes signalled; attempts "
        f"{[(a['node_ip'], a['resumed_after']) for a in attempts]}; W&B runs "
        f"{[(r.finished, r.preempting, r.exit_code, len(r.history)) for r in runs]}; rows {len(rows)};"
        f" job done {time.monotonic() - lost_at:.1f} s after"
    )
    # The node comes back (a replacement instance) for the next test.
    assert cluster.wait_node_quiet(node, timeout=60)
    cluster.start_ray(node, num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes(3)


def _driver_pids(cluster) -> list[int]:
    """The job drivers (``python -m xdrl.cli tune ...``) running on the head."""
    found = []
    for pid in cluster.node_pids(cluster.head):
        with contextlib.suppress(OSError):
            argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"xdrl.cli" in argv and b"tune" in argv:
                found.append(pid)
    return found


def test_a_killed_job_driver_is_resumed_from_the_shared_storage(cluster, workdir):
    name = "driver-lost"
    args = _sweep(cluster, name, "search.num_samples=2", "search.scheduler=none", "collector.total_frames=1536")
    submitted = _submit(
        cluster,
        workdir,
        "tune",
        *args,
        "checkpoint.interval=3",
        "hooks.eval.interval_frames=384",
        "resources.gpus_per_trial=1",
        "search.max_concurrent_trials=2",
        wait=False,
    )
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    job_id = _job_id(submitted.stdout)
    experiment_dir = cluster.shared_dir / "tune" / name
    _wait_for(_first_trial_with_rows(experiment_dir, 5))
    drivers = _driver_pids(cluster)
    assert len(drivers) == 1
    os.kill(drivers[0], signal.SIGKILL)  # the job's driver dies (its pod or process goes)
    assert _wait_for_job(cluster, job_id) in ("failed", "stopped")
    recorded = {d.name: len(read_jsonl(d / "metrics.jsonl")) for d in trial_dirs(experiment_dir)}

    resumed = _submit(cluster, workdir, "tune", "--resume", f"{cluster.shared_path}/tune/{name}")
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-6000:]
    dirs = trial_dirs(experiment_dir)
    assert len(dirs) == 2  # num_samples trials in all: none proposed twice
    for trial_dir in dirs:
        assert_one_history(trial_dir, 12)
        attempts = trial_info(trial_dir)
        if recorded.get(trial_dir.name, 0) >= 5:
            assert len(attempts) == 2 and attempts[1]["resumed_after"] <= recorded[trial_dir.name]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{experiment_dir / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
