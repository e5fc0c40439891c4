"""Checks on a real bench (``pytest -m station --station-address station.yaml``): identities,
empty error queues, read-backs. Nothing here switches an output on or moves the chuck up."""

from __future__ import annotations

import pytest

from instruments.station import open_bench
from instruments.velox import VeloxError

pytestmark = pytest.mark.station


@pytest.fixture
def bench(request):
    with open_bench(request.config.getoption("--station-address")) as opened:
        yield opened


def test_every_instrument_identifies_and_its_error_queue_is_empty(bench):
    for role, instrument in bench.instruments().items():
        assert instrument.idn, role
        check = getattr(instrument, "check_errors", None)
        if check is not None:
            check()


def test_sources_read_back_off_after_shutdown(bench):
    if bench.smu is not None:
        bench.smu.shutdown()
        assert not bench.smu.output_enabled
    if bench.awg is not None:
        bench.awg.shutdown()
        assert not bench.awg.output_enabled


def test_prober_reports_its_position_and_chuck_state(bench):
    if bench.prober is None:
        pytest.skip("no prober on this station")
    assert isinstance(bench.prober.in_contact, bool)
    try:
        position = bench.prober.position()
    except VeloxError as exc:  # no die selected yet: a refusal with its code, not a failure
        assert exc.code != 0
    else:
        assert isinstance(position.column, int) and isinstance(position.x_m, float)


def test_clock_moves_forward(bench):
    if bench.clock is None:
        pytest.skip("no clock on this station")
    start_s = bench.clock.now_s()
    bench.clock.wait_s(0.01)
    assert bench.clock.now_s() >= start_s + 0.01 - 1e-9
