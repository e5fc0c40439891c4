"""The wafer-run orchestrator: step die by die, run the protocols, commit each measurement.

Guarantees:
- every planned measurement is committed at most once per run (idempotency key
  ``die/site/protocol/index``; a resumed run skips keys already stored, the store refuses
  duplicates), each with all its arrays in one transaction;
- a device failure or an instrument fault is recorded on its measurement with the reason, the
  bench is made safe, and the run goes on;
- a lost connection is handled per :class:`protocols.retry.RetryPolicy`; if the bench cannot be
  reopened the run stops cleanly with status ``failed``;
- SIGINT/SIGTERM: the measurement in progress completes and is committed, then instruments
  safe, run status ``aborted`` (interrupted); a second signal interrupts the measurement at
  once (it is not stored); never a half-written measurement (signals are held during a commit).
Progress goes to a callback; this module draws nothing.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from protocols import bench_ops
from protocols.base import DeviceFailure, DeviceUnderTest, ProtocolResult
from protocols.plan import Plan
from protocols.registry import get_protocol
from protocols.retry import DeferredSignals, RetryPolicy, connection_errors
from protocols.run_state import (
    RunProgress,
    RunStopped,
    RunSummary,
    group_by_device,
    instrument_record,
    last_indices,
    now_utc,
)
from protocols.schedule import Planned
from protocols.seams import BenchView, RunStore

log = logging.getLogger(__name__)

INTERRUPTED_STATUS = "aborted"  # the store's run status for an interrupted run


class Orchestrator:
    """Runs a schedule on a bench and commits into a store (one instance per invocation).

    ``connect()`` opens the bench (and is called again to reconnect); ``on_progress`` gets a
    :class:`RunProgress` after every measurement; ``sleep`` is injectable for tests.
    """

    def __init__(
        self,
        plan: Plan,
        schedule: list[Planned],
        store: RunStore,
        connect: Callable[[], Any],
        *,
        run_id: int,
        wafer_name: str,
        resumed: bool = False,
        policy: RetryPolicy | None = None,
        on_progress: Callable[[RunProgress], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.plan = plan
        self.schedule = schedule
        self.store = store
        self.connect = connect
        self.policy = policy or RetryPolicy()
        self.on_progress = on_progress
        self.sleep = sleep
        self.wafer_name = wafer_name
        self.summary = RunSummary(run_id=run_id, status="running", planned=len(schedule))
        self.summary.resumed = resumed
        self._device_ids: dict[tuple[str, int], int] = {}
        self._die_ids: dict[str, int] = {}
        self._wafer_id: int | None = None
        self._consecutive_failed = 0
        self._t0 = 0.0
        self._est_done = 0.0
        self._est_total = sum(p.estimate_s for p in schedule)
        self._est_skipped = 0.0
        self._die_last, self._dev_last = last_indices(schedule)
        self.bench: BenchView | None = None

    # -- public ---------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run every measurement not yet committed; return the summary (status set)."""
        s = self.summary
        self._t0 = time.perf_counter()
        committed = self.store.completed_keys(s.run_id)
        todo = [p for p in self.schedule if p.key not in committed]
        s.skipped = len(self.schedule) - len(todo)
        s.done = s.skipped
        s.failed = self._count_failed(committed)
        self._est_skipped = sum(p.estimate_s for p in self.schedule if p.key in committed)
        self._report("start")
        signals = DeferredSignals()
        try:
            with signals:
                if todo:
                    self.bench = self._open_bench()
                    for device, items in group_by_device(todo):
                        self._run_device(device, items, signals)
            s.status = "completed"
            self.store.set_run_status(s.run_id, "completed")
        except KeyboardInterrupt:
            s.status, s.reason = "interrupted", "interrupted by signal"
            self._make_safe()
            self.store.set_run_status(s.run_id, INTERRUPTED_STATUS)
        except RunStopped as stop:
            s.status, s.reason = "failed", stop.reason
            self._make_safe()
            self.store.set_run_status(s.run_id, "failed")
        except Exception as exc:  # a bug or the store failing: bench safe first, then raise
            s.status, s.reason = "failed", f"{type(exc).__name__}: {exc}"
            self._make_safe()
            try:
                self.store.set_run_status(s.run_id, "failed")
            except Exception:
                log.exception("could not mark run %s failed", s.run_id)
            raise
        finally:
            self._close_bench()
            s.wall_s = time.perf_counter() - self._t0
        log.info("run %s %s: %s", s.run_id, s.status, s.as_dict())
        return s

    # -- per device -----------------------------------------------------------------------

    def _run_device(self, device: DeviceUnderTest, items: list[Planned], signals: Any) -> None:
        from bruno_lab.errors import InstrumentError

        signals.check()
        device_id = self._device_id(device)
        try:
            self._step_to(device)
        except InstrumentError as exc:
            # The prober cannot reach this device: each of its measurements fails with why.
            reason = f"prober: {type(exc).__name__}: {exc}"
            log.warning("%s/%s unreachable: %s", device.die_label, device.site, reason)
            self._make_safe()
            for item in items:
                signals.check()
                self._check_stop()
                self._commit(item, device_id, None, reason, {}, now_utc(), signals)
            return
        for item in items:
            signals.check()
            self._check_stop()
            self._run_one(device, device_id, item, signals)
        self._lift_probes()

    def _lift_probes(self) -> None:
        """Separate the chuck after a device; a lost link here is reopened (next device)."""
        from bruno_lab.errors import InstrumentError

        try:
            self._timed(lambda: self._bench().prober.separate())
        except connection_errors() as exc:
            log.warning("separating: %s", exc)
            self._reconnect(None)
        except InstrumentError as exc:
            log.warning("separating: %s; making the bench safe", exc)
            self._make_safe()

    def _run_one(
        self, device: DeviceUnderTest, device_id: int, item: Planned, signals: Any
    ) -> None:
        spec = get_protocol(item.protocol)
        from bruno_lab.errors import EnvelopeError, InstrumentError

        started = now_utc()
        result: ProtocolResult | None = None
        error: str | None = None
        arrays: dict[str, Any] = {}
        for attempt in range(1, self.policy.max_attempts + 1):
            compliance: list[tuple[float, float]] = []
            try:
                with bench_ops.counting_compliance() as compliance:
                    result = self._timed(lambda: spec.run(self.bench, device, item.params))
                error = None
                break
            except DeviceFailure as failure:
                error, arrays = f"device: {failure.reason}", failure.arrays
                self._make_safe_and_recontact(device)
                break
            except connection_errors() as exc:
                error = f"connection: {exc} (attempt {attempt} of {self.policy.max_attempts})"
                log.warning("%s: %s", item.key, error)
                self._reconnect(device)
            except (InstrumentError, EnvelopeError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                self._make_safe_and_recontact(device)
                break
            except (ArithmeticError, ValueError, IndexError) as exc:
                # A protocol could not analyse what it measured: keep the run going, say why.
                log.exception("%s: analysis failed", item.key)
                error = f"analysis: {type(exc).__name__}: {exc}"
                self._make_safe_and_recontact(device)
                break
        if error is not None:  # reads at the current limit cut it short: say so
            error += bench_ops.compliance_reason(compliance)
        self._commit(item, device_id, result, error, arrays, started, signals)

    def _commit(
        self,
        item: Planned,
        device_id: int,
        result: ProtocolResult | None,
        error: str | None,
        arrays: dict[str, Any],
        started: datetime,
        signals: Any,
    ) -> None:
        """Store one measurement (one transaction, signals held) and report progress."""
        ok = result is not None
        record: dict[str, Any] = dict(
            run_id=self.summary.run_id,
            device_id=device_id,
            protocol=item.protocol,
            parameters=item.params.as_record(),
            instruments=instrument_record(self._bench()),
            started_at=started,
            finished_at=now_utc(),
            status="ok" if ok else "failed",
            error=error,
            scalars=result.scalars if result is not None else {},
            arrays=result.arrays if result is not None else arrays,
            key=item.key,
        )
        t = time.perf_counter()
        with signals.protected():
            self.store.add_measurement(**record)
            self._count(item, ok, error)
        self.summary.store_s += time.perf_counter() - t
        self._report(item.key)

    def _count(self, item: Planned, ok: bool, error: str | None) -> None:
        s = self.summary
        s.done += 1
        s.measured_here += 1
        self._est_done += item.estimate_s
        if ok:
            self._consecutive_failed = 0
            return
        s.failed += 1
        self._consecutive_failed += 1
        s.failures.append({"key": item.key, "error": error or ""})
        log.warning("%s failed: %s", item.key, error)

    def _check_stop(self) -> None:
        stop = self.plan.raw.stop
        s = self.summary
        if stop.max_failed is not None and s.failed > stop.max_failed:
            raise RunStopped(f"stop condition: {s.failed} failed measurements > max_failed")
        if (
            stop.max_consecutive_failed is not None
            and self._consecutive_failed >= stop.max_consecutive_failed
        ):
            raise RunStopped(
                f"stop condition: {self._consecutive_failed} consecutive failed measurements"
            )
        elapsed = time.perf_counter() - self._t0
        if stop.max_duration_s is not None and elapsed > stop.max_duration_s:
            raise RunStopped(f"stop condition: ran {elapsed:.0f} s > max_duration_s")

    # -- bench ----------------------------------------------------------------------------

    def _bench(self) -> BenchView:
        """The open bench (opened by ``run`` before any device is visited)."""
        if self.bench is None:
            raise RuntimeError("the bench is not open")
        return self.bench

    def _timed(self, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        try:
            return fn()
        finally:
            self.summary.instrument_s += time.perf_counter() - t

    def _open_bench(self) -> Any:
        try:
            return self._timed(self.connect)
        except connection_errors() as exc:
            log.warning("cannot open the bench: %s", exc)
            return self._reopen(str(exc))

    def _step_to(self, device: DeviceUnderTest) -> None:
        def step() -> None:
            prober = self._bench().prober
            if prober.in_contact:
                prober.separate()
            prober.step_to(device.die_col, device.die_row, device.site)
            prober.contact()

        try:
            self._timed(step)
        except connection_errors() as exc:
            log.warning("stepping to %s/%s: %s", device.die_label, device.site, exc)
            self._reconnect(device)

    def _make_safe(self) -> None:
        if self.bench is None:
            return
        try:
            self._timed(self.bench.safe_state)
        except Exception as exc:  # the bench may be gone; nothing more can be done here
            log.error("could not make the bench safe: %s", exc)

    def _make_safe_and_recontact(self, device: DeviceUnderTest) -> None:
        """After a fault: outputs off and probes up, then back on the same device."""
        self._make_safe()
        try:
            self._step_to(device)
        except Exception as exc:
            from bruno_lab.errors import InstrumentError

            if not isinstance(exc, InstrumentError):
                raise
            log.warning("re-contact after fault failed (%s); reconnecting", exc)
            self._reconnect(device)

    def _reconnect(self, device: DeviceUnderTest | None) -> None:
        self._close_bench()
        self.bench = self._reopen("connection lost")
        if device is not None:
            self._step_to(device)

    def _reopen(self, why: str) -> Any:
        last = why
        for i, delay in enumerate(self.policy.delays_s(), start=1):
            self.sleep(delay)
            try:
                bench = self._timed(self.connect)
                log.info("reconnected to the bench (attempt %d)", i)
                return bench
            except Exception as exc:
                from bruno_lab.errors import InstrumentError

                if not isinstance(exc, InstrumentError | OSError):
                    raise
                last = str(exc)
                log.warning("reconnect attempt %d failed: %s", i, exc)
        raise RunStopped(
            f"lost the bench and {self.policy.max_reconnects} reconnects failed: {last}"
        )

    def _close_bench(self) -> None:
        bench, self.bench = self.bench, None
        if bench is None:
            return
        try:
            bench.close()
        except Exception as exc:
            log.warning("closing the bench: %s", exc)

    # -- store ----------------------------------------------------------------------------

    def _device_id(self, device: DeviceUnderTest) -> int:
        key = (device.die_label, device.site)
        if key not in self._device_ids:
            t = time.perf_counter()
            if self._wafer_id is None:
                self._wafer_id = self.store.ensure_wafer(self.wafer_name)
            if device.die_label not in self._die_ids:
                self._die_ids[device.die_label] = self.store.ensure_die(
                    self._wafer_id, device.die_col, device.die_row, device.die_label
                )
            self._device_ids[key] = self.store.ensure_device(
                self._die_ids[device.die_label], str(device.site), device.kind, device.geometry
            )
            self.summary.store_s += time.perf_counter() - t
        return self._device_ids[key]

    def _count_failed(self, committed: set[str]) -> int:
        if not committed:
            return 0
        from sqlalchemy import func, select

        from bruno_lab.store.models import Measurement

        with self.store.session() as session:
            stmt = select(func.count()).where(
                Measurement.run_id == self.summary.run_id, Measurement.status == "failed"
            )
            return int(session.execute(stmt).scalar() or 0)

    # -- progress -------------------------------------------------------------------------

    def _report(self, current: str) -> None:
        if self.on_progress is None:
            return
        s = self.summary
        done_keys = s.done
        elapsed = time.perf_counter() - self._t0
        eta = None
        if self._est_done > 0 and elapsed > 0:
            remaining_est = max(self._est_total - self._est_done - self._est_skipped, 0.0)
            eta = remaining_est * elapsed / self._est_done
        # Dies/devices done, counting the first `done` measurements of the schedule as done:
        # exact for a fresh run, close for a resumed one (committed keys are nearly a prefix).
        dies_done = bisect.bisect_left(self._die_last, done_keys)
        devs_done = bisect.bisect_left(self._dev_last, done_keys)
        self.on_progress(
            RunProgress(
                dies_done=dies_done,
                dies_total=len(self._die_last),
                devices_done=devs_done,
                devices_total=len(self._dev_last),
                measurements_done=s.done,
                measurements_total=s.planned,
                failed=s.failed,
                skipped=s.skipped,
                elapsed_s=elapsed,
                eta_s=eta,
                current=current,
            )
        )
