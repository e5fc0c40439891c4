"""Simulated FormFactor Velox probe station, its remote command set (one command per line).

Every command gets one reply ``<errcode>: <data>``; ``0:`` is success. The wafer map comes from
the virtual wafer: dies by (column, row) in row-major order from the top-left, sites (sub-dies)
counted from 0. Stepping moves the chuck under the needles (site 0 of a die after
``StepFirstDie``/``StepNextDie`` without arguments); stepping while in contact is refused by
the prober (move to separation first), as is stepping past the last die (code 703).
"""

from __future__ import annotations

from dataclasses import dataclass

from instruments.sim.server import LineServer

KERNEL_VERSION = "Velox 3.3.0.10"
ERR_UNKNOWN = 2
ERR_BAD_ARGUMENT = 5
ERR_IN_CONTACT = 711
ERR_END_OF_WAFER = 703
ERR_NOT_ON_MAP = 704


@dataclass
class ProberState:
    """Where the chuck is: a die index in the map, a site, contact or separation."""

    die_index: int | None = None
    site: int = 0
    contact: bool = False


class ProberRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class VeloxServer(LineServer):
    """The Velox command set over a socket."""

    role = "prober"

    def __init__(self, bench, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bench = bench
        self.state = ProberState()

    def handle(self, text: str, block: bytes | None) -> str:
        words = text.split()
        name = words[0] if words else ""
        method = getattr(self, f"_cmd_{name.lower()}", None)
        if method is None:
            return f"{ERR_UNKNOWN}: Unknown command {name}"
        try:
            data = method(words[1:])
        except ProberRefused as exc:
            return f"{exc.code}: {exc.message}"
        return f"0: {data}" if data else "0:"

    # ----- identity ----------------------------------------------------------------------------

    def _cmd_reportkernelversion(self, args: list[str]) -> str:
        return KERNEL_VERSION

    # ----- stepping ----------------------------------------------------------------------------

    def _position(self) -> str:
        col, row = self.bench.wafer.dies[self.state.die_index]
        return f"{col} {row} {self.state.site}"

    def _require_separation(self) -> None:
        if self.state.contact:
            raise ProberRefused(ERR_IN_CONTACT, "Chuck is in contact; move to separation first")

    def _cmd_stepfirstdie(self, args: list[str]) -> str:
        self._require_separation()
        self.state.die_index = 0
        self.state.site = 0
        self.bench.prober_changed()
        return self._position()

    def _cmd_stepnextdie(self, args: list[str]) -> str:
        self._require_separation()
        wafer = self.bench.wafer
        if args:
            try:
                col, row, site = (int(v) for v in args[:3])
            except ValueError:
                raise ProberRefused(ERR_BAD_ARGUMENT, "Expected: column row site") from None
            index = wafer.die_index(col, row)
            if index is None or not 0 <= site < wafer.n_sites:
                raise ProberRefused(ERR_NOT_ON_MAP, f"Die {col} {row} site {site} not on map")
            self.state.die_index, self.state.site = index, site
        else:
            current = -1 if self.state.die_index is None else self.state.die_index
            if current + 1 >= len(wafer.dies):
                raise ProberRefused(ERR_END_OF_WAFER, "End of wafer")
            self.state.die_index, self.state.site = current + 1, 0
        self.bench.prober_changed()
        return self._position()

    def _cmd_readmapposition(self, args: list[str]) -> str:
        if self.state.die_index is None:
            raise ProberRefused(ERR_NOT_ON_MAP, "No die selected; step to a die first")
        col, row = self.bench.wafer.dies[self.state.die_index]
        x_um, y_um = self.bench.wafer.die_position_um(col, row)
        site_spec = self.bench.wafer.truth.sites[self.state.site]
        x_um += site_spec.x_um
        y_um += site_spec.y_um
        return f"{col} {row} {x_um:.1f} {y_um:.1f} {self.state.site}"

    # ----- chuck -------------------------------------------------------------------------------

    def _cmd_movechuckcontact(self, args: list[str]) -> str:
        if self.state.die_index is None:
            raise ProberRefused(ERR_NOT_ON_MAP, "No die selected; step to a die first")
        self.state.contact = True
        self.bench.prober_changed()
        return ""

    def _cmd_movechuckseparation(self, args: list[str]) -> str:
        self.state.contact = False
        self.bench.prober_changed()
        return ""

    def _cmd_readchuckstatus(self, args: list[str]) -> str:
        height = "C" if self.state.contact else "S"
        return f"{height} 1 0"
