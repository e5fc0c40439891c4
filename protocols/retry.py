"""What a run does when it loses an instrument connection, and how signals are held off.

Policy (documented in ``docs/plans.md``): a connection-level failure (``ConnectionLost``,
``InstrumentTimeout``, ``GarbledReply``: the link may be out of step, so it is reopened) closes
the bench and reopens it up to ``max_reconnects`` times, sleeping ``backoff_s``,
``backoff_s * factor``, ... between attempts. After a good reconnect the measurement that failed
is retried, up to ``max_attempts`` attempts in all; if it still fails it is recorded as failed
with the reason and the run goes on. If the bench cannot be reopened the run stops cleanly
(instruments safe as far as they answer, run status ``failed``, exit code 1).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """Reconnect and retry limits for lost connections (seconds for delays)."""

    max_reconnects: int = 3
    backoff_s: float = 0.5
    backoff_factor: float = 2.0
    max_attempts: int = 2

    def delays_s(self) -> list[float]:
        """Sleep before each reconnect attempt: 0.5, 1, 2 s by default."""
        return [self.backoff_s * self.backoff_factor**i for i in range(self.max_reconnects)]


def connection_errors() -> tuple[type[BaseException], ...]:
    """The instrument errors after which the link is reopened (see module doc)."""
    from instruments.errors import ConnectionLost, GarbledReply, InstrumentTimeout

    return (ConnectionLost, InstrumentTimeout, GarbledReply)


class DeferredSignals:
    """SIGINT/SIGTERM handling of a run: the first signal asks the run to stop after the
    measurement in progress (which completes and is committed whole); a second one interrupts
    at once (``KeyboardInterrupt``), except during a commit, where it is held until the commit
    ends, so a measurement is never cut in half. Further signals while stopping are ignored so
    the safe state and the run's status get written (SIGKILL still ends the process; a rerun
    resumes). Handlers are installed only in the main thread.

    Stopping between measurements, not inside one, also keeps every instrument link in step: a
    reply cut off mid-read would otherwise have to be drained before the safe state.
    """

    def __init__(self) -> None:
        self.stop_requested = False
        self._pending: int | None = None
        self._inside = False
        self._fired = False
        self._previous: dict[int, Any] = {}
        self._active = threading.current_thread() is threading.main_thread()

    def _handler(self, signum: int, frame: Any) -> None:
        if not self.stop_requested:
            self.stop_requested = True
            log.warning("signal %d: stopping after the measurement in progress", signum)
            return
        if self._fired:
            return
        if self._inside:
            self._pending = signum
            return
        self._fired = True
        raise KeyboardInterrupt(f"signal {signum}")

    def __enter__(self) -> DeferredSignals:
        if self._active:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._active:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was asked for (call between measurements)."""
        if self.stop_requested:
            self._fired = True
            raise KeyboardInterrupt("stop requested by signal")

    @contextlib.contextmanager
    def protected(self) -> Iterator[None]:
        self._inside = True
        try:
            yield
        finally:
            self._inside = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            self._fired = True
            raise KeyboardInterrupt(f"signal {signum}")
