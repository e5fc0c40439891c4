"""``SimLab``: the whole simulated lab on free loopback ports, as a context manager.

>>> with SimLab.start(truth=None, seed=1234) as lab:       # None: the default truth file
...     station = lab.station()                            # the station dict drivers read
...     lab.write_station("station.yaml")
...     lab.records("smu")                                 # every command the SMU received
...     lab.truth_for((3, 0), 1)                           # what calibration must recover
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import yaml

from instruments.sim.array_tester import ArrayTesterServer
from instruments.sim.bench import BurstRecord, VirtualBench, Wiring
from instruments.sim.clock import ClockServer, VirtualClock
from instruments.sim.faults import FaultConfig, FaultInjector
from instruments.sim.infiniivision import InfiniiVisionServer
from instruments.sim.keithley2450 import Keithley2450Server
from instruments.sim.keysight33500b import Keysight33500BServer
from instruments.sim.server import CommandRecord, LineServer
from instruments.sim.switch_matrix import SwitchMatrixServer
from instruments.sim.velox import VeloxServer
from instruments.sim.wafer import DeviceTruth, SimDevice, Truth, Wafer

log = logging.getLogger(__name__)

ROLES = ("smu", "awg", "scope", "prober", "clock", "array_tester", "switch_matrix")
MODELS = {
    "smu": "keithley2450",
    "awg": "keysight33500b",
    "scope": "infiniivision",
    "prober": "velox",
    "clock": "sim-clock",
    "array_tester": "array-tester",
    "switch_matrix": "keithley707b",
}


class SimLab:
    """Every simulated instrument, one virtual bench, one wafer, one clock, one fault injector."""

    def __init__(
        self,
        truth: Truth,
        seed: int,
        faults: FaultConfig | None = None,
        wiring: Wiring | None = None,
    ) -> None:
        self.truth = truth
        self.seed = int(seed)
        self.wafer = Wafer(truth, self.seed)
        self.clock = VirtualClock()
        self.faults = FaultInjector(faults)
        self.bench = VirtualBench(self.wafer, self.clock, self.faults, wiring)
        self.lock = threading.RLock()
        common = (self.lock, self.clock.now_s, self.faults)
        self.servers: dict[str, LineServer] = {
            "smu": Keithley2450Server(self.bench, *common),
            "awg": Keysight33500BServer(self.bench, *common),
            "scope": InfiniiVisionServer(self.bench, *common),
            "prober": VeloxServer(self.bench, *common),
            "clock": ClockServer(self.clock, *common),
            "array_tester": ArrayTesterServer(self.bench, *common),
            "switch_matrix": SwitchMatrixServer(self.bench, *common),
        }
        self.bench.switch_matrix = self.servers["switch_matrix"]
        self.bench.smu = self.servers["smu"]
        self.bench.awg = self.servers["awg"]
        self.bench.scope = self.servers["scope"]
        self.bench.prober = self.servers["prober"]
        self._running = False

    @classmethod
    def start(
        cls,
        truth: str | Path | dict[str, Any] | Truth | None = None,
        seed: int = 0,
        faults: str | Path | dict[str, Any] | FaultConfig | None = None,
        wiring: Wiring | None = None,
        ports: dict[str, int] | None = None,
    ) -> SimLab:
        """Build the lab from a truth (path, dict, Truth; None = the shipped default) and a
        seed, and start every server on 127.0.0.1 (free ports unless ``ports`` names them)."""
        if isinstance(faults, str | Path):
            faults = FaultConfig.from_file(faults)
        elif isinstance(faults, dict):
            faults = FaultConfig.model_validate(faults)
        lab = cls(Truth.load(truth), seed, faults, wiring)
        try:
            for role, server in lab.servers.items():
                server.start((ports or {}).get(role, 0))
        except OSError:
            lab.stop()
            raise
        lab._running = True
        log.info("sim lab up: %s", lab.ports())
        return lab

    def __enter__(self) -> SimLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Close every server and connection; safe to call twice."""
        for server in self.servers.values():
            server.request_stop()
        for server in self.servers.values():
            server.stop()
        self._running = False

    # ----- what the rest of bruno-lab reads ----------------------------------------------------

    def ports(self) -> dict[str, int]:
        return {role: server.port for role, server in self.servers.items()}

    def resource(self, role: str) -> str:
        """The VISA resource string of one role, as hardware would have it."""
        return f"TCPIP::127.0.0.1::{self.servers[role].port}::SOCKET"

    def station(self) -> dict[str, Any]:
        """The station dict (the station file's content) for this lab."""
        return {
            "station": "sim-bench",
            "instruments": {
                role: {"model": MODELS[role], "resource": self.resource(role)} for role in ROLES
            },
            "wiring": self.bench.wiring.station_section(),
            "wafer": self.wafer.station_summary(),
        }

    def write_station(self, path: str | Path) -> Path:
        """Write the station file (YAML); returns its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(yaml.safe_dump(self.station(), sort_keys=False))
        tmp.replace(path)
        return path

    # ----- what tests may ask (the truth never leaves the sim otherwise) ----------------------

    def records(self, role: str) -> list[CommandRecord]:
        """Every command ``role`` received, in order, with timestamps, reply and fault."""
        return self.servers[role].records()

    def commands(self, role: str) -> list[str]:
        """The text of every command ``role`` received (binary blocks as ``#<n bytes>``)."""
        return [record.text for record in self.records(role)]

    def clear_records(self) -> None:
        for server in self.servers.values():
            server.clear_records()

    def truth_for(self, die: tuple[int, int] | int, site: int) -> DeviceTruth:
        """The drawn truth of the device at ``die`` ((col, row) or map index) and ``site``."""
        return self.device(die, site).truth

    def device(self, die: tuple[int, int] | int, site: int) -> SimDevice:
        """The live simulated device (truth and physical state)."""
        col, row = self.wafer.dies[die] if isinstance(die, int) else die
        with self.lock:
            return self.wafer.device(col, row, site)

    def last_burst(self) -> BurstRecord | None:
        """The truth of the last AWG burst: device voltage, current and polarization traces."""
        with self.lock:
            return self.bench.bursts[-1] if self.bench.bursts else None

    def bursts(self) -> list[BurstRecord]:
        """The truth of the last (up to 8) bursts, oldest first."""
        with self.lock:
            return list(self.bench.bursts)
