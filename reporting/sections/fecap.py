"""FeCap: wafer maps of the loop features and fitted parameters, P-V loops of every device over
the card's mean ± spread, Pr and Vc distributions (measured against the card's population),
PUND currents and the switching kinetics (switched polarization vs pulse width and amplitude).

The card's curves are simulated with ``bruno_lab.devices.fecap`` (``fecap_simulate`` and
``pv_loop_features``): the same model the fit used, on a measured waveform.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from reporting.data import ReportData
from reporting.model import Section
from reporting.plotjson import axis, color, decimate, ecdf, figure, layout
from reporting.sections.common import (
    add_map,
    card_params,
    device_label,
    fit_param_by_device,
    percentile_band,
    scalar_by_device,
)
from reporting.units import fmt, quantity

if TYPE_CHECKING:
    from bruno_lab.cards import ModelCardBody

log = logging.getLogger(__name__)

N_POPULATION = 48  # card devices simulated for the spread band
N_DOMAINS = 16  # calibration's default for fecap-pv
LOOP_POINTS = 200
# the card's loops are drawn, not fitted: 20 mV sub-steps (the simulation's default is 10 mV)
# halve their cost and move no point of a loop by more than a line's width
MAX_DV_SUBSTEP_V = 0.02
PROTOCOLS = ("pv_loop", "pund", "switching_kinetics")


def _frequencies(data: ReportData) -> dict[int, float]:
    """pv_loop key index -> its frequency (Hz)."""
    params = data.parameters()
    out: dict[int, float] = {}
    for r in data.rows("pv_loop", ok=None).itertuples(index=False):
        try:
            idx = int(str(r.key).rsplit("/", 1)[1])
        except (IndexError, ValueError):
            continue
        f = params.get(int(r.measurement_id), {}).get("frequency_hz")
        if f:
            out.setdefault(idx, float(f))
    return dict(sorted(out.items()))


def _loop_window(time_s: np.ndarray, frequency_hz: float) -> np.ndarray:
    """The last full loop the protocol centres on: +A peak of the next-to-last period to the
    last +A peak (both V = 0 crossings inside)."""
    period = 1.0 / frequency_hz
    t_end = time_s[-1] + (time_s[1] - time_s[0])
    return (time_s >= t_end - 1.75 * period - 1e-15) & (time_s <= t_end - 0.75 * period + 1e-15)


def simulate_card_loops(
    card: ModelCardBody,
    area_m2: float,
    time_s: np.ndarray,
    voltage_v: np.ndarray,
    n: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Polarization (C/m²) of the card's mean device [T] and of ``n`` devices drawn from its
    spreads [n, T] on the measured waveform (``bruno_lab.devices``)."""
    import torch

    from bruno_lab.devices.fecap import FeCapParams
    from bruno_lab.devices.fecap_sim import fecap_simulate
    from bruno_lab.devices.params import sample_population

    specs = FeCapParams.specs()
    means = {k: v.mean for k, v in card.parameters.items() if k in specs}
    sigma = {k: v.sigma_rel for k, v in card.parameters.items() if k in specs and k != "imprint_v"}
    mean = FeCapParams.from_json({**means, "area_m2": area_m2}, n=1)
    pop = sample_population(mean, sigma, n, torch.Generator().manual_seed(seed))
    if "imprint_v" in card.parameters:  # an offset around 0: its spread is absolute, not relative
        st = card.parameters["imprint_v"]
        eps = torch.randn(n, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
        pop = pop.replace(imprint_v=(st.mean + st.std * eps).clamp(-5.0, 5.0))
    both = FeCapParams(
        **{k: torch.cat([getattr(mean, k), getattr(pop, k)]) for k in FeCapParams.specs()}
    )
    t = torch.as_tensor(time_s, dtype=torch.float64)
    v = torch.as_tensor(smooth(voltage_v), dtype=torch.float64)
    with torch.no_grad():
        tr = fecap_simulate(t, v, both, n_domains=N_DOMAINS, max_dv_substep_v=MAX_DV_SUBSTEP_V)
    pol = (tr.charge_c / both.area_m2.unsqueeze(1)).numpy()
    return pol[0], pol[1:]


def smooth(voltage_v: np.ndarray, n: int = 5) -> np.ndarray:
    """A light moving average of a measured drive: the scope's noise and 8-bit steps would
    otherwise show as C*dV/dt spikes in a simulated loop."""
    v = np.convolve(voltage_v, np.ones(n) / n, mode="same")
    v[: n // 2], v[-(n // 2) :] = voltage_v[: n // 2], voltage_v[-(n // 2) :]
    return v


def _centre(p: np.ndarray) -> np.ndarray:
    return p - 0.5 * (p.max(axis=-1, keepdims=True) + p.min(axis=-1, keepdims=True))


# per loop index: the card's simulated loop features ({"model": name -> values}, None without)
_Models = dict[int, dict[str, dict[str, np.ndarray] | None] | None]


def _pv_overlay(
    s: Section, data: ReportData, idx: int, freq: float
) -> dict[str, dict[str, np.ndarray] | None] | None:
    rows = data.rows("pv_loop", ok=True)
    rows = rows[rows["key"].fillna("").str.endswith(f"/pv_loop/{idx}")]
    arrays = data.arrays("pv_loop", ("time_s", "voltage_v", "polarization_c_m2"))
    labels = device_label(data)
    qp = quantity("pr_pos_c_m2")
    traces: list[dict[str, Any]] = []
    first: tuple[int, dict[str, np.ndarray]] | None = None  # device id, its arrays
    for n, r in enumerate(rows.itertuples(index=False)):
        a = arrays.get(int(r.measurement_id))
        if a is None:
            continue
        w = _loop_window(a["time_s"], freq)
        v, p = a["voltage_v"][w], a["polarization_c_m2"][w]
        st = decimate(v.size, LOOP_POINTS)
        if first is None:
            first = int(r.device_id), a
        traces.append(
            {
                "type": "scattergl",
                "mode": "lines",
                "x": v[st],
                "y": qp.scale(p[st]),
                "line": {"width": 1, "color": "rgba(31,119,180,0.35)"},
                "name": labels.get(int(r.device_id), str(r.device_id)),
                "legendgroup": "measured",
                "showlegend": n == 0,
                "hovertemplate": "%{fullData.name}<br>%{x:.2f} V, %{y:.1f} µC/cm²<extra></extra>",
            }
        )
        if n == 0:
            traces[-1]["name"] = "measured (each device)"
    if not traces:
        return None
    model_pr: dict[str, np.ndarray] | None = None
    card = data.cards.get("fecap")
    caption = f"{len(traces)} devices, last loop at {fmt(freq / 1e3)} kHz."
    if card is not None and first is not None:
        first_dev, first_a = first
        try:
            body = card.card()
            area = float(data.geometry.get(first_dev, {}).get("area_m2", 25e-12))
            mean_p, pop_p = simulate_card_loops(
                body, area, first_a["time_s"], first_a["voltage_v"], N_POPULATION
            )
            w = _loop_window(first_a["time_s"], freq)
            v = smooth(first_a["voltage_v"])[w]
            mean_p, pop_p = _centre(mean_p[w]), _centre(pop_p[:, w])
            lo, hi = percentile_band(pop_p)
            turn = int(np.argmin(v))
            for b, (i0, i1) in enumerate(((0, turn + 1), (turn, v.size))):
                st = decimate(i1 - i0, LOOP_POINTS)
                sl = slice(i0, i1)
                traces.append(
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "x": v[sl][st],
                        "y": qp.scale(lo[sl][st]),
                        "line": {"width": 0, "color": "rgba(214,39,40,0)"},
                        "hoverinfo": "skip",
                        "showlegend": False,
                        "legendgroup": "band",
                    }
                )
                traces.append(
                    {
                        "type": "scatter",
                        "mode": "lines",
                        "x": v[sl][st],
                        "y": qp.scale(hi[sl][st]),
                        "fill": "tonexty",
                        "fillcolor": "rgba(214,39,40,0.18)",
                        "line": {"width": 0, "color": "rgba(214,39,40,0)"},
                        "name": "card: 16–84 % of its population",
                        "legendgroup": "band",
                        "showlegend": b == 0,
                        "hoverinfo": "skip",
                    }
                )
            st = decimate(v.size, 2 * LOOP_POINTS)
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": v[st],
                    "y": qp.scale(mean_p[st]),
                    "line": {"width": 2.5, "color": "#d62728"},
                    "name": f"card v{card.version}: mean device",
                    "hoverinfo": "skip",
                }
            )
            model_pr = _model_features(v, pop_p)
            caption += (
                f" Card v{card.version} ({body.model_name}) simulated with bruno_lab.devices on "
                "the "
                f"first device's waveform: mean parameters (line) and {N_POPULATION} devices "
                "drawn from its spreads (band)."
            )
        except Exception as exc:  # a card that cannot be simulated must not lose the loops
            log.warning("fecap card loops: %s", exc)
            s.note(f"The FeCap card's loops could not be simulated: {exc}", "warn")
    fig = figure(
        traces,
        layout(
            f"P-V loops at {fmt(freq / 1e3)} kHz",
            height=420,
            xaxis=axis("voltage (V)"),
            yaxis=axis("polarization (µC/cm²)"),
        ),
    )
    s.fig(f"fecap-pv-{idx}", fig, caption + " Drag to zoom, double-click to reset.", wide=True)
    return {"model": model_pr}


def _model_features(voltage_v: np.ndarray, pol: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    from bruno_lab.devices.fecap_waveforms import pv_loop_features

    feats = pv_loop_features(torch.as_tensor(voltage_v), torch.as_tensor(pol))
    return {k: v.numpy() for k, v in feats.items()}


def _dist_figure(
    title: str,
    series: list[tuple[str, np.ndarray, str]],
    q_name: str,
    model: Sequence[tuple[str, np.ndarray]] = (),
) -> dict[str, Any]:
    """Histogram (left) and cumulative distribution (right) of each series (SI values)."""
    q = quantity(q_name)
    traces: list[dict[str, Any]] = []
    for i, (name, vals, dash) in enumerate(series):
        v = q.scale(vals)
        v = v[np.isfinite(v)]
        c = color(i)
        traces.append(
            {
                "type": "histogram",
                "x": v,
                "name": name,
                "legendgroup": name,
                "opacity": 0.6,
                "marker": {"color": c},
                "nbinsx": max(8, min(40, v.size // 3)),
            }
        )
        xs, ps = ecdf(v)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": xs,
                "y": ps,
                "xaxis": "x2",
                "yaxis": "y2",
                "line": {"shape": "hv", "color": c, "dash": dash},
                "marker": {"size": 4},
                "name": name,
                "legendgroup": name,
                "showlegend": False,
            }
        )
    for j, (name, vals) in enumerate(model):
        xs, ps = ecdf(q.scale(vals))
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": xs,
                "y": ps,
                "xaxis": "x2",
                "yaxis": "y2",
                "line": {"color": color(j), "dash": "dot", "width": 2},
                "name": name,
            }
        )
    lay = layout(
        title,
        height=330,
        barmode="overlay",
        xaxis={**axis(q.title), "domain": [0.0, 0.44]},
        yaxis=axis("devices"),
        xaxis2={**axis(q.title), "domain": [0.56, 1.0], "anchor": "y2"},
        yaxis2={**axis("cumulative (%)"), "anchor": "x2", "range": [0, 100]},
    )
    return figure(traces, lay)


def _distributions(s: Section, data: ReportData, freqs: dict[int, float], models: _Models) -> None:
    for name, neg, title in (
        ("pr_pos_c_m2", "pr_neg_c_m2", "remanent polarization"),
        ("vc_pos_v", "vc_neg_v", "coercive voltage"),
    ):
        series: list[tuple[str, np.ndarray, str]] = []
        model: list[tuple[str, np.ndarray]] = []
        for idx, f in freqs.items():
            pos = np.array(list(scalar_by_device(data, "pv_loop", name, index=idx).values()))
            ng = np.array(list(scalar_by_device(data, "pv_loop", neg, index=idx).values()))
            k = f"{fmt(f / 1e3)} kHz"
            sym = "Pr" if name.startswith("pr") else "Vc"
            if pos.size:
                series.append((f"{sym}+ {k}", pos, "solid"))
            if ng.size:
                series.append((f"|{sym}−| {k}", -ng, "dash"))
            feats = (models.get(idx) or {}).get("model")
            if feats is not None and name in feats:
                model.append((f"card {sym}+ {k}", feats[name]))
        if series:
            s.fig(
                f"fecap-{name.split('_')[0]}-dist",
                _dist_figure(f"{title} across the wafer", series, name, model),
                "Histograms and cumulative distributions over devices; dotted: the card's "
                "population (simulated).",
                wide=True,
            )


def _pund(s: Section, data: ReportData) -> None:
    rows = data.rows("pund", ok=True)
    arrays = data.arrays("pund", ("time_s", "voltage_v", "current_a"))
    labels = device_label(data)
    traces = []
    for i, r in enumerate(rows.head(8).itertuples(index=False)):
        a = arrays.get(int(r.measurement_id))
        if a is None:
            continue
        st = decimate(a["time_s"].size, 1500)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "x": a["time_s"][st] * 1e6,
                "y": a["current_a"][st] * 1e6,
                "name": labels.get(int(r.device_id), ""),
                "line": {"width": 1, "color": color(i)},
            }
        )
    if traces:
        s.fig(
            "fecap-pund",
            figure(
                traces,
                layout(
                    "PUND currents",
                    xaxis=axis("time (µs)"),
                    yaxis=axis("current (µA)"),
                ),
            ),
            f"First {len(traces)} devices; zoom on a pulse to compare switching and "
            "non-switching currents.",
        )


def _kinetics(s: Section, data: ReportData) -> None:
    arrays = data.arrays(
        "switching_kinetics", ("width_s", "amplitude_v", "switched_polarization_c_m2")
    )
    if not arrays:
        return
    q = quantity("switched_polarization_c_m2")
    w = np.concatenate([a["width_s"] for a in arrays.values()])
    amp = np.concatenate([a["amplitude_v"] for a in arrays.values()])
    p = np.concatenate([a["switched_polarization_c_m2"] for a in arrays.values()])
    uw, ua = np.unique(w), np.unique(amp)

    def stats(mask: np.ndarray) -> tuple[float, float, float]:
        v = q.scale(p[mask])
        return float(np.median(v)), float(np.percentile(v, 16)), float(np.percentile(v, 84))

    traces = []
    for i, a in enumerate(ua):
        m = [stats((amp == a) & (w == x)) for x in uw if ((amp == a) & (w == x)).any()]
        xs = [x for x in uw if ((amp == a) & (w == x)).any()]
        med = np.array([t[0] for t in m])
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": np.array(xs),
                "y": med,
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": np.array([t[2] for t in m]) - med,
                    "arrayminus": med - np.array([t[1] for t in m]),
                    "thickness": 1,
                },
                "name": f"{fmt(a)} V",
                "line": {"color": color(i)},
            }
        )
    pick = uw[np.unique(np.linspace(0, uw.size - 1, min(5, uw.size)).round().astype(int))]
    for j, x in enumerate(pick):
        m = [stats((w == x) & (amp == a)) for a in ua if ((w == x) & (amp == a)).any()]
        ys = [a for a in ua if ((w == x) & (amp == a)).any()]
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": np.array(ys),
                "y": np.array([t[0] for t in m]),
                "xaxis": "x2",
                "yaxis": "y2",
                "name": f"{quantity('width_s', [x]).format(x)}",
                "line": {"color": color(j + 5), "dash": "dot"},
            }
        )
    lay = layout(
        "switching kinetics",
        height=360,
        xaxis={**axis("pulse width (s)", log=True), "domain": [0, 0.45]},
        yaxis=axis(f"switched polarization ({q.unit})"),
        xaxis2={**axis("pulse amplitude (V)"), "domain": [0.57, 1.0], "anchor": "y2"},
        yaxis2={**axis(f"switched polarization ({q.unit})"), "anchor": "x2"},
    )
    n_dev = len(arrays)
    s.fig(
        "fecap-kinetics",
        figure(traces, lay),
        f"Median over {n_dev} devices with 16–84 % bars; left: one line per amplitude, right: "
        "one line per pulse width.",
        wide=True,
    )


def build(data: ReportData) -> Section | None:
    if "fecap" not in data.kinds():
        return None
    s = Section(
        "fecap",
        "FeCap",
        "Ferroelectric capacitors: loop features per die, loops of every device against the "
        "model card, distributions across the wafer, switching kinetics.",
    )
    freqs = _frequencies(data)
    f0 = next(iter(freqs.items()), None)
    if f0 is not None:
        idx, f = f0
        k = f"at {fmt(f / 1e3)} kHz"
        for name, title in (
            ("pr_pos_c_m2", f"Pr+ {k}"),
            ("vc_pos_v", f"Vc+ {k}"),
            ("imprint_v", f"imprint {k}"),
        ):
            add_map(
                s,
                data,
                f"fecap-map-{name}",
                title,
                name,
                scalar_by_device(data, "pv_loop", name, index=idx),
                PROTOCOLS,
            )
    add_map(
        s,
        data,
        "fecap-map-psw",
        "PUND switched polarization",
        "switched_polarization_c_m2",
        scalar_by_device(data, "pund", "switched_polarization_c_m2"),
        PROTOCOLS,
    )
    params = card_params(data, "fecap")
    for name in ("ps_c_m2", "e_a_v_m", "t_hzo_m"):
        add_map(
            s,
            data,
            f"fecap-map-fit-{name}",
            f"fitted {quantity(name).label}",
            name,
            fit_param_by_device(data, "fecap", name),
            PROTOCOLS,
        )
    models: _Models = {}
    for idx, f in freqs.items():
        models[idx] = _pv_overlay(s, data, idx, f)
    _distributions(s, data, freqs, models)
    if data.has("pund"):
        _pund(s, data)
    if data.has("switching_kinetics"):
        _kinetics(s, data)
    if not params:
        s.note("No FeCap model card for this wafer: the loops are shown without the model.", "warn")
    if not s.blocks:
        return None
    return s


__all__ = ["build", "simulate_card_loops"]
