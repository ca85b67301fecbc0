"""A password-protected PostgreSQL server for one test: its own data directory, loopback, stopped after.

Needs the server's binaries (Debian's ``postgresql`` package: ``/usr/lib/postgresql/<v>/bin``) and
the pure-Python driver ``pg8000``; as root, the server runs as the ``postgres`` user (it refuses root).
:func:`unavailable` says what is missing, for ``pytest.skip``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence

from tests.deploy.ray_head import free_port


def _bin_dir() -> pathlib.Path | None:
    found = shutil.which("initdb")
    if found:
        return pathlib.Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return pathlib.Path(versions[-1]).parent if versions else None


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def unavailable() -> str | None:
    """Why no server can be started here (``None``: one can)."""
    if _bin_dir() is None:
        return "no PostgreSQL server binaries (apt-get install postgresql)"
    try:
        import pg8000  # noqa: F401
    except ImportError:
        return "no PostgreSQL driver for SQLAlchemy (pip install pg8000)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "running as root without runuser (the server refuses root)"
    return None


@dataclasses.dataclass
class Postgres:
    port: int
    host: str = "127.0.0.1"
    user: str = "xdrl"
    database: str = "optuna"

    def url(self, password: str | None = None) -> str:
        """The SQLAlchemy URL (driver pg8000); with ``password`` only when given."""
        login = f"{self.user}:{password}" if password is not None else self.user
        return f"postgresql+pg8000://{login}@{self.host}:{self.port}/{self.database}"


@contextlib.contextmanager
def postgres_server(password: str, *, host: str = "127.0.0.1", enter: Sequence[str] = ()) -> Iterator[Postgres]:
    """Start a server whose only role, ``xdrl``, logs in with ``password`` (SCRAM), with a database ``optuna``.

    ``enter`` prefixes every command (``nsenter -t <pid> --net --``: a test cluster node's network),
    and the server listens on ``host`` there.
    """
    bin_dir = _bin_dir()
    root = pathlib.Path(tempfile.mkdtemp(prefix="xpg", dir="/tmp"))
    root.chmod(0o755)
    data, sockets, password_file = root / "data", root / "sockets", root / "password"
    sockets.mkdir()
    password_file.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sockets, "postgres", "postgres")
        shutil.chown(password_file, "postgres", "postgres")
    server = Postgres(free_port(), host)
    run = [*enter, *_as_server_user()]
    try:
        subprocess.run(
            [*run, str(bin_dir / "initdb"), "-D", str(data), "-U", server.user, f"--pwfile={password_file}"]
            + ["--auth=scram-sha-256", "-E", "UTF8"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        password_file.unlink()  # the server keeps a SCRAM verifier, not the password
        # Clients of the server's own subnet too (a test cluster's nodes), with the same password check.
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all samenet scram-sha-256\n")
        options = f"-p {server.port} -k {sockets} -c listen_addresses={host}"
        subprocess.run(
            [*run, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o", options]
            + ["start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        # The database, created over the network like any client (from inside ``enter``'s network too).
        create = (
            "import sys, pg8000.native as pg; c = pg.Connection(sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]),"
            " password=sys.stdin.read(), database='postgres'); c.run('CREATE DATABASE ' + sys.argv[4]); c.close()"
        )
        subprocess.run(
            [*enter, sys.executable, "-c", create, server.user, host, str(server.port), server.database],
            input=password,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*run, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(root, ignore_errors=True)
