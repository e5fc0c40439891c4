"""Plan files: units, validation errors that name file, line, field and allowed values."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bruno_lab.errors import PlanError
from protocols.plan import load_plan, parse_plan
from protocols.schedule import build_schedule, measurement_key, summarize
from protocols.wafer import DieRef, SiteRef, WaferMap, wafer_map_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "protocols" / "examples" / "wafer_baseline.yaml"

WAFER = WaferMap(
    "W1",
    tuple(DieRef(c, r, f"{c},{r}") for r in range(3) for c in range(4)),
    (
        SiteRef(0, "fecap", {"area_m2": 2.5e-11}),
        SiteRef(1, "rram", {"area_m2": 1e-14}),
        SiteRef(2, "fecap", {"area_m2": 1e-10}),
        SiteRef(3, "felif", {"area_m2": 2.5e-11}),
    ),
)

BASE = """\
name: t
dies: all
protocols:
  - protocol: pund
    params: {amplitude_v: "2.5 V", rise_s: "500 ns"}
  - protocol: pv_loop
    params: {frequencies_hz: ["10 kHz", "1e5 Hz", 300000]}
  - protocol: rram_forming
"""


def test_units_are_converted_to_si_floats() -> None:
    plan = parse_plan(BASE, "p.yaml", WAFER)
    pund = plan.steps[0].params
    assert pund.amplitude_v == pytest.approx(2.5)
    assert pund.rise_s == pytest.approx(5e-7)
    rows = plan.steps[1].rows()
    assert [r.frequency_hz for r in rows] == pytest.approx([1e4, 1e5, 3e5])
    assert rows[0].as_record()["frequency_hz"] == pytest.approx(1e4)


def test_schedule_order_and_keys() -> None:
    plan = parse_plan(BASE, "p.yaml", WAFER)
    schedule = build_schedule(plan, WAFER)
    # per die: 2 fecap sites x (1 pund + 3 pv_loop) + 1 rram site x 1 forming; felif unused
    assert len(schedule) == 12 * (2 * 4 + 1)
    keys = [p.key for p in schedule]
    assert len(set(keys)) == len(keys)
    assert keys[:5] == ["0,0/0/pund/0", "0,0/0/pv_loop/0", "0,0/0/pv_loop/1", "0,0/0/pv_loop/2",
                        "0,0/1/rram_forming/0"]  # fmt: skip
    assert measurement_key(schedule[0].device, "pund", 0) == keys[0]
    dies = [p.device.die_label for p in schedule]
    assert dies == sorted(dies, key=lambda d: (int(d.split(",")[1]), int(d.split(",")[0])))
    summary = summarize(schedule)
    assert summary["n_dies"] == 12 and summary["n_devices"] == 36
    assert summary["per_protocol"] == {"pund": 24, "pv_loop": 72, "rram_forming": 12}
    assert summary["estimated_duration_s"] > 0


def test_die_list_pattern_and_site_selection() -> None:
    text = BASE.replace("dies: all", 'dies: [[1, 2], "0,0", "3,1"]') + "sites: {fecap: [2]}\n"
    plan = parse_plan(text, "p.yaml", WAFER)
    schedule = build_schedule(plan, WAFER)
    assert {p.device.die_label for p in schedule} == {"1,2", "0,0", "3,1"}
    assert {p.device.site for p in schedule if p.device.kind == "fecap"} == {2}
    # wafer-map order, whatever order the plan lists them in
    assert schedule[0].device.die_label == "0,0"
    pattern = parse_plan(BASE.replace("dies: all", 'dies: {pattern: "*,1"}'), "p.yaml", WAFER)
    assert {d.label for d in pattern.select_dies(WAFER)} == {"0,1", "1,1", "2,1", "3,1"}


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('amplitude_v: "2.5 V"', 'amplitude_v: "2.5 s"', r"p\.yaml:5: protocols\[0\]\.params\.amplitude_v: .*V is expected"),  # noqa: E501
        ("protocol: rram_forming", "protocol: rram_formin", r"p\.yaml:8: protocols\[2\]\.protocol: unknown protocol .*allowed values: pund, pv_loop"),  # noqa: E501
        ('rise_s: "500 ns"', 'rise: "500 ns"', r"(?s)p\.yaml:5: protocols\[0\]\.params\.rise: unknown field.*takes: .*rise_s"),  # noqa: E501
        ("dies: all", "dies: [[9, 9]]", r"p\.yaml:2: dies\[0\]: \[9, 9\]: no such die"),
        ("dies: all", 'dies: {pattern: "x*"}', r"p\.yaml:2: dies\.pattern: 'x\*' matches no die"),
        ("name: t", "name: t\nsites: {rram: [0]}", r"sites\.rram: site 0 is not a rram site.*\[1\]"),  # noqa: E501
        ("name: t", "name: t\nsites: {cmos: [0]}", r"p\.yaml:2: sites\.cmos.*allowed values"),
        ("name: t", "name: t\nbogus: 1", r"p\.yaml:2: bogus: unknown field"),
        ("    params: {frequencies_hz", "    kinds: [rram]\n    params: {frequencies_hz", r"p\.yaml:7: protocols\[1\]\.kinds: .*allowed values: \['fecap'\]"),  # noqa: E501
        ("dies: all", "dies: [oops", r"p\.yaml:\d+: malformed YAML"),
    ],
)  # fmt: skip
def test_bad_plans_name_file_line_field(old: str, new: str, expected: str) -> None:
    assert old in BASE
    with pytest.raises(PlanError, match=expected):
        parse_plan(BASE.replace(old, new, 1), "p.yaml", WAFER)


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="cannot read plan"):
        load_plan(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(PlanError, match=r"list\.yaml: a plan is a YAML mapping"):
        load_plan(tmp_path / "list.yaml")


def test_plan_hash_ignores_formatting_but_not_content() -> None:
    a = parse_plan(BASE, "a.yaml")
    b = parse_plan(textwrap.dedent(BASE) + "\n# a comment\n", "b.yaml")
    c = parse_plan(BASE.replace("2.5 V", "2.6 V"), "c.yaml")
    assert a.sha256 == b.sha256 != c.sha256


def test_example_plan_is_valid_on_a_station_wafer_section() -> None:
    section = {
        "name": "sim-wafer-default",
        "dies": [[c, r] for r in range(5) for c in range(5)],
        "sites": [
            {"site": 0, "kind": "fecap", "area_m2": 2.5e-11},
            {"site": 1, "kind": "fecap", "area_m2": 1e-10},
            {"site": 2, "kind": "rram", "area_m2": 1e-14},
            {"site": 3, "kind": "felif", "area_m2": 2.5e-11},
        ],
    }
    wafer = wafer_map_from_dict(section)
    assert wafer.sites[2].geometry == {"area_m2": 1e-14}
    plan = load_plan(EXAMPLE, wafer)
    schedule = build_schedule(plan, wafer)
    assert {p.protocol for p in schedule} == {
        "pund",
        "pv_loop",
        "rram_forming",
        "rram_program_verify",
        "felif_response",
    }
    assert {p.device.site for p in schedule} == {0, 2, 3}  # FeCap site 1 is not in the plan
