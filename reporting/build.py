"""Build the wafer report and write it as one self-contained HTML file.

``build_report`` reads the store (``reporting.data``) and asks each section for its blocks; a
section whose data the plan did not measure returns None and is left out. ``render_html`` fills
the Jinja2 templates (autoescaped) and inlines plotly.js from the installed package, so the file
opens anywhere without a network. Training and deployment come from the loop's records (the
store does not hold them): pass ``TrainingRecord``/``DeploymentRecord`` objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reporting.data import CHARACTERIZATION, ReportData, ReportStore, load_report_data
from reporting.model import Report, Section
from reporting.records import DeploymentRecord, TrainingRecord

log = logging.getLogger(__name__)


def _sections(
    data: ReportData,
    training: TrainingRecord | None,
    deployment: DeploymentRecord | None,
    curves: dict[str, Any],
) -> list[Section]:
    from reporting.sections import deployment as dep_section
    from reporting.sections import devices, fecap, felif, fits, provenance, rram, summary
    from reporting.sections import training as train_section

    builders: list[tuple[str, Callable[[], Section | None]]] = [
        ("summary", lambda: summary.build(data, training, deployment)),
        ("fecap", lambda: fecap.build(data)),
        ("felif", lambda: felif.build(data)),
        ("rram", lambda: rram.build(data)),
        ("fits", lambda: fits.build(data, curves)),
        ("training", lambda: train_section.build(training)),
        ("deployment", lambda: dep_section.build(deployment)),
        ("provenance", lambda: provenance.build(data)),
    ]
    t0 = time.perf_counter()
    curves.update(devices.device_curves(data))
    log.info("report device curves: %.2f s", time.perf_counter() - t0)
    out: list[Section] = []
    for name, make in builders:
        t0 = time.perf_counter()
        section = make()
        log.info("report section %s: %.2f s", name, time.perf_counter() - t0)
        if section is not None:
            out.append(section)
    return out


def build_report(
    store: ReportStore,
    wafer: str,
    *,
    purposes: Sequence[str] = (CHARACTERIZATION,),
    run_ids: Sequence[int] | None = None,
    training: TrainingRecord | None = None,
    deployment: DeploymentRecord | None = None,
    title: str | None = None,
) -> Report:
    """The report of ``wafer``: characterization runs unless ``purposes``/``run_ids`` say else."""
    from bruno_lab.extras import require_extra

    require_extra("report", "the HTML report")
    data = load_report_data(store, wafer, purposes=purposes, run_ids=run_ids)
    curves: dict[str, Any] = {}
    sections = _sections(data, training, deployment, curves)
    runs = ", ".join(f"{r.run_id}" for r in data.runs)
    n_dies = data.devices[["die_x", "die_y"]].drop_duplicates().shape[0]
    subtitle = (
        f"wafer {wafer} · {len(data.devices)} devices on {n_dies} dies · {len(data.frame)} "
        f"measurements of the {', '.join(data.purposes)} run(s) {runs}"
    )
    return Report(
        title=title or f"bruno-lab report: wafer {wafer}",
        wafer=wafer,
        subtitle=subtitle,
        sections=sections,
        meta={"db": store.masked_url},
        device_curves=curves,
    )


def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    return Environment(
        loader=PackageLoader("reporting", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(report: Report, *, build_s: float | None = None) -> str:
    from bruno_lab.extras import require_extra

    require_extra("report", "the HTML report")
    from bruno_lab import __version__
    from reporting.plotjson import dumps, plotly_js

    meta = {
        "version": __version__,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "build_s": f"{build_s:.1f} s" if build_s is not None else "–",
        "db": "–",
        **report.meta,
    }
    template = _environment().get_template("report.html")
    return template.render(
        report=report,
        meta=meta,
        plotly_js=plotly_js(),
        device_curves_json=dumps(report.device_curves) if report.device_curves else "{}",
    )


def write_report(
    store: ReportStore,
    wafer: str,
    path: str | Path,
    **kwargs: Any,
) -> Path:
    """Build and write the report to ``path`` (a directory gets ``report.html``); returns it.
    The file is written whole (temporary file, then rename)."""
    t0 = time.perf_counter()
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        path = path / "report.html"
    report = build_report(store, wafer, **kwargs)
    html = render_html(report, build_s=time.perf_counter() - t0)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    log.info(
        "report %s: %d sections, %.1f MB, %.1f s",
        path,
        len(report.sections),
        len(html) / 1e6,
        time.perf_counter() - t0,
    )
    return path
