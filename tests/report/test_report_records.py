"""Training verdicts (chance, flat ln C loss, collapse) and the deployment section's numbers."""

from __future__ import annotations

import math

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
    assert values["on chip (conductances read back)"] == "62.0 % ± 0.9 (over 3 read passes)"
    assert values["software (network with cells drawn from the card)"] == "50.0 %"
    assert values["ideal map (every cell at its target)"] == "79.7 %"
    assert "On chip 62.0 % against software 50.0 %: +12.0 points." in notes
