"""Node loss on a multi-node Ray (ray.cluster_utils.Cluster on loopback): the trial moves and resumes."""

import shutil
import tempfile

import optuna
import pytest

from tests.distributed.helpers import (
    assert_one_history,
    experiment,
    iterations_at_least,
    trial_dirs,
    trial_info,
    when_first_trial,
)
from xdrl.builder.metrics import read_metrics_file
from xdrl.distributed import tuner

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    # Each worker node gets a temp dir of its own, as a machine has its own disk: Tune's staging
    # directories on one node are not seen by the driver or by another node.
    disks = [tempfile.mkdtemp(prefix="xn", dir="/tmp") for _ in range(2)]  # short: socket paths live below
    workers = [cluster.add_node(num_cpus=2, num_gpus=1, temp_dir=disk) for disk in disks]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()
        for disk in disks:
            shutil.rmtree(disk, ignore_errors=True)


def test_trial_resumes_on_the_other_node_after_its_node_is_removed(cluster, tmp_path):
    ray_cluster, workers = cluster
    # The storage path is a local directory standing for a shared mount (NFS, EFS): every node sees it,
    # and the trial writes its own files there (metrics, W&B, trial info) from whichever node it runs on.
    plan = tuner.plan(
        experiment(
            tmp_path,
            "nodeloss",
            "search.num_samples=1",
            "collector.total_frames=1536",
            "search.scheduler=none",
            "resources.gpus_per_trial=1",
            "search.max_failures=3",
            "checkpoint.interval=3",
        )
    )

    def remove_its_node(trial_dir):
        node_id = trial_info(trial_dir)[-1]["node_id"]
        (node,) = [w for w in workers if w.node_id == node_id]
        ray_cluster.remove_node(node)
        return node_id, len(read_metrics_file(trial_dir / "metrics.jsonl"))

    # Tune holds the checkpoint of iteration 3 once row 4 is written: the node goes after row 5,
    # so the trial re-runs iterations its records already hold.
    with when_first_trial(tmp_path / "nodeloss", iterations_at_least(5), remove_its_node) as removed:
        grid = tuner.run(plan)
    assert removed, "the trial's node was never removed"
    assert not grid.errors
    (trial_dir,) = trial_dirs(tmp_path / "nodeloss")
    first, *later = trial_info(trial_dir)
    assert first["node_id"] == removed[0][0]
    assert later and later[-1]["node_id"] != removed[0][0]  # finished on the other node
    # It went on from the checkpoint Tune held, not from iteration 1.
    assert later[-1]["resumed_after"] in (3, 6)
    assert_one_history(trial_dir, 12)
    study = optuna.load_study(study_name="nodeloss", storage=f"sqlite:///{tmp_path / 'nodeloss' / 'optuna.db'}")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
