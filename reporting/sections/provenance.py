"""Cards and their provenance: every card of the wafer (kind, version, model, code version,
when), the fits and runs it was built from, its parameters in engineering units; and the runs
the report selected and those it left out (with their purpose)."""

from __future__ import annotations

from sqlalchemy import select

from reporting.data import ReportData
from reporting.model import Cell, Section
from reporting.units import fmt, quantity


def _runs_of_card(data: ReportData, fit_ids: list[int]) -> list[int]:
    from bruno_lab.store.models import FitMeasurement, Measurement

    if not fit_ids:
        return []
    with data.store.engine.connect() as conn:
        rows = conn.execute(
            select(Measurement.run_id)
            .join(FitMeasurement, FitMeasurement.measurement_id == Measurement.id)
            .where(FitMeasurement.fit_id.in_(fit_ids))
            .distinct()
        )
        return sorted(int(r[0]) for r in rows)


def build(data: ReportData) -> Section:
    s = Section("provenance", "Cards and provenance")
    rows = []
    for r in data.runs:
        rows.append(
            [
                f"run {r.run_id}",
                r.purpose,
                r.plan_name,
                r.status,
                r.operator,
                r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else "–",
                str(r.n_measurements),
                Cell("included", css=""),
            ]
        )
    for r in data.other_runs:
        rows.append(
            [
                f"run {r.run_id}",
                r.purpose,
                r.plan_name,
                r.status,
                r.operator,
                r.started_at.strftime("%Y-%m-%d %H:%M") if r.started_at else "–",
                str(r.n_measurements),
                Cell("left out (purpose)", css="warn"),
            ]
        )
    s.table(
        "runs",
        [
            "run",
            "purpose",
            "plan",
            "status",
            "operator",
            "started (UTC)",
            "measurements",
            "in report",
        ],
        rows,
        "Runs with measurements on this wafer. The report shows the "
        + ", ".join(data.purposes)
        + " runs; deployment and evaluation runs program cells to a network's targets and are "
        "left out of the population's statistics.",
    )
    for kind, card in sorted(data.cards.items()):
        body = card.card()
        runs = _runs_of_card(data, card.fit_ids)
        s.note(
            f"{kind} card v{card.version} (id {card.id}): model {body.model_name} "
            f"v{body.model_version}, code {card.code_version}, created "
            f"{card.created_at:%Y-%m-%d %H:%M} UTC, from {len(card.fit_ids)} fits of "
            f"{body.n_devices} usable devices ({body.n_defective} left out as defective) "
            f"measured in run(s) {', '.join(map(str, runs)) or '–'}.",
            "info",
        )
        prow = []
        for name, st in body.parameters.items():
            q = quantity(name, [st.mean])
            prow.append(
                [
                    q.label,
                    name,
                    Cell(q.format(st.mean), css="num"),
                    Cell(q.format(st.std), css="num"),
                    # a relative spread means nothing for a quantity centred on zero (imprint)
                    Cell(
                        "–"
                        if q.diverging or abs(st.mean) < st.std
                        else f"{100 * st.sigma_rel:.1f} %",
                        css="num",
                    ),
                    st.family,
                    str(st.n_devices),
                ]
            )
        if body.rram is not None:
            lad = body.rram
            for lv in lad.levels:
                prow.append(
                    [
                        f"level {lv.index}",
                        "rram.levels",
                        Cell(f"{fmt(lv.mean_siemens * 1e6)} µS", css="num"),
                        Cell(f"{fmt(lv.sigma_siemens * 1e6)} µS", css="num"),
                        Cell(f"{100 * lv.sigma_siemens / lv.mean_siemens:.1f} %", css="num"),
                        "",
                        str(lv.n_cells),
                    ]
                )
            prow.append(
                [
                    "stuck cells",
                    "rram.stuck_fraction",
                    Cell(f"{100 * lad.stuck_fraction:.1f} %", css="num"),
                    "",
                    "",
                    "",
                    "",
                ]
            )
            if lad.read_noise is not None:
                prow.append(
                    [
                        "read noise",
                        "rram.read_noise",
                        Cell(
                            f"{fmt(lad.read_noise.floor_siemens * 1e9)} nS + "
                            f"{fmt(100 * lad.read_noise.slope_rel)} % · G",
                            css="num",
                        ),
                        "",
                        "",
                        "",
                        "",
                    ]
                )
            if lad.relaxation is not None:
                prow.append(
                    [
                        "relaxation",
                        "rram.relaxation",
                        Cell(
                            f"{100 * lad.relaxation.drift_rel_per_decade:+.2f} %/decade", css="num"
                        ),
                        Cell(
                            f"{fmt(lad.relaxation.sigma_siemens_per_decade * 1e6)} µS/decade",
                            css="num",
                        ),
                        "",
                        "",
                        "",
                    ]
                )
        s.table(
            f"card-{kind}",
            ["parameter", "name", "mean", "std", "spread", "family", "devices"],
            prow,
            body.notes,
        )
    if not data.cards:
        s.note("No model card for this wafer yet (run `bruno-lab fit`).", "warn")
    return s
