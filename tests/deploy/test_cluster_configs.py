"""cluster/: the launcher config against Ray's own autoscaler schema, the KubeRay manifest for what KubeRay requires."""

import json
import shlex
import subprocess

import jsonschema
import ray.autoscaler
import yaml

from tests.helpers import REPO
from xdrl.distributed import tuner

AWS = REPO / "cluster" / "aws.yaml"
RAYJOB = REPO / "cluster" / "kuberay-rayjob.yaml"


def _ray_schema():
    return json.loads(open(ray.autoscaler.__path__[0] + "/ray-schema.json").read())


def test_launcher_config_matches_rays_autoscaler_schema():
    config = yaml.safe_load(AWS.read_text())
    jsonschema.validate(config, _ray_schema())
    assert config["head_node_type"] in config["available_node_types"]
    gpu = config["available_node_types"]["worker.gpu.spot"]
    assert gpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert 0 <= gpu["min_workers"] <= gpu["max_workers"] <= config["max_workers"]
    assert config["available_node_types"]["head.cpu"]["resources"] == {"CPU": 0, "GPU": 0}
    assert config["docker"]["worker_image"].endswith(":gpu") and config["docker"]["head_image"].endswith(":cpu")
    assert "--gpus all" in config["docker"]["worker_run_options"]


def test_launcher_keeps_token_auth_on_and_the_dashboard_on_loopback():
    config = yaml.safe_load(AWS.read_text())
    head = " ".join(config["head_start_ray_commands"])
    workers = " ".join(config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head and "--dashboard-host=127.0.0.1" in head
    assert "RAY_AUTH_MODE=token ray start --address" in workers
    assert config["file_mounts"] == {
        "/home/ray/.ray/auth_token": "~/.ray/auth_token"
    }  # from your machine, not the repo


def _containers(template):
    return template["spec"]["containers"]


def test_rayjob_has_the_fields_kuberay_requires():
    manifest = yaml.safe_load(RAYJOB.read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    assert manifest["metadata"]["name"]
    spec = manifest["spec"]
    assert spec["entrypoint"].startswith("python -m xdrl.cli tune ")
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict) and head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    (head_container,) = _containers(head["template"])
    assert head_container["name"] and head_container["image"]
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 8265}
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = _containers(group["template"])
        assert container["name"] and container["image"].endswith(":gpu")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for container in [head_container, *(_containers(g["template"])[0] for g in cluster["workerGroupSpecs"])]:
        env = {e["name"]: e for e in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        for secret in ("RAY_AUTH_TOKEN", "WANDB_API_KEY"):
            assert set(env[secret]) == {"name", "valueFrom"}  # from a Kubernetes Secret, no value here


def test_rayjob_entrypoint_is_a_valid_xdrl_tune_command(tmp_path):
    argv = shlex.split(yaml.safe_load(RAYJOB.read_text())["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "xdrl.cli", "tune"]
    overrides = [a if not a.startswith("search.storage_path=") else f"search.storage_path={tmp_path}" for a in argv[4:]]
    plan = tuner.plan(overrides, check_schema=False)  # the pre-flight of the real command, without Ray
    assert plan.search.num_samples == 16 and plan.base["resources"]["gpus_per_trial"] == 1


def test_submit_script_refuses_a_missing_command():
    result = subprocess.run(["bash", str(REPO / "cluster" / "submit.sh")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "nothing to run" in result.stderr
