"""Which run a ``bruno-lab run`` writes into: a new one, ``--resume RUN_ID``, or the interrupted
run of the same plan (same plan hash) that a plain rerun finds and continues; and the lease
that makes the process writing into it the only one (:func:`leased_run`, ``protocols.lease``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from bruno_lab import __version__
from bruno_lab.errors import BadInputError
from protocols.plan import Plan
from protocols.seams import RunStore

log = logging.getLogger(__name__)

# Statuses of a run that stopped before its end: ``running`` is what a killed runner leaves.
RESUMABLE = ("running", "aborted", "interrupted", "failed")


def plan_record(plan: Plan) -> dict[str, Any]:
    """The plan as stored on the run row: name, hash (identifies reruns), source and document."""
    return {
        "name": plan.name,
        "sha256": plan.sha256,
        "source": plan.source,
        "document": plan.document,
    }


def find_resumable_run(store: RunStore, plan: Plan) -> int | None:
    """The newest run of this plan (same hash) that did not complete, or None."""
    from sqlalchemy import select

    from bruno_lab.store.models import Run

    with store.session() as session:
        rows = session.execute(select(Run.id, Run.plan, Run.status).order_by(Run.id.desc()))
        for run_id, plan_json, status in rows:
            if (plan_json or {}).get("sha256") != plan.sha256:
                continue
            if str(getattr(status, "value", status)) in RESUMABLE:
                return int(run_id)
            return None  # the newest run of this plan completed: a rerun starts afresh
    return None


def open_run(
    store: RunStore,
    plan: Plan,
    station: dict[str, Any],
    *,
    resume: int | None,
    operator: str,
    purpose: str = "characterization",
) -> tuple[int, bool]:
    """Return ``(run_id, resumed)``: the run to write into, created when there is none, with
    ``purpose`` (characterization, deployment, evaluation, maintenance).

    ``resume`` names a run explicitly; it must exist and belong to the same plan (hash),
    else ``BadInputError``.
    """
    if resume is not None:
        from bruno_lab.store.models import Run

        with store.session() as session:
            run = session.get(Run, resume)
            if run is None:
                raise BadInputError(f"--resume {resume}: no such run")
            stored = (run.plan or {}).get("sha256")
        if stored != plan.sha256:
            raise BadInputError(
                f"--resume {resume}: run {resume} was made from a different plan "
                f"(hash {str(stored)[:12]}…, this plan {plan.sha256[:12]}…); "
                "resume with the same plan file"
            )
        store.set_run_status(resume, "running")
        return resume, True
    found = find_resumable_run(store, plan)
    if found is not None:
        log.info("resuming interrupted run %s of plan %s", found, plan.name)
        store.set_run_status(found, "running")
        return found, True
    run_id = store.create_run(plan_record(plan), operator, station, __version__, purpose)
    return run_id, False


@contextlib.contextmanager
def leased_run(
    store: RunStore,
    plan: Plan,
    station: dict[str, Any],
    *,
    resume: int | None,
    operator: str,
    purpose: str = "characterization",
) -> Iterator[tuple[int, bool, RunStore]]:
    """:func:`open_run` under the run's lease: yields ``(run_id, resumed, store)`` where
    ``store`` refuses writes once the lease is lost. A run another live process holds raises
    ``RunLeased`` (exit 2) before anything is written; a dead holder's run is taken over."""
    from protocols import lease

    me = lease.holder_id()
    with lease.plan_open_lock(store, plan.sha256):
        target = resume if resume is not None else find_resumable_run(store, plan)
        if target is not None:
            _check_resume_target(store, plan, target, resume)
            lease.acquire(store, target, me)  # refuses a live holder, takes a dead one's
        try:
            run_id, resumed = open_run(
                store, plan, station, resume=target if target is not None else None,
                operator=operator, purpose=purpose,
            )  # fmt: skip
            if target is None:
                lease.acquire(store, run_id, me)
        except BaseException:
            if target is not None:
                lease.release(store, target, me)
            raise
    held = lease.Lease(store, run_id, me).start()
    try:
        yield run_id, resumed, lease.LeasedStore(store, held)
    finally:
        held.close()


def _check_resume_target(store: RunStore, plan: Plan, run_id: int, resume: int | None) -> None:
    if resume is None:
        return
    from bruno_lab.store.models import Run

    with store.session() as session:
        run = session.get(Run, run_id)
        if run is None:
            raise BadInputError(f"--resume {run_id}: no such run")
        stored = (run.plan or {}).get("sha256")
    if stored != plan.sha256:
        raise BadInputError(
            f"--resume {run_id}: run {run_id} was made from a different plan "
            f"(hash {str(stored)[:12]}…, this plan {plan.sha256[:12]}…); "
            "resume with the same plan file"
        )
