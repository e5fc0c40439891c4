"""Station file, model registry and Bench: opening by model name, safety wiring, safe state."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bruno_lab.errors import PlanError
from instruments import station as station_mod
from instruments.errors import ConnectionLost, EnvelopeError, InstrumentError, InstrumentTimeout
from instruments.roles import MODELS
from instruments.station import load_station, open_bench, site_kinds
from instruments.testing import FakeResource, visa_timeout

OK_SMU = (":SYST:ERR?", '0,"No error"')
OK_AWG = ("SYST:ERR?", '+0,"No error"')
# Resource names in VISA syntax (the station schema checks it); the fake manager maps them.
SMU_R, AWG_R, PROBER_R = (f"TCPIP::{n}.test::5025::SOCKET" for n in ("smu", "awg", "prober"))
X_R = "TCPIP::x.test::5025::SOCKET"

SCRIPTS_CONNECT = {
    SMU_R: [("*IDN?", "KEITHLEY INSTRUMENTS,MODEL 2450,1,1"), ("*LANG?", "SCPI"), ("*CLS", None)],
    AWG_R: [("*IDN?", "Agilent Technologies,33522B,MY1,1"), ("*CLS", None)],
    PROBER_R: [("ReportKernelVersion", "0: Velox 3.3.0.10")],
}


class FakeResourceManager:
    """Hands out scripted resources by address; remembers them for inspection."""

    def __init__(self, scripts: dict[str, list], reconnects: dict[str, list] | None = None) -> None:
        self.scripts = scripts
        self.reconnects = dict(reconnects or {})
        self.opened: dict[str, FakeResource] = {}
        self.reopened: dict[str, FakeResource] = {}

    def open_resource(self, address: str, **_: object) -> FakeResource:
        if address not in self.opened:
            self.opened[address] = FakeResource(self.scripts[address])
            return self.opened[address]
        if address not in self.reconnects:
            raise ConnectionRefusedError(f"{address}: connection refused")
        self.reopened[address] = FakeResource(self.reconnects.pop(address))
        return self.reopened[address]


def write_station(tmp_path: Path, instruments: dict, **extra: object) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(yaml.safe_dump({"station": "test", "instruments": instruments, **extra}))
    return path


STATION = {
    "smu": {"model": "keithley2450", "resource": SMU_R},
    "awg": {"model": "keysight33500b", "resource": AWG_R},
    "prober": {"model": "velox", "resource": PROBER_R},
    "clock": {"model": "wall"},
}
WAFER = {"sites": [{"site": 0, "kind": "fecap"}, {"site": 1, "kind": "rram"}]}


def test_every_driver_module_registers_itself():
    station_mod.load_driver_modules()
    assert {"keithley2450", "keysight33500b", "infiniivision", "velox", "sim-clock", "wall"} <= set(
        MODELS
    )
    assert MODELS["keithley2450"].role == "smu" and MODELS["velox"].role == "prober"


NEW_MODEL_FILE = """
from instruments.keithley2450 import Keithley2450
from instruments.roles import register_model


@register_model("acme-x1", role="smu")
class AcmeX1(Keithley2450):
    IDENTITY_PATTERN = r"ACME,X1,"
"""


def test_a_new_model_is_one_new_file_in_the_package(tmp_path, monkeypatch):
    """A file dropped into the ``instruments`` package (here via a temporary path entry) is
    found, registered and opened by its station name, with no other edit."""
    import sys

    import instruments

    (tmp_path / "acme_x1.py").write_text(NEW_MODEL_FILE)
    monkeypatch.setattr(instruments, "__path__", [*instruments.__path__, str(tmp_path)])
    try:
        path = write_station(tmp_path, {"smu": {"model": "acme-x1", "resource": X_R}})
        script = [("*IDN?", "ACME,X1,7,1"), ("*LANG?", "SCPI"), ("*CLS", None)]
        script += [(":SOUR:VOLT 0", None)]
        script += [(":OUTP OFF", None), OK_SMU, (":OUTP?", "0")]
        rm = FakeResourceManager({X_R: script})
        with open_bench(path, resource_manager=rm) as bench:
            assert type(bench.smu).__name__ == "AcmeX1"
            assert MODELS["acme-x1"].role == "smu"
        assert rm.opened[X_R].index == len(script)  # the bench left it safe on exit
    finally:
        MODELS.pop("acme-x1", None)
        sys.modules.pop("instruments.acme_x1", None)


def test_station_file_errors_name_the_field(tmp_path):
    with pytest.raises(PlanError, match=r"instruments.smu.model: 'keithley9999'"):
        load_station(write_station(tmp_path, {"smu": {"model": "keithley9999", "resource": X_R}}))
    with pytest.raises(PlanError, match="is a prober, not a smu"):
        load_station(write_station(tmp_path, {"smu": {"model": "velox", "resource": X_R}}))
    with pytest.raises(PlanError, match="resource"):
        load_station(write_station(tmp_path, {"smu": {"model": "keithley2450"}}))
    with pytest.raises(PlanError, match="unknown role"):
        load_station(write_station(tmp_path, {"laser": {"model": "wall"}}))
    with pytest.raises(PlanError, match="envelope"):
        open_bench(write_station(tmp_path, {}, envelope={"default": {"max_voltage_v": -1}}))


def test_site_kinds_from_the_wafer_section():
    assert site_kinds(WAFER) == {0: "fecap", 1: "rram"}
    assert site_kinds({"sites": ["fecap", "felif"]}) == {0: "fecap", 1: "felif"}


def test_bench_wires_kind_contact_and_sources_safe_before_moves(tmp_path):
    envelope = {"kinds": {"fecap": {"max_current_a": 1e-2}, "rram": {"max_current_a": 1e-3}}}
    path = write_station(tmp_path, STATION, wafer=WAFER, envelope=envelope)
    scripts = {k: list(v) for k, v in SCRIPTS_CONNECT.items()}
    scripts[PROBER_R] += [
        # step_to: sources made safe (unknown state -> shutdown), chuck status, step
        ("ReadChuckStatus", "0: S 1 0"),
        ("StepNextDie 1 0 1", "0: 1 0 1"),
        ("MoveChuckContact", "0:"),
        ("ReadChuckStatus", "0: C 1 0"),  # asked by the envelope before output on
        ("MoveChuckSeparation", "0:"),
    ]
    scripts[SMU_R] += [
        (":SOUR:VOLT 0", None), (":OUTP OFF", None), OK_SMU,        # before the step
        (":SOUR:FUNC VOLT", None), (":SOUR:VOLT:RANG 2", None), (":SOUR:VOLT:ILIM 0.0005", None),
        (':SENS:FUNC "CURR"', None), (":SENS:CURR:RANG:AUTO ON", None),
        (":SENS:CURR:NPLC 1", None), OK_SMU,
        (":OUTP ON", None), OK_SMU,
        (":SOUR:VOLT 0", None), (":OUTP OFF", None), OK_SMU,        # before separation
        (":SOUR:VOLT 0", None), (":OUTP OFF", None), OK_SMU,        # safe_state on exit
        (":OUTP?", "0"),                                            # ... verified
    ]  # fmt: skip
    scripts[AWG_R] += [("OUTP1 OFF", None), OK_AWG, ("OUTP1 OFF", None), OK_AWG, ("OUTP1?", "0")]
    scripts[PROBER_R] += [("MoveChuckSeparation", "0:"), ("ReadChuckStatus", "0: S 1 0")]
    rm = FakeResourceManager(scripts)
    with open_bench(path, resource_manager=rm) as bench:
        bench.prober.step_to(1, 0, 1)
        assert bench.guard.device_kind == "rram"
        with pytest.raises(EnvelopeError, match=r"max_current_a=0.001.*rram"):
            bench.smu.configure_voltage_source(2.0, 5e-3)
        bench.prober.contact()
        bench.smu.configure_voltage_source(2.0, 5e-4)
        bench.smu.output_enabled = True
        bench.prober.separate()
    for name, resource in rm.opened.items():
        assert resource.index == len(resource.pairs), name
        assert resource.closed


def test_bench_ends_safe_after_an_error_and_reraises_it(tmp_path):
    path = write_station(tmp_path, STATION)
    scripts = {k: list(v) for k, v in SCRIPTS_CONNECT.items()}
    scripts[SMU_R] += [(":READ?", visa_timeout()), (":SOUR:VOLT 0", None), (":OUTP OFF", None)]
    scripts[SMU_R] += [OK_SMU, (":OUTP?", "0")]
    scripts[AWG_R] += [("OUTP1 OFF", None), OK_AWG, ("OUTP1?", "0")]
    scripts[PROBER_R] += [("MoveChuckSeparation", "0:"), ("ReadChuckStatus", "0: S 1 0")]
    rm = FakeResourceManager(scripts)
    with pytest.raises(InstrumentTimeout), open_bench(path, resource_manager=rm) as bench:
        bench.smu.measure_current_a()
    for name, resource in rm.opened.items():
        assert resource.index == len(resource.pairs), name


def test_safe_state_tries_every_instrument_and_reports_failures(tmp_path):
    path = write_station(tmp_path, STATION)
    scripts = {k: list(v) for k, v in SCRIPTS_CONNECT.items()}
    scripts[SMU_R] += [(":SOUR:VOLT 0", None), (":OUTP OFF", None), (":SYST:ERR?", visa_timeout())]
    scripts[SMU_R] += [(":OUTP?", visa_timeout())]  # cannot confirm: reported
    scripts[AWG_R] += [("OUTP1 OFF", None), (*OK_AWG[:1], '-221,"Settings conflict"')]
    scripts[AWG_R] += [("SYST:ERR?", '+0,"No error"'), ("OUTP1?", "0")]  # off: safe, warned
    scripts[PROBER_R] += [("MoveChuckSeparation", "0:"), ("ReadChuckStatus", "0: S 1 0")]
    rm = FakeResourceManager(scripts)
    bench = open_bench(path, resource_manager=rm)
    with pytest.raises(InstrumentError, match="bench not left safe: smu") as info, bench:
        pass
    assert "awg" not in str(info.value)  # its shutdown reported an error, but it reads back off
    for name in (AWG_R, PROBER_R):
        assert rm.opened[name].index == len(rm.opened[name].pairs)


def test_ctrl_c_mid_read_leaves_the_bench_safe_and_propagates(tmp_path):
    path = write_station(tmp_path, STATION)
    scripts = {k: list(v) for k, v in SCRIPTS_CONNECT.items()}
    scripts[SMU_R] += [(":READ?", KeyboardInterrupt()), (":SOUR:VOLT 0", None)]
    scripts[SMU_R] += [(":OUTP OFF", None), OK_SMU, (":OUTP?", "0")]
    scripts[AWG_R] += [("OUTP1 OFF", None), OK_AWG, ("OUTP1?", "0")]
    scripts[PROBER_R] += [("MoveChuckSeparation", "0:"), ("ReadChuckStatus", "0: S 1 0")]
    rm = FakeResourceManager(scripts)
    with pytest.raises(KeyboardInterrupt), open_bench(path, resource_manager=rm) as bench:
        bench.smu.measure_current_a()
    for name, resource in rm.opened.items():
        assert resource.index == len(resource.pairs), name


def test_safe_state_reconnects_an_instrument_whose_link_dropped(tmp_path):
    path = write_station(tmp_path, STATION)
    scripts = {k: list(v) for k, v in SCRIPTS_CONNECT.items()}
    scripts[SMU_R] += [(":READ?", ConnectionResetError(104, "Connection reset by peer"))]
    scripts[AWG_R] += [("OUTP1 OFF", None), OK_AWG, ("OUTP1?", "0")]
    scripts[PROBER_R] += [("MoveChuckSeparation", "0:"), ("ReadChuckStatus", "0: S 1 0")]
    reconnect = [*SCRIPTS_CONNECT[SMU_R], (":SOUR:VOLT 0", None), (":OUTP OFF", None), OK_SMU]
    reconnect += [(":OUTP?", "0")]
    rm = FakeResourceManager(scripts, reconnects={SMU_R: reconnect})
    with pytest.raises(ConnectionLost), open_bench(path, resource_manager=rm) as bench:
        bench.smu.measure_current_a()
    assert rm.reopened[SMU_R].index == len(reconnect)  # the new link shut the SMU down


def test_an_unreachable_instrument_is_connection_lost_and_nothing_stays_open(tmp_path):
    path = write_station(tmp_path, STATION)
    rm = FakeResourceManager({SMU_R: SCRIPTS_CONNECT[SMU_R], AWG_R: SCRIPTS_CONNECT[AWG_R]})
    with pytest.raises(ConnectionLost, match=r"cannot open TCPIP::prober\.test"):
        open_bench(path, resource_manager=rm)
    assert all(resource.closed for resource in rm.opened.values())


def test_bench_snapshot_names_every_instrument(tmp_path):
    path = write_station(tmp_path, STATION, wiring={"tia_gain_v_per_a": 1e4})
    scripts = {k: list(v) for k, v in SCRIPTS_CONNECT.items()}
    rm = FakeResourceManager(scripts)
    bench = open_bench(path, resource_manager=rm)
    snap = bench.snapshot()
    assert snap["smu"]["model"] == "keithley2450" and snap["prober"]["idn"] == "Velox 3.3.0.10"
    assert snap["clock"]["model"] == "wall" and snap["wiring"]["tia_gain_v_per_a"] == 1e4
    bench.close()
