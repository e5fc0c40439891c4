"""The schedule of a run: every planned measurement, in the order the prober visits them.

Order: die by die (wafer-map order), within a die site by site, on each site the plan's protocol
sequence (a step that expands, like ``pv_loop`` over frequencies, gives consecutive rows). Each
measurement has the idempotency key ``f"{die}/{site}/{protocol}/{index}"``, ``index`` counting
that protocol's rows on that device, so a resumed run can skip what is already committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.base import DeviceUnderTest, ProtocolParams
from protocols.plan import KINDS, Plan
from protocols.wafer import WaferMap

# Per-device overhead of a real bench: step the prober, contact, separate (s). Used only for
# dry-run estimates and ETAs, which the orchestrator rescales by what it measures.
STEP_OVERHEAD_S = 0.5


@dataclass(frozen=True)
class Planned:
    """One planned measurement."""

    key: str
    device: DeviceUnderTest
    protocol: str
    index: int
    params: ProtocolParams
    estimate_s: float


def measurement_key(device: DeviceUnderTest, protocol: str, index: int) -> str:
    """The idempotency key of a measurement, unique within a run."""
    return f"{device.die_label}/{device.site}/{protocol}/{index}"


def build_schedule(plan: Plan, wafer: WaferMap) -> list[Planned]:
    """Every measurement ``plan`` makes on ``wafer``, in run order."""
    plan.check_wafer(wafer)
    dies = plan.select_dies(wafer)
    sites_by_kind = {kind: set(plan.select_sites(wafer, kind)) for kind in KINDS}
    schedule: list[Planned] = []
    for die in dies:
        for site in wafer.sites:
            if site.site not in sites_by_kind.get(site.kind, set()):
                continue
            device = DeviceUnderTest(
                die.col, die.row, die.label, site.site, site.kind, dict(site.geometry)
            )
            counters: dict[str, int] = {}
            for step in plan.steps:
                if site.kind not in step.kinds:
                    continue
                for params in step.rows():
                    index = counters.get(step.name, 0)
                    counters[step.name] = index + 1
                    schedule.append(
                        Planned(
                            measurement_key(device, step.name, index),
                            device,
                            step.name,
                            index,
                            params,
                            params.estimate_s(),
                        )
                    )
    return schedule


def estimated_duration_s(schedule: list[Planned]) -> float:
    """Estimated wall time of ``schedule`` on a real bench, stepping overhead included."""
    devices = {(p.device.die_label, p.device.site) for p in schedule}
    return sum(p.estimate_s for p in schedule) + STEP_OVERHEAD_S * len(devices)


def summarize(schedule: list[Planned]) -> dict[str, object]:
    """Counts for the dry-run report: dies, devices, measurements per protocol and duration."""
    per_protocol: dict[str, int] = {}
    for p in schedule:
        per_protocol[p.protocol] = per_protocol.get(p.protocol, 0) + 1
    return {
        "n_dies": len({p.device.die_label for p in schedule}),
        "n_devices": len({(p.device.die_label, p.device.site) for p in schedule}),
        "n_measurements": len(schedule),
        "per_protocol": per_protocol,
        "estimated_duration_s": estimated_duration_s(schedule),
    }
