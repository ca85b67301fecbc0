"""`xdrl tune` on a multi-node cluster refuses a relative search.storage_path (it would stay on the driver's node).

Through a real job on a real multi-node cluster: tests/cluster/test_namespace_cluster.py
(test_a_job_with_a_relative_storage_path_is_refused_before_any_trial); here the rule on node lists.
"""

import pytest

from tests.distributed.helpers import TINY_PPO
from xdrl.config import ConfigError
from xdrl.distributed import tuner

RELATIVE = [*TINY_PPO, "search.storage_path=runs/tune", "search.experiment_name=rel"]


def test_one_live_node_takes_a_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = tuner.plan(RELATIVE, check_schema=False)
    # The embedded local Ray has one node; a node that died does not count.
    tuner.check_storage_reaches_every_node(plan, [{"Alive": True}, {"Alive": False}])
    with pytest.raises(ConfigError, match="search.storage_path='runs/tune'"):
        tuner.check_storage_reaches_every_node(plan, [{"Alive": True}, {"Alive": True}])


def test_an_absolute_path_a_bucket_and_a_resume_pass_on_several_nodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nodes = [{"Alive": True}, {"Alive": True}]
    for storage in (str(tmp_path / "shared"), "s3://bucket/xdrl"):
        extra = ["search.study.storage=sqlite:///" + str(tmp_path / "s.db")] if storage.startswith("s3") else []
        plan = tuner.plan([*TINY_PPO, f"search.storage_path={storage}", *extra], check_schema=False)
        tuner.check_storage_reaches_every_node(plan, nodes)
    tuner.check_storage_reaches_every_node(tuner.plan(RELATIVE, check_schema=False), nodes, resume=True)
