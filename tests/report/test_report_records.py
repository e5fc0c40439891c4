"""Training verdicts (chance, flat ln C loss, collapse) and the deployment section's numbers."""

from __future__ import annotations

import math

import pytest

from reporting.records import DeploymentRecord, TrainingRecord, training_verdict


def _hist(acc: float, loss: float, n: int = 6) -> list[dict[str, float]]:
    return [
        {
            "epoch": e + 1,
            "train_loss": loss,
            "test_loss": loss,
            "train_accuracy": acc,
            "test_accuracy": acc,
        }
        for e in range(n)
    ]


def test_chance_level_and_flat_loss_are_called_out() -> None:
    rec = TrainingRecord(_hist(0.5, math.log(2)), n_classes=2, n_test=64)
    v = training_verdict(rec)
    assert v.level == "bad"
    assert "did not learn beyond chance" in v.text and "ln 2 = 0.693" in v.text


def test_a_network_that_learned_is_reported_plainly() -> None:
    v = training_verdict(
        TrainingRecord(_hist(0.9, 0.3), n_classes=2, n_test=64, confusion=[[30, 2], [4, 28]])
    )
    assert v.level == "good" and "90.0 %" in v.text and "chance 50.0 %" in v.text


def test_collapse_onto_one_class() -> None:
    v = training_verdict(
        TrainingRecord(_hist(0.8, 0.4), n_classes=2, n_test=40, confusion=[[32, 0], [8, 0]])
    )
    assert (
        v.level == "bad" and "Collapsed: 100 % of test samples are predicted as class 0" in v.text
    )


def test_deployment_numbers_are_unambiguous() -> None:
    from reporting.sections.deployment import build

    cells = [
        {
            "target_conductance_siemens": 1e-4,
            "reached_conductance_siemens": 1.01e-4,
            "success": k != 7,
        }
        for k in range(36)
    ]
    rec = DeploymentRecord(
        {
            "die": {"label": "2,2"},
            "run_id": 2,
            "cells": cells,
            "settings": {"verify": {"tolerance_siemens": 5e-6}},
        },
        {
            "chip_accuracies": [0.625, 0.609375, 0.625],
            "software_accuracy": 0.5,
            "ideal_accuracy": 0.796875,
            "chance": 0.5,
        },
    )
    s = build(rec)
    notes = [b.text for b in s.blocks if b.kind == "note"]
    assert (
        notes[0] == "35 of 36 cells reached their target within ±5.00 µS of target; 1 missed "
        "(attempts ran out or the cell failed)."
    )
    table = next(b for b in s.blocks if b.kind == "table")
    values = {r[0].text: r[1].text for r in table.rows}
    assert values["on chip: conductances read back"] == "62.0 % ± 0.9 (over 3 read passes)"
    assert values["software (network with cells drawn from the card)"] == "50.0 %"
    assert values["ideal map (every cell at its target)"] == "79.7 %"
    assert "On chip 62.0 % against software 50.0 %: +12.0 points." in notes


def _array_record(n_r: int = 64, n_c: int = 64) -> dict:
    """A deployment onto one 1T1R array as ``protocols.array_deployment`` records it: every
    logical cell at (array_row, array_col), tiles in ``placement``, one unusable cell (its
    partner retargeted) and one missed cell; the evaluation by the array's MVM."""
    cells = []
    k = 0
    for layer, (n_in, n_out, row0, col0) in enumerate(((4, 3, 0, 0), (3, 2, 10, 8))):
        for out in range(n_out):
            for inp in range(n_in):
                for pol, dc in (("+", 0), ("-", 1)):
                    t = (20 + 10 * ((out + inp) % 5)) * 1e-6
                    cells.append(
                        {
                            "cell": k,
                            "layer": layer,
                            "row": out,
                            "col": inp,
                            "polarity": pol,
                            "level_index": 1,
                            "target_conductance_siemens": t,
                            "programmed_target_siemens": t,
                            "array_row": row0 + inp,
                            "array_col": col0 + 2 * out + dc,
                            "health": 0,
                            "compensated": False,
                            "reached_conductance_siemens": t + (0.5e-6 if k % 2 else -0.3e-6),
                            "attempts": 3,
                            "success": True,
                        }
                    )
                    k += 1
    dead, partner, missed = cells[5], cells[4], cells[9]
    dead.update(
        programmed_target_siemens=None, health=1, reached_conductance_siemens=math.nan,
        attempts=0, success=False,
    )  # fmt: skip
    partner.update(compensated=True, programmed_target_siemens=55e-6)
    partner["reached_conductance_siemens"] = 55.2e-6
    missed.update(success=False, reached_conductance_siemens=80e-6)
    return {
        "target": "crossbar",
        "die": {"col": 2, "row": 2, "label": "2,2"},
        "array": {"site": 6, "rows": n_r, "cols": n_c},
        "run_id": 4,
        "settings": {"tolerance_siemens": 2e-6},
        "placement": {
            "tiles": [
                {
                    "layer": 0,
                    "inputs": [0, 1, 2, 3],
                    "outputs": [0, 1, 2],
                    "array_rows": [0, 1, 2, 3],
                    "plus_cols": [0, 2, 4],
                },
                {
                    "layer": 1,
                    "inputs": [0, 1, 2],
                    "outputs": [0, 1],
                    "array_rows": [10, 11, 12],
                    "plus_cols": [8, 10],
                },
            ]
        },
        "layers": [{"layer": 0, "name": "fc1"}, {"layer": 1, "name": "fc2"}],
        "cells": cells,
    }


def test_an_array_deployment_maps_every_cell_at_its_array_position() -> None:
    import numpy as np

    from reporting.sections.deployment import build

    record = _array_record()
    rec = DeploymentRecord(
        record,
        {
            "on_chip": "analog matrix-vector products (array tester)",
            "chip_accuracies": [0.9375, 0.9375],
            "readback_accuracy": 0.953125,
            "software_accuracy": 0.96875,
            "ideal_accuracy": 0.984375,
            "chance": 0.25,
        },
    )
    s = build(rec)
    notes = [b.text for b in s.blocks if b.kind == "note"]
    assert notes[0].startswith("34 of 35 programmed cells reached their target within ±2.00 µS")
    assert notes[1].startswith("1 cell of the map not programmed") and "1 partner cell " in notes[1]
    assert "64 × 64 1T1R array at site 6 of die 2,2" in s.intro
    tile = next(b for b in s.blocks if b.id == "deployment-tile-0")
    assert tile.figure["layout"]["title"]["text"].startswith("the array at site 6")
    target, reached, err = (np.asarray(t["z"], dtype=float) for t in tile.figure["data"][:3])
    assert target.shape == (64, 64)
    for c in record["cells"]:
        r, col = c["array_row"], c["array_col"]
        if c["programmed_target_siemens"] is None:  # unprogrammed: no value, a marker
            assert np.isnan(target[r, col]) and np.isnan(reached[r, col])
            continue
        assert target[r, col] == pytest.approx(c["programmed_target_siemens"] * 1e6)
        assert reached[r, col] == pytest.approx(c["reached_conductance_siemens"] * 1e6)
        assert err[r, col] == pytest.approx(reached[r, col] - target[r, col])
    assert np.isnan(target[40, 40])  # no cell of the map there
    marks = {t["name"]: (t["x"][0], t["y"][0]) for t in tile.figure["data"][3:]}
    assert marks["missed"] == (record["cells"][9]["array_col"], record["cells"][9]["array_row"])
    assert marks["not programmed (unusable cell)"] == (1, 2)  # cell 5: input 2, output 0, −
    rects = tile.figure["layout"]["shapes"]
    assert len(rects) == 2 * 3 and rects[0]["x1"] == 5.5 and rects[3]["y0"] == 9.5
    table = next(b for b in s.blocks if b.kind == "table")
    values = {r[0].text: r[1].text for r in table.rows}
    assert values["on chip: analog matrix-vector products (array tester)"] == (
        "93.8 % (the same on all 2 read passes)"
    )
    assert values["read-back conductances in the software network"] == "95.3 %"
    assert values["software (network with cells drawn from the card)"] == "96.9 %"
    assert "On chip 93.8 % against software 96.9 %: −3.1 points." in notes
    # the error's colour scale is ± twice the verify tolerance (2 µS)
    assert tile.figure["layout"]["coloraxis2"]["cmax"] == pytest.approx(4.0)


def test_a_record_without_array_positions_maps_the_weight_matrices() -> None:
    import numpy as np

    from reporting.sections.deployment import build

    record = _array_record()
    for c in record["cells"]:
        del c["array_row"], c["array_col"], c["programmed_target_siemens"]
    del record["array"], record["placement"]
    s = build(DeploymentRecord(record))
    tiles = [b for b in s.blocks if b.id.startswith("deployment-tile-")]
    # one map per layer and polarity, the largest first: fc1 (3 x 4) +, -, then fc2 (2 x 3)
    titles = [t.figure["layout"]["title"]["text"] for t in tiles]
    assert titles == [
        "layer 0 (fc1), + cells of the weight matrix",
        "layer 0 (fc1), - cells of the weight matrix",
        "layer 1 (fc2), + cells of the weight matrix",
        "layer 1 (fc2), - cells of the weight matrix",
    ]
    target = np.asarray(tiles[0].figure["data"][0]["z"], dtype=float)
    assert target.shape == (3, 4)
    plus = [c for c in record["cells"] if c["layer"] == 0 and c["polarity"] == "+"]
    for c in plus:
        assert target[c["row"], c["col"]] == pytest.approx(c["target_conductance_siemens"] * 1e6)
    assert not any(b.kind == "table" for b in s.blocks)  # no evaluation: no accuracy table
