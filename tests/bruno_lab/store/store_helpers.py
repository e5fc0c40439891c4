"""Helpers shared by the store tests (imported by name: this directory is on sys.path)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bruno_lab.store import Store, open_store

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def migrated_store(url: str, **kwargs: object) -> Store:
    """Open ``url`` and run the alembic migrations (never ``create_all``)."""
    fresh = open_store(url, require_head=False)
    fresh.upgrade()
    fresh.close()
    return open_store(url, **kwargs)  # type: ignore[arg-type]


def measurement_kwargs(run_id: int, device_id: int, **over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "run_id": run_id,
        "device_id": device_id,
        "protocol": "pund",
        "parameters": {"amplitude_v": 3.0, "width_s": 1e-6},
        "instruments": {"awg": {"idn": "Keysight 33500B", "settings": {"load_ohm": 50.0}}},
        "started_at": T0,
        "finished_at": T0 + timedelta(seconds=2),
        "status": "ok",
        "error": None,
        "scalars": {"pr_c_m2": 0.21},
        "arrays": {},
    }
    base.update(over)
    return base
