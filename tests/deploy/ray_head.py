"""A Ray head started with `ray start` for one test, with its own --temp-dir, and stopped by pid."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

VENV_BIN = pathlib.Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _mentions(entry: pathlib.Path, marker: str) -> bool:
    if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
        return True
    # Agents rename themselves (ray::DashboardAgent); their open log files still live under the temp dir.
    for fd in (entry / "fd").iterdir():
        with contextlib.suppress(OSError):
            if marker in os.readlink(fd):
                return True
    return False


def processes_using(marker: str) -> list[int]:
    """Pids of the processes of the head started with temp dir ``marker`` (command line or open files)."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if _mentions(entry, marker):
                    pids.append(int(entry.name))
    return pids


def stop_processes_using(marker: str, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, every process started for this head."""
    for pid in processes_using(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while processes_using(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in processes_using(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while processes_using(marker) and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclasses.dataclass
class Head:
    address: str  # the job API (dashboard) address
    env: dict[str, str] = dataclasses.field(repr=False)  # holds the token: kept out of tracebacks
    temp_dir: str
    gcs_address: str = ""  # what a driver's RAY_ADDRESS names


def wait_for_job_agent(
    submit: Callable[[list[str]], subprocess.CompletedProcess], address: str, timeout: float
) -> None:
    """`ray start` returns before the head's agent that runs jobs has registered: submit `true` until it is taken.

    ``submit(argv)`` runs a ``ray`` command where the submitter is (this machine, or a node of a test cluster).
    """
    deadline = time.monotonic() + timeout
    probe = None
    while time.monotonic() < deadline:
        probe = submit(["ray", "job", "submit", "--address", address, "--no-wait", "--", "true"])
        if probe.returncode == 0:
            return
        time.sleep(1)
    said = "" if probe is None else (probe.stdout + probe.stderr)[-2000:]
    raise TimeoutError(f"the job agent of {address} did not come up in {timeout:.0f} s; last probe:\n{said}")


def _submit_here(head: Head) -> Callable[[list[str]], subprocess.CompletedProcess]:
    def submit(argv: list[str]) -> subprocess.CompletedProcess:
        argv = [str(VENV_BIN / argv[0]), *argv[1:]]
        return subprocess.run(argv, env=head.env, capture_output=True, text=True, timeout=60)

    return submit


@contextlib.contextmanager
def ray_head(num_cpus: int = 4, num_gpus: int = 2, jobs: bool = True) -> Iterator[Head]:
    """`ray start --head` on loopback with token auth, logical GPUs and its own temp dir.

    With ``jobs=False`` it does not wait for the job agent (drivers connect with ``RAY_ADDRESS``).
    """
    temp_dir = tempfile.mkdtemp(prefix="xr", dir="/tmp")  # short: Ray's socket paths live below it
    dashboard_port, gcs_port = free_port(), free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        # A token of this head's own, in the environment only: a fresh machine has no ~/.ray/auth_token,
        # and the test leaves the user's home alone.
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",  # as for a user with the venv activated
    }
    env.pop("RAY_ADDRESS", None)
    command = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        f"--temp-dir={temp_dir}",
        f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--include-dashboard=true",
        f"--num-cpus={num_cpus}",
        f"--num-gpus={num_gpus}",
        "--disable-usage-stats",
    ]
    try:
        started = subprocess.run(command, env=env, timeout=180, capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"`ray start` exited with {started.returncode}:\n{started.stderr[-3000:]}")
        head = Head(f"http://127.0.0.1:{dashboard_port}", env, temp_dir, f"127.0.0.1:{gcs_port}")
        if jobs:
            wait_for_job_agent(_submit_here(head), head.address, timeout=240.0)
        yield head
    finally:
        stop_processes_using(temp_dir)
