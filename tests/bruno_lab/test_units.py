import pytest

from bruno_lab.errors import UnitError
from bruno_lab.units import parse_quantity


@pytest.mark.parametrize(
    ("text", "unit", "expected"),
    [
        ("1.5 V", "V", 1.5),
        ("100 ns", "s", 100e-9),
        ("10 uA", "A", 10e-6),
        ("10 µA", "A", 10e-6),
        ("22 uS", "S", 22e-6),
        ("25 um**2", "m**2", 25e-12),
        (3.0, "V", 3.0),
        ("2 mV", "V", 2e-3),
        ("-1.3", "V", -1.3),
        ("1e-9", "s", 1e-9),
    ],
)
def test_parse_quantity_converts_to_si(text, unit, expected):
    assert parse_quantity(text, unit) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("text", "unit"), [("1.5 A", "V"), ("fast", "s"), ("3 m", "s")])
def test_parse_quantity_rejects_wrong_unit_and_names_field(text, unit):
    with pytest.raises(UnitError, match=r"plan\.amplitude"):
        parse_quantity(text, unit, where="plan.amplitude")
