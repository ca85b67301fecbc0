"""cluster/: the launcher config against Ray's own autoscaler schema, the KubeRay manifests against the RayJob CRD.

The KubeRay check validates the manifest with the part of the public RayJob CRD schema it uses
(rayjob_crd_schema.yaml, vendored with its source), strictly, then holds it to the rules that make
the job run: a submitter that reaches the job API, the token in every pod that talks to Ray, the
volumes defined, the secrets the header creates, the two xdrl images.
"""

import copy
import json
import os
import pathlib
import re
import shlex
import subprocess

import jsonschema
import pytest
import ray.autoscaler
import yaml
from packaging.version import Version

from tests.helpers import REPO
from xdrl.distributed import tuner

AWS = REPO / "cluster" / "aws.yaml"
RAYJOB = REPO / "cluster" / "kuberay-rayjob.yaml"
CRD_SCHEMA = pathlib.Path(__file__).with_name("rayjob_crd_schema.yaml")
#: The key KubeRay reads the token from in the secret named by authOptions.secretName
#: (RAY_AUTH_TOKEN_SECRET_KEY in ray-operator; "must have a data key auth_token", API reference v1.6.2).
TOKEN_KEY = "auth_token"


def _ray_schema():
    return json.loads(open(ray.autoscaler.__path__[0] + "/ray-schema.json").read())


# --- Ray cluster launcher (AWS) -------------------------------------------------------------------


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
    # From your machine, not the repo: the Ray token, the W&B key and the study password, as files.
    assert config["file_mounts"] == {
        "/home/ray/.ray/auth_token": "~/.ray/auth_token",
        "/home/ray/.config/xdrl/wandb-api-key": "~/.config/xdrl/wandb-api-key",
        "/home/ray/.config/xdrl/study-password": "~/.config/xdrl/study-password",
    }
    assert "--env XDRL_WANDB_API_KEY_FILE=/home/ray/.config/xdrl/wandb-api-key" in config["docker"]["run_options"]


def test_spot_workers_drain_on_the_interruption_notice_and_evicted_pods_drain_first():
    config = yaml.safe_load(AWS.read_text())
    watcher = config["worker_start_ray_commands"][-1]
    assert "meta-data/spot/instance-action" in watcher and "xdrl drain --timeout" in watcher
    rayjob = next(d for d in yaml.safe_load_all(RAYJOB.read_text()) if d and d.get("kind") == "RayJob")
    (group,) = rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    pod = group["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:4] == ["python", "-m", "xdrl.cli", "drain"]
    timeout = float(command[command.index("--timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > timeout  # the drain ends before Kubernetes sends SIGTERM


def test_launcher_gives_every_node_the_same_shared_results_directory():
    config = yaml.safe_load(AWS.read_text())
    # One mount for head and workers alike (run_options), at the path the header submits with.
    volumes = [o.split()[1] for o in config["docker"]["run_options"] if o.startswith("--volume ")]
    assert volumes == ["/mnt/efs/xdrl:/mnt/results"]
    assert not any(
        "--volume" in o for k in ("head_run_options", "worker_run_options") for o in config["docker"].get(k, [])
    )
    assert "search.storage_path=/mnt/results" in AWS.read_text().split("\ncluster_name:")[0]
    (mount,) = config["initialization_commands"]  # on every host, before its container starts
    host_dir = volumes[0].split(":")[0]
    assert f"sudo install -d -o 1000 -g 1000 {host_dir}" in mount  # uid of the image's `ray`
    region = re.search(r'"\$EFS_ID\.efs\.([\w-]+)\.amazonaws\.com:/" /mnt/efs', mount).group(1)
    assert region == config["provider"]["region"]


def _run_mount_command(tmp_path: pathlib.Path, command: str) -> subprocess.CompletedProcess:
    """The mount command under bash with sudo, mountpoint and mount.nfs4 replaced by loggers (nothing runs)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name, status in (("sudo", 0), ("mountpoint", 1), ("mount.nfs4", 0)):
        (tools / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/log"\nexit {status}\n')
        (tools / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, text=True, timeout=30)


def test_launcher_mount_command_stops_on_the_placeholder_and_mounts_a_real_id(tmp_path):
    (command,) = yaml.safe_load(AWS.read_text())["initialization_commands"]
    (tmp_path / "unset").mkdir()
    unset = _run_mount_command(tmp_path / "unset", command)
    assert unset.returncode == 1 and "set EFS_ID" in unset.stderr
    assert not (tmp_path / "unset" / "log").exists()  # stopped before touching anything
    (tmp_path / "set").mkdir()
    done = _run_mount_command(tmp_path / "set", command.replace("EFS_ID=fs-REPLACE-ME;", "EFS_ID=fs-0abc;", 1))
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "set" / "log").read_text().splitlines()
    assert log == [
        "sudo mkdir -p /mnt/efs",
        "mountpoint -q /mnt/efs",
        "sudo mount -t nfs4 -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport "
        "fs-0abc.efs.us-west-2.amazonaws.com:/ /mnt/efs",
        "sudo install -d -o 1000 -g 1000 /mnt/efs/xdrl",
    ]


# --- KubeRay ------------------------------------------------------------------------------------


def _documents() -> list[dict]:
    """Every Kubernetes object of cluster/kuberay-*.yaml."""
    return [d for p in sorted(REPO.glob("cluster/kuberay-*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def _rayjob() -> dict:
    (job,) = [d for d in _documents() if d["kind"] == "RayJob"]
    return job


def _strict(schema):
    """The CRD schema as `kubectl apply` enforces it: a field the schema does not list is an error."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


_FORMATS = jsonschema.FormatChecker()


@_FORMATS.checks("int32")
def _int32(value) -> bool:
    return not isinstance(value, int) or -(2**31) <= value < 2**31


@_FORMATS.checks("int64")
def _int64(value) -> bool:
    return not isinstance(value, int) or -(2**63) <= value < 2**63


def _crd_errors(manifest: dict) -> list[str]:
    schema = _strict(yaml.safe_load(CRD_SCHEMA.read_text())["openAPIV3Schema"])
    validator = jsonschema.Draft7Validator(schema, format_checker=_FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_rayjob_matches_the_rayjob_crd_schema():
    job = _rayjob()
    assert job["apiVersion"] == "ray.io/v1" and job["metadata"]["name"]
    assert _crd_errors(job) == []


@pytest.mark.parametrize(
    "change, complaint",
    [
        (lambda j: j["spec"].update(submisionMode="K8sJobMode"), "'submisionMode' was unexpected"),
        (lambda j: j["spec"]["rayClusterSpec"]["authOptions"].update(mode="tokens"), "'tokens' is not one of"),
        (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(replicas="2"), "'2' is not of type"),
        (lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].update(maxReplicas=2**31), "is not a 'int32'"),
        (lambda j: j["spec"]["rayClusterSpec"]["headGroupSpec"].pop("template"), "'template' is a required"),
        (
            lambda j: j["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["resources"]["limits"].update(
                cpu="1 core"
            ),
            "does not match",
        ),
    ],
)
def test_the_crd_check_catches_what_kubernetes_would_reject(change, complaint):
    job = copy.deepcopy(_rayjob())
    change(job)
    assert any(complaint in e for e in _crd_errors(job)), _crd_errors(job)


def _ray_pods(job: dict) -> dict[str, dict]:
    """Every pod template that talks to Ray: the head, each worker group, the submitter."""
    cluster = job["spec"]["rayClusterSpec"]
    # KubeRay's default submitter pod has no token: in K8sJobMode the manifest must give its own.
    assert "submitterPodTemplate" in job["spec"], "K8sJobMode needs a submitterPodTemplate carrying the Ray token"
    pods = {"head": cluster["headGroupSpec"]["template"], "submitter": job["spec"]["submitterPodTemplate"]}
    pods |= {f"workers {g['groupName']}": g["template"] for g in cluster["workerGroupSpecs"]}
    return pods


def _containers(pod: dict) -> list[dict]:
    return pod["spec"]["containers"]


def _created_secret() -> tuple[str, set[str]]:
    """The secret and keys that the header's `kubectl create secret` makes."""
    header = "\n".join(line for line in RAYJOB.read_text().splitlines() if line.startswith("#"))
    command = header[header.index("kubectl create secret generic") :].split("\n#   kubectl apply")[0]
    name = re.search(r"kubectl create secret generic (\S+)", command).group(1)
    return name, set(re.findall(r"--from-(?:file|literal)=([\w.-]+)=", command))


def test_the_submitter_reaches_the_job_api_in_k8s_job_mode():
    job = _rayjob()
    assert job["spec"]["submissionMode"] == "K8sJobMode"  # a separate pod calls the head's job API
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    # KubeRay binds the dashboard to 0.0.0.0 when the key is absent; loopback would shut the submitter out.
    host = head["rayStartParams"].get("dashboard-host", "0.0.0.0")
    assert not re.match(r"^(127\.|localhost$|::1$|\[::1\]$)", host), f"dashboard-host {host} is loopback"
    (container,) = _containers(head["template"])
    assert {p["containerPort"] for p in container["ports"]} >= {6379, 8265}
    # A Kubernetes Job's pods must not restart in place (restartPolicy Never or OnFailure).
    assert job["spec"]["submitterPodTemplate"]["spec"]["restartPolicy"] in ("Never", "OnFailure")


def test_every_pod_that_talks_to_ray_has_token_auth_from_the_secret():
    job = _rayjob()
    secret, _ = _created_secret()
    # The operator calls the job API too: authOptions gives it (and every Ray container) the secret's token.
    assert job["spec"]["rayClusterSpec"]["authOptions"] == {"mode": "token", "secretName": secret}
    # KubeRay rejects token authOptions without a rayVersion of 2.52.0 or newer (token auth's first release).
    assert Version(job["spec"]["rayClusterSpec"]["rayVersion"]) >= Version("2.52.0")
    for role, pod in _ray_pods(job).items():
        for container in _containers(pod):
            env = {e["name"]: e for e in container.get("env", [])}
            assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{role}: RAY_AUTH_MODE=token"
            assert env.get("RAY_AUTH_TOKEN") == {
                "name": "RAY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": secret, "key": TOKEN_KEY}},
            }, f"{role}: RAY_AUTH_TOKEN from secret {secret}, key {TOKEN_KEY}"


def test_every_secret_reference_names_what_the_header_creates():
    secret, keys = _created_secret()
    assert TOKEN_KEY in keys
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                found.append((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            if "value" in node and str(node.get("name", "")).upper().endswith(("TOKEN", "KEY", "PASSWORD")):
                raise AssertionError(f"{node['name']} has a value in the manifest; it belongs in the secret")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(_documents())
    assert found and {ref for ref in found if ref != (secret, TOKEN_KEY)} <= {(secret, k) for k in keys}
    assert all(name == secret for name, _ in found) and {k for _, k in found} <= keys


def test_every_claim_is_defined_and_read_write_many():
    documents = _documents()
    claims = {d["metadata"]["name"]: d for d in documents if d["kind"] == "PersistentVolumeClaim"}
    used = set()
    for role, pod in _ray_pods(_rayjob()).items():
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        for container in _containers(pod):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{role} mounts undefined volume {mount['name']}"
        used |= {v["persistentVolumeClaim"]["claimName"] for v in volumes.values() if "persistentVolumeClaim" in v}
    assert used and used <= set(claims), f"claims used but never defined: {used - set(claims)}"
    for name in used:
        claim = claims[name]
        assert claim["apiVersion"] == "v1" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["storageClassName"] and claim["spec"]["resources"]["requests"]["storage"]
    # The head and every worker group see the results at the path the entrypoint writes to.
    storage = re.search(r"search\.storage_path=(\S+)", _rayjob()["spec"]["entrypoint"]).group(1)
    for role, pod in _ray_pods(_rayjob()).items():
        if role != "submitter":
            (container,) = _containers(pod)
            assert storage in {m["mountPath"] for m in container["volumeMounts"]}, role


def test_images_are_the_two_xdrl_images():
    job = _rayjob()
    aws = yaml.safe_load(AWS.read_text())["docker"]
    cpu, gpu = aws["head_image"], aws["worker_image"]
    assert cpu.rsplit(":", 1)[0] == gpu.rsplit(":", 1)[0] and cpu.endswith(":cpu") and gpu.endswith(":gpu")
    for role, pod in _ray_pods(job).items():
        for container in _containers(pod):
            assert container["image"] == (gpu if role.startswith("workers") else cpu), role
    for group in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        (container,) = _containers(group["template"])
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_ray_version_is_the_images():
    pins = dict(
        line.split("==") for line in (REPO / "docker" / "constraints.txt").read_text().splitlines() if "==" in line
    )
    assert _rayjob()["spec"]["rayClusterSpec"]["rayVersion"] == pins["ray"]


def test_rayjob_entrypoint_is_a_valid_xdrl_tune_command(tmp_path):
    argv = shlex.split(_rayjob()["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "xdrl.cli", "tune"]
    overrides = [a if not a.startswith("search.storage_path=") else f"search.storage_path={tmp_path}" for a in argv[4:]]
    plan = tuner.plan(overrides, check_schema=False)  # the pre-flight of the real command, without Ray
    assert plan.search.num_samples == 16 and plan.base["resources"]["gpus_per_trial"] == 1


def test_submit_script_refuses_a_missing_command():
    result = subprocess.run(["bash", str(REPO / "cluster" / "submit.sh")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "nothing to run" in result.stderr
