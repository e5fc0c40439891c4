"""Simulated FormFactor Velox probe station: its remote command interface (SCI), one command a line.

Followed: the Velox SCI command set as FormFactor's ``veloxsci`` module documents it
(``commands.info.xml``: arguments, defaults and response fields of ``ReportKernelVersion``,
``StepFirstDie``, ``StepNextDie``, ``ReadMapPosition``, ``MoveChuck``, ``MoveChuckIndex``,
``MoveChuckContact``/``Align``/``Separation``, ``ReadChuckIndex``/``SetChuckIndex``,
``ReadChuckPosition``, ``ReadChuckStatus``) and PyMeasure's ``formfactor.Velox`` driver (``*IDN?``
answers without the ``0:`` code; ``ReportSoftwareVersion``; ``IsAppRegistered WaferMap``).
Every other command gets one reply ``<errcode>: <data>``; ``0:`` is success.

The chuck moves the wafer under fixed needles: its X, Y position (µm, from the wafer centre,
y up) is the wafer point under the needles; Z is 0 at contact, -100 µm at align and -300 µm at
separation height. The device touched in contact is the site whose pad lies within
``PAD_TOLERANCE_UM`` of that point (none between pads). References: ``C`` centre and ``Z``
zero are the wafer centre, ``H`` home is the first die of the map, ``D`` die home is the die of
the last step or index move, ``R`` relative to the present position. Index steps are the die
pitch (``SetChuckIndex`` changes it); +X steps to the next column, +Y to the next row. Dies are
by (column, row) in row-major order from the top-left, sites (sub-dies) counted from 0. Moving
or stepping in contact is refused (code 711); stepping past the last die is code 703.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from instruments.sim.server import LineServer

KERNEL_VERSION = "Velox 3.3.0.10"
SOFTWARE_VERSION = "3.3.0.10"
IDN = "FormFactor GmbH,Velox,0,3.3.0.10"
ERR_UNKNOWN = 2
ERR_BAD_ARGUMENT = 5
ERR_IN_CONTACT = 711
ERR_END_OF_WAFER = 703
ERR_NOT_ON_MAP = 704
PAD_TOLERANCE_UM = 25.0
Z_UM = {"C": 0.0, "A": -100.0, "S": -300.0}
UNITS_UM = {"Y": 1.0, "I": 25.4}  # microns, mils; X (index) is the die pitch
REGISTERED_APPS = ("WaferMap",)


@dataclass
class ProberState:
    """Where the chuck is: XY (µm from the wafer centre), height, the die and site touched."""

    die_index: int | None = None
    site: int | None = 0
    contact: bool = False
    height: str = "S"
    x_um: float = 0.0
    y_um: float = 0.0
    index_x_um: float = 0.0
    index_y_um: float = 0.0
    die_home_um: tuple[float, float] = (0.0, 0.0)


class ProberRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VeloxCommand:
    """One SCI command the sim understands (``docs/sim-commands.md`` lists these)."""

    name: str
    method: str
    arguments: str
    reply: str
    doc: str


VELOX_COMMANDS: tuple[VeloxCommand, ...] = (
    VeloxCommand("*IDN?", "_idn", "", "identity (no code)", "Identity, without the 0: prefix."),
    VeloxCommand("ReportKernelVersion", "_kernel", "[Module]", "Version Description", ""),
    VeloxCommand("ReportSoftwareVersion", "_software", "", "Version", "Main software version."),
    VeloxCommand("IsAppRegistered", "_registered", "AppName", "1\\|0", "WaferMap is loaded."),
    VeloxCommand("StepFirstDie", "_step_first", "[ClearBins] [RecalcRoute]",
                 "Column Row Site NumSites", "First die of the map, site 0."),
    VeloxCommand("StepNextDie", "_step_next", "[Column Row Site]", "Column Row Site NumSites",
                 "Next die of the map (703 at the end), or the die and site given."),
    VeloxCommand("ReadMapPosition", "_map_position", "[Pos] [FromPos]",
                 "Column Row XFromHome YFromHome Site", "Die, chuck position (µm), site."),
    VeloxCommand("MoveChuckContact", "_contact", "[Velocity]", "", "Needles down on the pad."),
    VeloxCommand("MoveChuckAlign", "_align", "[Velocity]", "", "Align height (no contact)."),
    VeloxCommand("MoveChuckSeparation", "_separation", "[Velocity]", "", "Needles up."),
    VeloxCommand("MoveChuck", "_move", "X Y [PosRef H\\|Z\\|C\\|R\\|D] [Unit Y\\|I\\|X] "
                 "[Velocity] [Comp]", "", "Move to X, Y (refused in contact)."),
    VeloxCommand("MoveChuckIndex", "_move_index", "XSteps YSteps [PosRef] [Velocity]", "",
                 "Move by index steps; sets the die home."),
    VeloxCommand("ReadChuckIndex", "_read_index", "[Unit]", "IndexX IndexY", "Die pitch, µm."),
    VeloxCommand("SetChuckIndex", "_set_index", "IndexX IndexY [Unit]", "", "Index step, µm."),
    VeloxCommand("ReadChuckPosition", "_read_position", "[Unit] [PosRef] [Comp]", "X Y Z",
                 "Chuck position, µm; Z 0 at contact."),
    VeloxCommand("ReadChuckStatus", "_status", "", "FlagsInit FlagsMode FlagsLimit FlagsMoving "
                 "Comp IsVacuumOn PresetHeight LoadPos IsLiftDown CameraConnection IsQuiet",
                 "PresetHeight: C contact, A align, S separation."),
)  # fmt: skip


class VeloxServer(LineServer):
    """The Velox command set over a socket."""

    role = "prober"

    def __init__(self, bench: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bench = bench
        self.state = ProberState()
        geometry = bench.wafer.truth.wafer
        self.state.index_x_um, self.state.index_y_um = geometry.die_width_um, geometry.die_height_um
        self._commands: dict[str, Callable[[list[str]], str]] = {
            c.name.lower(): getattr(self, c.method) for c in VELOX_COMMANDS
        }

    def handle(self, text: str, block: bytes | None) -> str:
        words = text.split()
        name = words[0] if words else ""
        method = self._commands.get(name.lower())
        if method is None:
            return f"{ERR_UNKNOWN}: Unknown command {name}"
        try:
            data = method(words[1:])
        except ProberRefused as exc:
            return f"{exc.code}: {exc.message}"
        if name == "*IDN?":
            return data
        return f"0: {data}" if data else "0:"

    # ----- identity -----------------------------------------------------------------------------

    def _idn(self, args: list[str]) -> str:
        return IDN

    def _kernel(self, args: list[str]) -> str:
        return KERNEL_VERSION

    def _software(self, args: list[str]) -> str:
        return SOFTWARE_VERSION

    def _registered(self, args: list[str]) -> str:
        return "1" if args and args[0] in REGISTERED_APPS else "0"

    # ----- where the needles are ----------------------------------------------------------------

    def _pad_um(self, die_index: int, site: int) -> tuple[float, float]:
        wafer = self.bench.wafer
        x_um, y_um = wafer.die_position_um(*wafer.dies[die_index])
        spec = wafer.truth.sites[site]
        return x_um + spec.x_um, y_um + spec.y_um

    def _place(self, x_um: float, y_um: float) -> None:
        """Put the wafer point (x, y) under the needles; find the die and the pad there."""
        st = self.state
        st.x_um, st.y_um = x_um, y_um
        wafer = self.bench.wafer
        geometry = wafer.truth.wafer
        col = round(x_um / geometry.die_width_um + (wafer.n_cols - 1) / 2.0)
        row = round((wafer.n_rows - 1) / 2.0 - y_um / geometry.die_height_um)
        st.die_index = wafer.die_index(col, row)
        st.site = None
        if st.die_index is not None:
            for site in range(wafer.n_sites):
                px, py = self._pad_um(st.die_index, site)
                if abs(px - x_um) <= PAD_TOLERANCE_UM and abs(py - y_um) <= PAD_TOLERANCE_UM:
                    st.site = site
        self.bench.prober_changed()

    def _go_to_site(self, die_index: int, site: int) -> str:
        st = self.state
        self._place(*self._pad_um(die_index, site))
        st.die_index, st.site = die_index, site
        st.die_home_um = self._pad_um(die_index, 0)
        col, row = self.bench.wafer.dies[die_index]
        return f"{col} {row} {site} {self.bench.wafer.n_sites}"

    def _require_separation(self) -> None:
        if self.state.contact:
            raise ProberRefused(ERR_IN_CONTACT, "Chuck is in contact; move to separation first")

    # ----- stepping the wafer map ---------------------------------------------------------------

    def _step_first(self, args: list[str]) -> str:
        self._require_separation()
        return self._go_to_site(0, 0)

    def _step_next(self, args: list[str]) -> str:
        self._require_separation()
        wafer = self.bench.wafer
        if args:
            try:
                col, row = int(args[0]), int(args[1]) if len(args) > 1 else None
                site = int(args[2]) if len(args) > 2 else 0
            except ValueError:
                raise ProberRefused(ERR_BAD_ARGUMENT, "Expected: column row site") from None
            index = wafer.die_index(col, row) if row is not None else None
            if index is None or not 0 <= site < wafer.n_sites:
                raise ProberRefused(ERR_NOT_ON_MAP, f"Die {col} {row} site {site} not on map")
            return self._go_to_site(index, site)
        current = -1 if self.state.die_index is None else self.state.die_index
        if current + 1 >= len(wafer.dies):
            raise ProberRefused(ERR_END_OF_WAFER, "End of wafer")
        return self._go_to_site(current + 1, 0)

    def _map_position(self, args: list[str]) -> str:
        st = self.state
        if st.die_index is None:
            raise ProberRefused(ERR_NOT_ON_MAP, "No die selected; step to a die first")
        col, row = self.bench.wafer.dies[st.die_index]
        site = -1 if st.site is None else st.site
        return f"{col} {row} {st.x_um:.1f} {st.y_um:.1f} {site}"

    # ----- chuck height -------------------------------------------------------------------------

    def _contact(self, args: list[str]) -> str:
        st = self.state
        if st.die_index is None:
            raise ProberRefused(ERR_NOT_ON_MAP, "No die selected; step to a die first")
        st.contact, st.height = True, "C"
        self.bench.prober_changed()
        return ""

    def _align(self, args: list[str]) -> str:
        self.state.contact, self.state.height = False, "A"
        self.bench.prober_changed()
        return ""

    def _separation(self, args: list[str]) -> str:
        self.state.contact, self.state.height = False, "S"
        self.bench.prober_changed()
        return ""

    def _status(self, args: list[str]) -> str:
        return f"7 0 0 0 D 1 {self.state.height} N 0 N 0"

    # ----- chuck XY -----------------------------------------------------------------------------

    def _reference_um(self, ref: str) -> tuple[float, float]:
        st = self.state
        ref = ref.upper()
        if ref in ("C", "Z"):
            return 0.0, 0.0
        if ref == "H":
            return self._pad_um(0, 0)
        if ref == "D":
            return st.die_home_um
        if ref == "R":
            return st.x_um, st.y_um
        raise ProberRefused(ERR_BAD_ARGUMENT, f"Unknown position reference {ref}")

    def _numbers(self, args: list[str], n: int, what: str) -> list[float]:
        try:
            return [float(v) for v in args[:n]]
        except ValueError:
            raise ProberRefused(ERR_BAD_ARGUMENT, f"Expected: {what}") from None

    def _move(self, args: list[str]) -> str:
        self._require_separation()
        if len(args) < 2:
            raise ProberRefused(ERR_BAD_ARGUMENT, "Expected: X Y [PosRef] [Unit]")
        x, y = self._numbers(args, 2, "X Y")
        ref_x, ref_y = self._reference_um(args[2] if len(args) > 2 else "H")
        unit = (args[3] if len(args) > 3 else "Y").upper()
        if unit == "X":
            dx, dy = x * self.state.index_x_um, -y * self.state.index_y_um
        elif unit in UNITS_UM:
            dx, dy = x * UNITS_UM[unit], y * UNITS_UM[unit]
        else:
            raise ProberRefused(ERR_BAD_ARGUMENT, f"Unit {unit} is not simulated (Y, I or X)")
        self._place(ref_x + dx, ref_y + dy)
        return ""

    def _move_index(self, args: list[str]) -> str:
        self._require_separation()
        if len(args) < 2:
            raise ProberRefused(ERR_BAD_ARGUMENT, "Expected: XSteps YSteps [PosRef]")
        try:
            steps_x, steps_y = int(args[0]), int(args[1])
        except ValueError:
            raise ProberRefused(ERR_BAD_ARGUMENT, "Index steps are integers") from None
        ref_x, ref_y = self._reference_um(args[2] if len(args) > 2 else "H")
        st = self.state
        self._place(ref_x + steps_x * st.index_x_um, ref_y - steps_y * st.index_y_um)
        st.die_home_um = (st.x_um, st.y_um)
        return ""

    def _read_index(self, args: list[str]) -> str:
        return f"{self.state.index_x_um:.1f} {self.state.index_y_um:.1f}"

    def _set_index(self, args: list[str]) -> str:
        x, y = self._numbers(args, 2, "IndexX IndexY")
        if len(args) < 2 or x <= 0 or y <= 0:
            raise ProberRefused(ERR_BAD_ARGUMENT, "Index must be two positive sizes")
        self.state.index_x_um, self.state.index_y_um = x, y
        return ""

    def _read_position(self, args: list[str]) -> str:
        st = self.state
        unit = (args[0] if args else "Y").upper()
        ref_x, ref_y = self._reference_um(args[1] if len(args) > 1 else "H")
        if unit not in UNITS_UM:
            raise ProberRefused(ERR_BAD_ARGUMENT, f"Unit {unit} is not simulated (Y or I)")
        scale = UNITS_UM[unit]
        z = Z_UM[st.height] / scale
        return f"{(st.x_um - ref_x) / scale:.1f} {(st.y_um - ref_y) / scale:.1f} {z:.1f}"
