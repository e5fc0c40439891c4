"""One process per bench: an OS lock per instrument, taken before any instrument traffic.

Two processes driving the same prober and SMU corrupt each other's measurements (one moves the
chuck under the other's sweep). Every instrument of a station is identified by its resource
name (``TCPIP::10.0.0.5::5025::SOCKET``); a process that opens a bench first takes an exclusive
``flock`` on one lock file per resource in ``$BRUNO_LAB_LOCK_DIR`` (default
``<tempdir>/bruno-lab-locks``), so two station files naming the same instrument conflict too.
The kernel drops the locks when the holder exits, even by SIGKILL: a dead holder never blocks.

Locks are per process and counted: the run holds the station for its whole duration while the
orchestrator closes and reopens the bench on a reconnect, so no other process can slip in.
A busy station raises :class:`StationBusy` (exit 2) naming the holder (pid, host, command).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from bruno_lab.errors import BadInputError

ENV_LOCK_DIR = "BRUNO_LAB_LOCK_DIR"

_lock = threading.Lock()
_held: dict[str, tuple[IO[str], int]] = {}  # canonical resource -> (open lock file, count)


class StationBusy(BadInputError):
    """Another process holds an instrument of this station."""


def lock_dir() -> Path:
    path = Path(os.environ.get(ENV_LOCK_DIR) or Path(tempfile.gettempdir()) / "bruno-lab-locks")
    path.mkdir(parents=True, exist_ok=True, mode=0o1777)
    return path


def canonical_resource(resource: str) -> str:
    """The name pyvisa normalises ``resource`` to, upper-cased (``tcpip::h::5025::socket`` and
    ``TCPIP0::H::5025::SOCKET`` are one instrument; ``GPIB::12`` is ``GPIB0::12::INSTR``);
    the upper-cased text when pyvisa cannot parse it. A host name and its address stay two
    names (resolving them would need the network)."""
    text = resource.strip().upper()
    try:
        from pyvisa import rname

        return str(rname.parse_resource_name(text)).upper()
    except Exception:  # not a VISA name pyvisa knows: compare the text
        return text


def _lock_path(resource: str) -> Path:
    digest = hashlib.sha256(canonical_resource(resource).encode()).hexdigest()[:24]
    return lock_dir() / f"{digest}.lock"


def _describe(fh: IO[str]) -> str:
    try:
        fh.seek(0)
        info = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, since {since})"


def _acquire_one(resource: str, where: str) -> None:
    key = canonical_resource(resource)
    held = _held.get(key)
    if held is not None:
        _held[key] = (held[0], held[1] + 1)
        return
    path = _lock_path(resource)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while the lock is held
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _describe(fh)
        fh.close()
        raise StationBusy(
            f"{where}: instrument {resource} is in use by {holder}; one process per bench: "
            "wait for it to finish or stop it"
        ) from None
    except OSError as exc:
        fh.close()
        raise BadInputError(f"{where}: cannot lock {resource} ({path}: {exc})") from None
    fh.seek(0)
    fh.truncate()
    fh.write(
        json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": " ".join(sys.argv[:3])[:200],
                "resource": resource,
                "since": time.time(),
            }
        )
    )
    fh.flush()
    _held[key] = (fh, 1)


def _release_one(resource: str) -> None:
    key = canonical_resource(resource)
    held = _held.get(key)
    if held is None:
        return
    fh, count = held
    if count > 1:
        _held[key] = (fh, count - 1)
        return
    del _held[key]
    with contextlib.suppress(OSError):
        fh.seek(0)
        fh.truncate()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    fh.close()


def acquire(resources: Iterable[str], where: str) -> list[str]:
    """Lock every resource (all or none) for this process; returns what was locked."""
    # one lock per instrument, whatever the spelling (two names of one instrument in one
    # process would otherwise flock the same file twice and refuse themselves)
    wanted = sorted({canonical_resource(r): r for r in resources if r}.values())
    done: list[str] = []
    with _lock:
        try:
            for resource in wanted:
                _acquire_one(resource, where)
                done.append(resource)
        except BaseException:
            for resource in done:
                _release_one(resource)
            raise
    return done


def release(resources: Iterable[str]) -> None:
    with _lock:
        for resource in resources:
            _release_one(resource)


def station_resources(station: Any) -> list[str]:
    """The resource names of a loaded station file (``instruments.station.StationFile``)."""
    return [e.resource for e in station.instruments.values() if e.resource]


@contextlib.contextmanager
def station_locked(station: Any, where: str) -> Iterator[None]:
    """Hold the station's instruments for this process inside the block."""
    held = acquire(station_resources(station), where)
    try:
        yield
    finally:
        release(held)


def held_by_me(resource: str) -> bool:
    with _lock:
        return canonical_resource(resource) in _held
