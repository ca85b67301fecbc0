"""A Ray cluster of separate hosts on one machine: network namespaces, private /tmp and home per node.

Each node (head, workers, and a "laptop" that only submits) is a network namespace of its own with an
address on a test subnet, joined to the others by veth pairs on a bridge that lives in a namespace of
its own: no traffic leaves the namespaces the harness made. Every node also gets a private mount
namespace in which ``/tmp`` is a fresh tmpfs and ``HOME`` lies inside it, so nodes share no Ray temp
dir, staging directory, auth token file or W&B directory by accident. What the nodes do share is what a
real cluster shares: the software (this machine's filesystem outside ``/tmp``) and one storage directory
bind-mounted at the same path in every node (the "NFS/EFS" mount), plus whatever a test passes as a
``file://`` URI inside it.

A node is anchored by a ``sleep`` process that holds its namespaces; commands run in a node through
``nsenter`` into that process's network and mount namespaces. ``ray start`` runs there with token auth
(the token file in the node's private home, as a cluster launcher copies it), ``--node-ip-address`` and
its own ``--temp-dir``. Tearing down ends every process whose network namespace is one of the cluster's
(found through ``/proc/<pid>/ns/net``), deletes the namespaces and the mount point.

Needs root and ``ip netns``; :func:`namespaces_available` says why not, for a skip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence

VENV_BIN = pathlib.Path(sys.executable).parent
REPO = pathlib.Path(__file__).resolve().parents[2]
SUBNET = "10.77.0"
HEAD_IP = f"{SUBNET}.2"
GCS_PORT = 6379
DASHBOARD_PORT = 8265
#: Inside every node: the private tmpfs, the node's home in it, Ray's temp dir in it.
NODE_TMP = "/tmp"
NODE_HOME = "/tmp/home"
NODE_RAY_TEMP = "/tmp/ray"
#: Where a launcher (or a Kubernetes secret volume) puts the W&B key on every node, read by xdrl's trials.
NODE_WANDB_KEY_FILE = "/tmp/home/.config/xdrl/wandb-api-key"


def namespaces_available() -> str | None:
    """``None`` when this process can build the cluster, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network and mount namespaces need root"
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (iproute2 / util-linux)"
    probe = f"xdrlprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, namespace: str | None = None) -> None:
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


@dataclasses.dataclass
class Node:
    """One host of the test cluster."""

    name: str
    namespace: str
    ip: str
    anchor: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.anchor is not None
        return self.anchor.pid

    def path(self, inside: str) -> pathlib.Path:
        """A path of this node's filesystem view, as seen from the machine (``/proc/<pid>/root``)."""
        return pathlib.Path(f"/proc/{self.pid}/root") / inside.lstrip("/")


@dataclasses.dataclass
class NamespaceCluster:
    """A running test cluster: a head, workers and a laptop, a shared storage path, token auth."""

    prefix: str
    head: Node
    workers: list[Node]
    laptop: Node
    #: The storage every node mounts, as a directory of this machine and as the path inside the nodes.
    shared_dir: pathlib.Path
    shared_path: str
    token: str = dataclasses.field(repr=False)
    #: The W&B API key every node holds in :data:`NODE_WANDB_KEY_FILE` (a canary in tests).
    wandb_key: str = dataclasses.field(repr=False, default="")
    node_env: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def nodes(self) -> list[Node]:
        return [self.head, *self.workers, self.laptop]

    @property
    def dashboard(self) -> str:
        return f"http://{HEAD_IP}:{DASHBOARD_PORT}"

    @property
    def gcs(self) -> str:
        return f"{HEAD_IP}:{GCS_PORT}"

    def env(self, node: Node, **extra: str) -> dict[str, str]:
        """The environment of a command on ``node``: its private home, the venv, token auth."""
        base = {
            "PATH": f"{VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": NODE_HOME,
            "TMPDIR": NODE_TMP,
            "LANG": "C.UTF-8",
            "RAY_AUTH_MODE": "token",  # the token itself is the file in the node's home
            "RAY_USAGE_STATS_ENABLED": "0",
            "XDRL_WANDB_API_KEY_FILE": NODE_WANDB_KEY_FILE,  # what a launcher sets on every node
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "PYTHONUNBUFFERED": "1",
            **self.node_env,
        }
        return {**base, **extra}

    def command(self, node: Node, argv: Sequence[str], cwd: str | pathlib.Path = REPO) -> list[str]:
        # Entering a mount namespace, nsenter starts in the target's root unless told the directory.
        return ["nsenter", "-t", str(node.pid), "--net", "--mount", f"--wd={cwd}", "--", *argv]

    def run(
        self,
        node: Node,
        argv: Sequence[str],
        *,
        timeout: float = 600,
        cwd: str | pathlib.Path = REPO,
        env: dict[str, str] | None = None,
        check: bool = False,
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` on ``node`` and wait for it."""
        done = subprocess.run(
            self.command(node, argv, cwd),
            env=env or self.env(node),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"on {node.name}: {shlex.join(argv)} -> {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def popen(self, node: Node, argv: Sequence[str], *, cwd: str | pathlib.Path = REPO, **env: str) -> subprocess.Popen:
        """Start ``argv`` on ``node`` (stdout and stderr together, text)."""
        return subprocess.Popen(
            self.command(node, argv, cwd),
            env=self.env(node, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    # Nodes ---------------------------------------------------------------------------------
    def node_pids(self, node: Node, *, include_anchor: bool = False) -> list[int]:
        """Processes living in ``node``'s network namespace (Ray's daemons, workers, drivers...)."""
        target = os.stat(f"/var/run/netns/{node.namespace}").st_ino
        pids = []
        for entry in pathlib.Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "net").st_ino == target:
                    pids.append(int(entry.name))
        if not include_anchor and node.anchor is not None:
            pids = [pid for pid in pids if pid != node.anchor.pid]
        return pids

    def signal_node(self, node: Node, signum: int) -> list[int]:
        """Send ``signum`` to every process of ``node`` except its anchor; returns the pids."""
        pids = self.node_pids(node)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        return pids

    def wait_node_quiet(self, node: Node, timeout: float = 60) -> bool:
        """Wait until ``node`` runs nothing but its anchor."""
        deadline = time.monotonic() + timeout
        while self.node_pids(node) and time.monotonic() < deadline:
            time.sleep(0.2)
        return not self.node_pids(node)

    def start_ray(self, node: Node, *, num_cpus: int, num_gpus: int) -> None:
        """``ray start`` on ``node``: the head, or a worker joining it."""
        common = [
            f"--node-ip-address={node.ip}",
            f"--temp-dir={NODE_RAY_TEMP}",
            f"--num-cpus={num_cpus}",
            f"--num-gpus={num_gpus}",
            "--disable-usage-stats",
        ]
        if node is self.head:
            argv = [
                "ray",
                "start",
                "--head",
                f"--port={GCS_PORT}",
                f"--dashboard-host={node.ip}",
                f"--dashboard-port={DASHBOARD_PORT}",
                "--include-dashboard=true",
                *common,
            ]
        else:
            argv = ["ray", "start", f"--address={self.gcs}", *common]
        self.run(node, argv, timeout=240, check=True)

    def wait_for_nodes(self, count: int, timeout: float = 180) -> None:
        """Wait until the head sees ``count`` alive nodes."""
        probe = [
            "python",
            "-c",
            "import ray; ray.init(address='auto', logging_level='ERROR');"
            "print(sum(1 for n in ray.nodes() if n['Alive']))",
        ]
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.run(self.head, probe, timeout=120)
            if last.returncode == 0 and last.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        raise TimeoutError(
            f"the head did not see {count} nodes: {last.stdout if last else ''}{last.stderr if last else ''}"
        )

    def wait_for_job_agent(self, timeout: float = 300) -> None:
        """``ray start`` returns before the head's job agent takes jobs: submit ``true`` from the laptop until it does."""
        from tests.deploy.ray_head import wait_for_job_agent

        wait_for_job_agent(lambda argv: self.run(self.laptop, argv, timeout=60), self.dashboard, timeout)


def _anchor(namespace: str, shared_dir: pathlib.Path, shared_path: str, token: str, wandb_key: str) -> subprocess.Popen:
    """A process holding a node's namespaces: the node's network, a private /tmp with its home, the shared mount."""
    key_dir = os.path.dirname(NODE_WANDB_KEY_FILE)
    script = " && ".join(
        [
            f"mount --bind {shlex.quote(str(shared_dir))} {shlex.quote(shared_path)}",  # before /tmp is hidden
            f"mount -t tmpfs -o size=4g,mode=1777 xdrl-node {NODE_TMP}",
            f"mkdir -p {NODE_HOME}/.ray {key_dir}",
            # The token and the W&B key as a cluster launcher delivers them: files in the node's home,
            # readable by their owner only.
            f'umask 077 && printf %s "$XDRL_NODE_TOKEN" > {NODE_HOME}/.ray/auth_token',
            f'printf %s "$XDRL_NODE_WANDB_KEY" > {NODE_WANDB_KEY_FILE}',
            "unset XDRL_NODE_TOKEN XDRL_NODE_WANDB_KEY",
            "exec sleep infinity",
        ]
    )
    secrets_env = {"XDRL_NODE_TOKEN": token, "XDRL_NODE_WANDB_KEY": wandb_key}
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **secrets_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _wait_anchored(node: Node, shared_path: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.anchor.poll() is not None:
            raise RuntimeError(f"node {node.name} did not start: {node.anchor.stderr.read()}")
        if node.path(f"{NODE_HOME}/.ray/auth_token").exists():
            return
        time.sleep(0.05)
    raise TimeoutError(f"node {node.name} did not come up")


@contextlib.contextmanager
def namespace_cluster(
    storage_dir: pathlib.Path,
    *,
    workers: int = 2,
    worker_cpus: int = 1,
    worker_gpus: int = 1,
    node_env: dict[str, str] | None = None,
    wandb_key: str | None = None,
    start_ray: bool = True,
) -> Iterator[NamespaceCluster]:
    """Build the cluster, start Ray on it (head, then workers), and tear everything down afterwards.

    Args:
        storage_dir: a directory of this machine that every node mounts at
            :attr:`NamespaceCluster.shared_path` (not under ``/tmp``, which every node hides).
        workers: worker nodes.
        worker_cpus, worker_gpus: what each worker's raylet offers (GPUs are logical).
        node_env: environment of every command on every node (a launcher's node settings).
        wandb_key: the W&B key every node holds in a file (default: a fresh canary).
        start_ray: ``False`` builds the hosts only.
    """
    prefix = f"xc{secrets.token_hex(2)}"
    bridge_ns = f"{prefix}-br"
    names = ["head", *(f"w{i}" for i in range(1, workers + 1)), "lap"]
    nodes = {name: Node(name, f"{prefix}-{name}", f"{SUBNET}.{2 + index}") for index, name in enumerate(names)}
    shared_path = f"/mnt/{prefix}-shared"
    token = secrets.token_hex(32)
    wandb_key = wandb_key or f"canary-wandb-{secrets.token_hex(16)}"
    made: list[str] = []
    try:
        storage_dir.mkdir(parents=True, exist_ok=True)
        os.makedirs(shared_path, exist_ok=True)
        for namespace in [bridge_ns, *(node.namespace for node in nodes.values())]:
            _ip("netns", "add", namespace)
            made.append(namespace)
        _ip("link", "add", "br0", "type", "bridge", namespace=bridge_ns)
        _ip("link", "set", "br0", "up", namespace=bridge_ns)
        for node in nodes.values():
            port = f"v{node.name}"
            _ip(
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                node.namespace,
                namespace=bridge_ns,
            )
            _ip("link", "set", port, "master", "br0", "up", namespace=bridge_ns)
            _ip("addr", "add", f"{node.ip}/24", "dev", "eth0", namespace=node.namespace)
            _ip("link", "set", "eth0", "up", namespace=node.namespace)
            _ip("link", "set", "lo", "up", namespace=node.namespace)
            node.anchor = _anchor(node.namespace, storage_dir, shared_path, token, wandb_key)
        for node in nodes.values():
            _wait_anchored(node, shared_path)
        cluster = NamespaceCluster(
            prefix,
            nodes["head"],
            [nodes[f"w{i}"] for i in range(1, workers + 1)],
            nodes["lap"],
            storage_dir,
            shared_path,
            token,
            wandb_key,
            dict(node_env or {}),
        )
        if start_ray:
            cluster.start_ray(cluster.head, num_cpus=1, num_gpus=0)  # the driver's node: trials go to workers
            for worker in cluster.workers:
                cluster.start_ray(worker, num_cpus=worker_cpus, num_gpus=worker_gpus)
            cluster.wait_for_nodes(1 + workers)
        yield cluster
    finally:
        _tear_down(nodes.values(), made, shared_path)


def _tear_down(nodes, namespaces: list[str], shared_path: str) -> None:
    inodes = {}
    for namespace in namespaces:
        with contextlib.suppress(OSError):
            inodes[os.stat(f"/var/run/netns/{namespace}").st_ino] = namespace

    def ours() -> list[int]:
        found = []
        for entry in pathlib.Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(entry / "ns" / "net").st_ino in inodes:
                        found.append(int(entry.name))
        return found

    for signum, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        for pid in ours():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + grace
        while ours() and time.monotonic() < deadline:
            time.sleep(0.1)
    for node in nodes:
        if node.anchor is not None:
            with contextlib.suppress(Exception):
                node.anchor.wait(timeout=5)
    for namespace in reversed(namespaces):
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
    with contextlib.suppress(OSError):
        os.rmdir(shared_path)
