"""A throwaway PostgreSQL server for tests: `initdb` + `pg_ctl` in a temp dir, torn down after.

Uses the Debian/Ubuntu server binaries (`/usr/lib/postgresql/<version>/bin/`, package
`postgresql`), or `initdb`/`pg_ctl` on PATH. PostgreSQL refuses to run as root, so as root the
server runs as the `postgres` OS user (`runuser -u postgres --`) in a directory it owns. It listens
on 127.0.0.1 on a free port (no unix socket), with trust auth and durability off (it is thrown
away): start-up takes about a second.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(Exception):
    """The server binaries (or a user to run them as) are missing: the caller skips."""


def find_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
                        reverse=True)
    for initdb in candidates:
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").is_file():
            return bindir
    initdb_path, pg_ctl_path = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb_path and pg_ctl_path and Path(initdb_path).parent == Path(pg_ctl_path).parent:
        return Path(initdb_path).parent
    raise PostgresUnavailable("PostgreSQL server binaries not found (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    datadir: Path
    version: str

    def url(self, database: str) -> str:
        """A plain `postgresql://` URL (facecast maps it to `postgresql+asyncpg://`)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"


@contextmanager
def postgres_server(timeout: float = 30.0) -> Iterator[PostgresServer]:
    """Start a fresh server; stop it and delete its files on exit."""
    bindir = find_bindir()
    prefix: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no 'postgres' OS user") from None
        runuser = shutil.which("runuser")
        if runuser is None:
            raise PostgresUnavailable("running as root and 'runuser' is missing")
        prefix = [runuser, "-u", "postgres", "--"]

    root = Path(tempfile.mkdtemp(prefix="facecast-pg-"))
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        datadir, log = root / "data", root / "server.log"
        user = "postgres"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            # cwd=root: runuser keeps root's cwd, which the postgres user may not be able to read
            return subprocess.run([*prefix, *args], cwd=root, capture_output=True, text=True,
                                  timeout=timeout, env={**os.environ, "LC_ALL": "C"})

        res = run(str(bindir / "initdb"), "-D", str(datadir), "-U", user, "--auth=trust",
                  "--no-locale", "--encoding=UTF8", "--no-sync")
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{res.stdout}\n{res.stderr}")

        opts = ("-c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=50 -c shared_buffers=16MB")
        port = 0
        for attempt in range(3):  # the free port may be taken between probing and binding
            port = _free_port()
            res = run(str(bindir / "pg_ctl"), "-D", str(datadir), "-l", str(log), "-w",
                      "-t", str(int(timeout)), "-o", f"{opts} -p {port}", "start")
            if res.returncode == 0:
                break
            if attempt == 2:
                server_log = log.read_text(errors="replace") if log.exists() else ""
                raise RuntimeError(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{server_log}")
        version = (datadir / "PG_VERSION").read_text().strip()
        try:
            yield PostgresServer(host="127.0.0.1", port=port, user=user, datadir=datadir,
                                 version=version)
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
