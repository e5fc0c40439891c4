"""The simulated 2450 driven by third-party drivers (PyMeasure, QCoDeS) through pyvisa-py, as
they would drive the instrument, and by ours in the states a real 2450 can be in (TSP command
set, interlock open). Each test checks what the device under the needles saw (a shorted device:
I = V / R_short) and that the error queue is empty afterwards."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from instruments.errors import InterlockOpen, SettingRangeError, WrongInstrument
from instruments.station import open_bench

_names = itertools.count()


def _shorted_device_in_contact(lab) -> float:
    """Needles down on die 0 site 0, the device shorted for good; returns R_short, ohm."""
    prober = lab.servers["prober"]
    with lab.lock:
        prober.state.die_index, prober.state.site, prober.state.contact = 0, 0, True
        prober.state.height = "C"
        lab.device(0, 0).shorted = True
    return lab.truth.short_resistance_ohm


def _no_errors(lab, role: str = "smu") -> None:
    assert not lab.servers[role].error_queue, list(lab.servers[role].error_queue)


@pytest.fixture
def pymeasure_smu(sim_lab):
    from pymeasure.adapters import VISAAdapter
    from pymeasure.instruments.keithley import Keithley2450

    adapter = VISAAdapter(
        sim_lab.resource("smu"), visa_library="@py", read_termination="\n",
        write_termination="\n", timeout=5000,
    )  # fmt: skip
    smu = Keithley2450(adapter)
    yield smu
    adapter.close()


@pytest.fixture
def qcodes_smu(sim_lab):
    from qcodes.instrument_drivers.Keithley import Keithley2450

    smu = Keithley2450(f"smu{next(_names)}", sim_lab.resource("smu"), visalib="@py")
    yield smu
    smu.close()


def test_pymeasure_identifies_resets_sources_and_measures(sim_lab, pymeasure_smu) -> None:
    r_short = _shorted_device_in_contact(sim_lab)
    smu = pymeasure_smu
    assert smu.id.startswith("KEITHLEY INSTRUMENTS,MODEL 2450,")
    smu.write(":SOUR:VOLT 1.5")
    smu.reset()  # "*RST;:stat:pres;:*CLS;" in one message
    assert smu.source_voltage == 0.0
    smu.apply_voltage(compliance_current=0.1)
    smu.measure_current(nplc=0.1)
    smu.source_voltage = 0.5
    smu.enable_source()
    current_a = smu.current
    state = sim_lab.servers["smu"].state
    assert state.output_on and state.source_v == 0.5 and state.curr_nplc == 0.1
    assert current_a == pytest.approx(0.5 / r_short, rel=1e-3)  # the device saw 0.5 V
    assert smu.compliance_current == pytest.approx(0.1)
    assert smu.check_errors() == []
    _no_errors(sim_lab)


def test_qcodes_connects_checks_the_language_measures_and_sweeps(sim_lab, qcodes_smu) -> None:
    r_short = _shorted_device_in_contact(sim_lab)
    smu = qcodes_smu
    assert smu.IDN()["model"] == "2450"
    assert "source_function" in smu.parameters  # not the half-built driver of a wrong mode
    smu.reset()
    smu.source_function("voltage")
    smu.sense_function("current")
    smu.source.limit(0.2)
    smu.source.voltage(0.25)
    smu.output_enabled(True)
    assert smu.sense.current() == pytest.approx(0.25 / r_short, rel=1e-3)
    smu.source.sweep_setup(0.0, 1.0, 11, delay=1e-3)
    currents_a = smu.sense.sweep()
    np.testing.assert_allclose(currents_a, np.linspace(0.0, 1.0, 11) / r_short, rtol=1e-3,
                               atol=1e-9)  # fmt: skip
    assert sim_lab.servers["smu"].state.source_v == 1.0  # the sweep ended at its last point
    assert smu.sense_function() == "current" and smu.source.limit() == pytest.approx(0.2)
    _no_errors(sim_lab)


def test_qcodes_sees_a_2450_in_tsp_mode_as_the_wrong_language(sim_lab) -> None:
    from qcodes.instrument_drivers.Keithley import Keithley2450

    sim_lab.servers["smu"].language = "TSP"
    smu = Keithley2450(f"smu{next(_names)}", sim_lab.resource("smu"), visalib="@py")
    try:
        assert "source_function" not in smu.parameters  # QCoDeS warns and stops
    finally:
        smu.close()


def test_sweep_commands_lin_log_and_list_store_their_points(sim_lab, visa_open) -> None:
    r_short = _shorted_device_in_contact(sim_lab)
    smu = visa_open(sim_lab.resource("smu"))
    smu.write(":SOUR:VOLT:ILIM 0.1;:SOUR:SWE:VOLT:LOG 0.01, 1, 3, 0, 1, BEST, OFF, ON")
    smu.write(":INIT;*WAI")
    assert smu.query(":TRAC:ACT?") == "5"  # dual: up and back
    data = [float(x) for x in smu.query(":TRAC:DATA? 1, 5, 'defbuffer1', SOUR").split(",")]
    np.testing.assert_allclose(data, [0.01, 0.1, 1.0, 0.1, 0.01])
    smu.write(
        ':TRAC:MAKE "iv", 100;:SOUR:LIST:VOLT 0.2,0.4;:SOUR:SWE:VOLT:LIST 1, 1e-3, 2, OFF, "iv"'
    )
    smu.write(":INIT")
    values = smu.query(':TRAC:DATA? 1, 4, "iv", SOUR, READ, UNIT').split(",")
    assert values[0::3] == ["2.000000E-01", "4.000000E-01"] * 2 and values[2] == "Amp DC"
    assert float(values[4]) == pytest.approx(0.4 / r_short, rel=1e-3)
    smu.write(":SOUR:SWE:VOLT:LIN:STEP 0, 1, 0.25, 0")
    smu.write(":INIT")
    assert smu.query(':TRAC:ACT? "defbuffer1"') == "5"
    assert float(smu.query(":MEAS:VOLT?")) == pytest.approx(1.0)
    assert smu.query(":SENS:FUNC?") == '"VOLT:DC"'
    _no_errors(sim_lab)


@pytest.mark.parametrize("delay", ["1e-5", "2e4", "-0.5"])
def test_sweep_delay_outside_0_or_50us_to_10ks_is_refused(sim_lab, visa_open, delay) -> None:
    smu = visa_open(sim_lab.resource("smu"))
    smu.write(f":SOUR:SWE:VOLT:LIN 0, 1, 5, {delay}")
    assert smu.query(":SYST:ERR?").startswith("-222,")


def test_our_driver_names_the_front_panel_setting_of_a_tsp_2450(sim_lab, sim_station) -> None:
    sim_lab.servers["smu"].language = "TSP"
    with pytest.raises(WrongInstrument, match=r"TSP.*Command Set: SCPI"):
        open_bench(sim_station, timeout_s=2.0)
    smu = sim_lab.servers["smu"]
    smu.next_language = "SCPI"
    smu.power_cycle()
    with open_bench(sim_station, timeout_s=2.0) as bench:
        assert "MODEL 2450" in bench.smu.idn


def test_our_driver_reads_the_interlock_before_an_output_above_42_v(sim_lab, sim_station) -> None:
    from instruments.envelope import Envelope, Limits

    _shorted_device_in_contact(sim_lab)
    server = sim_lab.servers["smu"]
    server.interlock_asserted = False
    envelope = Envelope(default=Limits(max_voltage_v=100.0, max_current_a=0.1), kinds={})
    with open_bench(sim_station, timeout_s=2.0, envelope=envelope) as bench:
        bench.smu.configure_voltage_source(range_v=200.0, current_limit_a=1e-3)
        bench.smu.source_voltage_v = 50.0
        with pytest.raises(InterlockOpen, match=r"TRIP\? reads 0"):
            bench.smu.output_enabled = True
        assert not server.state.output_on and ":OUTP ON" not in sim_lab.commands("smu")
        with pytest.raises(InterlockOpen):
            bench.smu.sweep_voltage_list(np.array([0.0, 45.0]), 1e-3, delay_s=0.0)
        with pytest.raises(SettingRangeError, match=r"0 or 5e-05\.\.10000 s"):
            bench.smu.sweep_voltage_list(np.array([0.0, 1.0]), 1e-3, delay_s=1e-5)
        server.interlock_asserted = True
        bench.smu.output_enabled = True
        assert server.state.output_on
    _no_errors(sim_lab)


def test_the_sim_limits_the_output_and_raises_event_5074_without_interlock(
    sim_lab, visa_open
) -> None:
    sim_lab.servers["smu"].interlock_asserted = False
    smu = visa_open(sim_lab.resource("smu"))
    assert smu.query(":OUTP:INT:TRIP?") == "0"
    smu.write(':SOUR:VOLT:ILIM 1e-3;:SOUR:VOLT 50;:SENS:FUNC "VOLT";:OUTP ON')
    assert smu.query(":SYST:ERR?") == '5074,"Output voltage limited by interlock"'
    assert float(smu.query(":READ?")) == pytest.approx(42.0)  # what reaches the terminals
    assert float(smu.query(":SOUR:VOLT?")) == pytest.approx(50.0)  # what was programmed
    _no_errors(sim_lab)
