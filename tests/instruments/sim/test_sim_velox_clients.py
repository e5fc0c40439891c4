"""The simulated Velox driven by PyMeasure's ``formfactor.Velox`` driver (PyMeasure >= 0.16;
QCoDeS has no Velox driver) through pyvisa-py, and with the command strings of FormFactor's SCI
documentation: identity, map stepping, index queries and moves, chuck XY moves and heights.
Each test checks which device the needles touch on the virtual bench."""

from __future__ import annotations

import pytest


@pytest.fixture
def pymeasure_prober(sim_lab):
    from pymeasure.adapters import VISAAdapter
    from pymeasure.instruments.formfactor.velox import Velox

    adapter = VISAAdapter(
        sim_lab.resource("prober"), visa_library="@py", read_termination="\n",
        write_termination="\n", timeout=5000,
    )  # fmt: skip
    prober = Velox(adapter)
    yield prober
    adapter.close()


def _touched(lab) -> tuple[int, int, int] | None:
    device = lab.bench.device_under_needles()
    return None if device is None else (device.truth.col, device.truth.row, device.truth.site)


def test_pymeasure_identifies_steps_the_map_and_moves_by_index(sim_lab, pymeasure_prober):
    prober = pymeasure_prober
    n_sites = len(sim_lab.truth.sites)
    assert prober.id == "FormFactor GmbH,Velox,0,3.3.0.10"
    assert prober.version == "3.3.0.10"
    assert prober.wafermap.enabled is True
    first = prober.wafermap.step_first_die()
    assert first == [*sim_lab.wafer.dies[0], 0, n_sites]
    prober.chuck.move_contact()
    assert _touched(sim_lab) == (*sim_lab.wafer.dies[0], 0)  # the needles are on site 0
    prober.chuck.move_separation()
    second = prober.wafermap.step_next_die()
    assert second[:2] == list(sim_lab.wafer.dies[1]) and not prober.wafermap.end_reached
    width_um = sim_lab.truth.wafer.die_width_um
    assert prober.chuck.index == [width_um, sim_lab.truth.wafer.die_height_um]
    prober.chuck.move_index(1, 0, "diehome")  # one die to the right of die 1's site 0
    prober.chuck.move_align()
    assert prober.ask("ReadChuckStatus").split()[6] == "A"
    prober.chuck.move_contact()
    col, row = sim_lab.wafer.dies[1]
    expected = (col + 1, row, 0) if sim_lab.wafer.die_index(col + 1, row) is not None else None
    assert _touched(sim_lab) == expected
    prober.chuck.move_separation()
    prober.chuck.index = (width_um / 2, 1000.0)  # SetChuckIndex ... Y; ReadChuckIndex Y
    assert prober.chuck.index == [width_um / 2, 1000.0]
    for _ in range(len(sim_lab.wafer.dies)):
        prober.wafermap.step_next_die()
    assert prober.wafermap.end_reached  # 703 "End of wafer" is a status for PyMeasure
    # the SCI has no error queue: every reply carries its code, and PyMeasure raises on any but
    # 703, so reaching here means every other reply was "0:"; the sim queued nothing either
    assert prober.error_code == 703 and not sim_lab.servers["prober"].error_queue


def test_chuck_moves_in_microns_put_the_needles_on_a_pad_or_between_pads(
    sim_lab, visa_open
) -> None:
    prober = visa_open(sim_lab.resource("prober"))
    die = sim_lab.wafer.dies[5]
    x_um, y_um = sim_lab.wafer.die_position_um(*die)
    site = sim_lab.truth.sites[2]
    assert prober.query(f"MoveChuck {x_um + site.x_um} {y_um + site.y_um} C Y 100") == "0:"
    assert prober.query("MoveChuckContact 50") == "0:"
    assert _touched(sim_lab) == (*die, 2)
    assert prober.query("MoveChuck 0 0 R Y").startswith("711:")  # not while in contact
    assert prober.query("ReadChuckPosition Y C") == (
        f"0: {x_um + site.x_um:.1f} {y_um + site.y_um:.1f} 0.0"
    )
    assert prober.query("MoveChuckSeparation") == "0:"
    assert prober.query("ReadChuckPosition Y R").split()[1:] == ["0.0", "0.0", "-300.0"]
    assert prober.query("MoveChuck 100 0 R Y") == "0:"  # 100 um off the pad
    prober.query("MoveChuckContact")
    assert _touched(sim_lab) is None  # needles down between the pads: nothing connected
    assert prober.query("ReadMapPosition").split()[1:3] == [str(die[0]), str(die[1])]
    prober.query("MoveChuckSeparation")
    assert prober.query("MoveChuckIndex 0 0 H") == "0:"
    assert prober.query("ReadChuckPosition Y H D").split()[1:3] == ["0.0", "0.0"]
    assert prober.query("MoveChuck 1 0 H X") == "0:"  # one index step in X from home
    prober.query("MoveChuckContact")
    home = sim_lab.wafer.dies[0]
    right = (home[0] + 1, home[1])
    assert _touched(sim_lab) == (
        (*right, 0) if sim_lab.wafer.die_index(*right) is not None else None
    )


@pytest.mark.parametrize(
    ("command", "code"),
    [("MoveChuck 1", 5), ("MoveChuck 1 2 Q", 5), ("MoveChuck 1 2 H J", 5),
     ("MoveChuckIndex 1.5 2", 5), ("SetChuckIndex -1 5", 5), ("StepNextDie 999 999 0", 704),
     ("Bogus", 2)],
)  # fmt: skip
def test_refused_prober_commands_carry_their_code(sim_lab, visa_open, command, code) -> None:
    prober = visa_open(sim_lab.resource("prober"))
    assert prober.query(command).startswith(f"{code}:")
