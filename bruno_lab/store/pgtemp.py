"""A throw-away PostgreSQL server for tests and benchmarks: initdb in a temp dir, 127.0.0.1.

Runs as the ``postgres`` system user when started by root (PostgreSQL refuses to run as root),
otherwise as the current user. Durability is switched off (``fsync=off``): the data is
discarded when the server stops.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bruno_lab.extras import require_extra

log = logging.getLogger(__name__)
SUPERUSER = "postgres"


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb``, ``postgres`` and ``pg_ctl``, or None if not installed."""
    on_path = shutil.which("initdb")
    candidates = [str(Path(on_path).resolve().parent)] if on_path else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for cand in candidates:
        if all((Path(cand) / exe).exists() for exe in ("initdb", "postgres", "pg_ctl")):
            return Path(cand)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_pg_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _default_base_dir() -> str | None:
    """RAM-backed /dev/shm when it has room (tests write hundreds of MB), else the temp dir."""
    shm = Path("/dev/shm")
    try:
        if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
            return str(shm)
    except OSError:
        pass
    return None


@contextmanager
def temporary_postgres(*, base_dir: str | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Start a server, yield its admin URL (``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``),
    stop it (``pg_ctl stop -m fast``) and remove its directory.

    ``base_dir`` holds the data directory; by default /dev/shm when it has room (fast tests),
    else the system temp dir. Benchmarks pass a disk directory to compare like with like.
    """
    pg_bin = find_pg_bin()
    if pg_bin is None:
        raise FileNotFoundError("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found")
    root = Path(tempfile.mkdtemp(prefix="bruno-pg-", dir=base_dir or _default_base_dir()))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    proc: subprocess.Popen[bytes] | None = None
    try:
        initdb = subprocess.run(
            _as_pg_user(
                [
                    str(pg_bin / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ]
            ),
            capture_output=True,
        )
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.decode(errors='replace')[-2000:]}")
        port = free_port()
        log_path = root / "server.log"
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(
                _as_pg_user(
                    [
                        str(pg_bin / "postgres"),
                        "-D",
                        str(data),
                        "-p",
                        str(port),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-k",
                        str(root),
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=50",
                    ]
                ),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        url = f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
        _wait_ready(port, proc, log_path, timeout_s)
        log.info("temporary PostgreSQL on 127.0.0.1:%d (%s)", port, root)
        yield url
    finally:
        if proc is not None:
            subprocess.run(
                _as_pg_user([str(pg_bin / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w"]),
                capture_output=True,
            )
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float) -> None:
    require_extra("postgres", "a temporary PostgreSQL server")
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            )
        try:
            with psycopg.connect(
                host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres", connect_timeout=2
            ):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres not ready after {timeout_s} s") from None
            time.sleep(0.1)


def create_database(admin_url: str, name: str) -> str:
    """CREATE DATABASE ``name`` on the server of ``admin_url``; return the new database's URL."""
    require_extra("postgres", "a PostgreSQL database")
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(admin_url)
    with psycopg.connect(
        host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return u.set(database=name).render_as_string(hide_password=False)
