"""One writer per run: the process that writes into a run holds its lease in the database.

A run row carries ``lease_holder`` (``host:pid:token``) and ``lease_heartbeat_at``; the holder
renews the heartbeat every ``HEARTBEAT_S`` from a background thread. Taking a lease is one
conditional ``UPDATE`` (free, already mine, or stale), atomic on SQLite and PostgreSQL alike.
A lease is stale when its holder is a process of this host that no longer exists, or when its
heartbeat is older than ``STALE_AFTER_S`` (a holder on another host, or a legacy row without a
holder); a stale lease is taken over with a warning naming the previous holder. A live lease
refuses the newcomer with :class:`RunLeased` (exit 2) naming the holder.

Opening a run (find the resumable run of a plan, or create one) is serialized per plan across
processes: a PostgreSQL advisory lock keyed by the plan hash, or on SQLite an OS lock on a file
beside the database, so two processes starting the same plan at once cannot both create (or
both resume) a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, and_, or_, select, text, update

from bruno_lab.errors import BadInputError, BrunoLabError
from protocols.seams import RunStore

log = logging.getLogger(__name__)

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0
_TOKEN = secrets.token_hex(4)


class RunLeased(BadInputError):
    """Another live process holds the run."""


class LeaseLost(BrunoLabError):
    """This process's lease was taken over (its heartbeat stopped for too long): stop writing."""


def holder_id() -> str:
    """``host:pid:token`` of this process (the token tells a reused pid apart)."""
    return f"{socket.gethostname()[:200]}:{os.getpid()}:{_TOKEN}"


def _holder_is_dead(holder: str) -> bool:
    """True if ``holder`` names a process of this host that does not exist any more."""
    parts = holder.split(":")
    if len(parts) < 3:
        return False
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != socket.gethostname()[:200] or not pid_text.isdigit():
        return False
    if int(pid_text) == os.getpid():
        return parts[-1] != _TOKEN
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _run_table() -> Table:
    from bruno_lab.store.models import Run

    return Run.__table__


def _now(store: RunStore) -> datetime:
    from bruno_lab.store.models import utcnow

    return utcnow()


def lease_info(store: RunStore, run_id: int) -> tuple[str | None, datetime | None]:
    run = _run_table()
    with store.engine.connect() as conn:
        row = conn.execute(
            select(run.c.lease_holder, run.c.lease_heartbeat_at).where(run.c.id == run_id)
        ).first()
    if row is None:
        return None, None
    beat = row[1]
    if beat is not None and beat.tzinfo is None:
        from datetime import UTC

        beat = beat.replace(tzinfo=UTC)
    return row[0], beat


def try_acquire(store: RunStore, run_id: int, holder: str) -> bool:
    """Take the lease of ``run_id`` if it is free, ours, or stale; True if we hold it now."""
    run = _run_table()
    now = _now(store)
    cutoff = now - timedelta(seconds=STALE_AFTER_S)
    current, beat = lease_info(store, run_id)
    dead = current is not None and current != holder and _holder_is_dead(current)
    cond = or_(
        run.c.lease_holder.is_(None),
        run.c.lease_holder == holder,
        run.c.lease_heartbeat_at.is_(None),
        run.c.lease_heartbeat_at < cutoff,
    )
    if dead:  # the holder's process is gone: take it whatever its last heartbeat
        cond = or_(cond, run.c.lease_holder == current)
    with store.engine.begin() as conn:
        res = conn.execute(
            update(run)
            .where(and_(run.c.id == run_id, cond))
            .values(lease_holder=holder, lease_heartbeat_at=now)
        )
    if res.rowcount != 1:
        return False
    if current is not None and current != holder:
        age = f"{(now - beat).total_seconds():.0f} s" if beat is not None else "never"
        why = "its process is gone" if dead else f"no heartbeat for {age}"
        log.warning("run %s: took over the stale lease of %s (%s)", run_id, current, why)
    return True


def acquire(store: RunStore, run_id: int, holder: str) -> None:
    """Take the lease or raise :class:`RunLeased` naming the live holder."""
    if try_acquire(store, run_id, holder):
        return
    current, beat = lease_info(store, run_id)
    age = f"{(_now(store) - beat).total_seconds():.0f} s ago" if beat is not None else "never"
    raise RunLeased(
        f"run {run_id} is being written by {current} (last heartbeat {age}); one writer per "
        "run: wait for it to finish, or stop that process (a killed holder's run is taken "
        "over by the next run of the same plan)"
    )


def release(store: RunStore, run_id: int, holder: str) -> None:
    run = _run_table()
    with store.engine.begin() as conn:
        conn.execute(
            update(run)
            .where(and_(run.c.id == run_id, run.c.lease_holder == holder))
            .values(lease_holder=None, lease_heartbeat_at=None)
        )


class Lease:
    """A held lease with its heartbeat thread; ``lost`` turns True if it was taken over."""

    def __init__(self, store: RunStore, run_id: int, holder: str) -> None:
        self.store = store
        self.run_id = run_id
        self.holder = holder
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{run_id}", daemon=True)

    def start(self) -> Lease:
        self._thread.start()
        return self

    def _beat(self) -> None:
        run = _run_table()
        while not self._stop.wait(HEARTBEAT_S):
            try:
                with self.store.engine.begin() as conn:
                    res = conn.execute(
                        update(run)
                        .where(and_(run.c.id == self.run_id, run.c.lease_holder == self.holder))
                        .values(lease_heartbeat_at=_now(self.store))
                    )
                if res.rowcount != 1:
                    self.lost = True
                    log.error("run %s: lease lost to another process", self.run_id)
                    return
            except Exception as exc:  # the database may be briefly away; retry next beat
                log.warning("run %s: heartbeat failed: %s", self.run_id, exc)

    def check(self) -> None:
        if self.lost:
            raise LeaseLost(
                f"run {self.run_id}: another process took the run over (this one's heartbeat "
                f"stopped for more than {STALE_AFTER_S:.0f} s); stopped writing"
            )

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if not self.lost:
            with contextlib.suppress(Exception):
                release(self.store, self.run_id, self.holder)


class LeasedStore:
    """The store as the orchestrator sees it while a lease is held: writes check the lease
    first, so a process that lost its run never writes into it again."""

    def __init__(self, store: RunStore, lease: Lease) -> None:
        self._store = store
        self._lease = lease

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def add_measurement(self, **kwargs: Any) -> int:
        self._lease.check()
        return self._store.add_measurement(**kwargs)

    def set_run_status(self, run_id: int, status: str, finished_at: datetime | None = None) -> None:
        if self._lease.lost:
            log.warning("run %s: not setting status %s (lease lost)", run_id, status)
            return
        self._store.set_run_status(run_id, status, finished_at)


@contextlib.contextmanager
def plan_open_lock(store: RunStore, plan_sha256: str) -> Iterator[None]:
    """Serialize find-or-create of the run of one plan across processes (see module doc)."""
    engine = store.engine
    key = int.from_bytes(hashlib.sha256(plan_sha256.encode()).digest()[:8], "big", signed=True)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # one process only (in-memory) or a backend with its own serialization
        return
    from instruments.station_lock import lock_dir

    path = Path(database).expanduser().resolve()
    digest = hashlib.sha256(f"{path}\n{plan_sha256}".encode()).hexdigest()[:24]
    lock_path = lock_dir() / f"plan-{digest}.lock"  # not beside the database: writes nothing there
    try:
        fh = open(lock_path, "a+")  # noqa: SIM115 - closed below, after the lock is released
    except OSError as exc:
        raise BadInputError(
            f"database {path}: cannot create the lock file {lock_path} ({exc.strerror}); "
            f"the lock directory (${{BRUNO_LAB_LOCK_DIR}}, default {lock_path.parent}) must "
            "be writable"
        ) from None
    with fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # held for milliseconds: wait, do not refuse
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
