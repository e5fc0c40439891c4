"""FeLIF neurons: maps of the firing rate and fitted parameters, the spike raster of each input
amplitude, a membrane trace, and the firing rate against input current, measured against the
card's model (its mean neuron and its population, simulated with ``bruno_lab.devices.felif``
on the protocol's own pulse train)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from reporting.data import ReportData
from reporting.model import Section
from reporting.plotjson import axis, color, decimate, figure, layout
from reporting.sections.common import add_map, device_label, fit_param_by_device, scalar_by_device
from reporting.units import quantity

if TYPE_CHECKING:
    from bruno_lab.cards import ModelCardBody

log = logging.getLogger(__name__)

PROTOCOL = "felif_response"
MAX_RASTER_DEVICES = 24
N_POPULATION = 32
N_CURRENTS = 10


def model_rates(
    card: ModelCardBody, area_m2: float, params: dict[str, Any], currents_a: np.ndarray, n_pop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Firing rate (Hz) of the card's mean neuron [C] and of ``n_pop`` neurons drawn from its
    spreads [n_pop, C] under the protocol's pulse train at each input current."""
    import torch

    from bruno_lab.devices.felif import FeLIFParams, felif_run_sequence
    from bruno_lab.devices.params import sample_population
    from calibration.felif_fit import train_segments

    specs = FeLIFParams.specs()
    means = {k: v.mean for k, v in card.parameters.items() if k in specs}
    sigma = {k: v.sigma_rel for k, v in card.parameters.items() if k in specs}
    mean = FeLIFParams.from_json({**means, "area_m2": area_m2}, n=1)
    pop = sample_population(mean, sigma, n_pop, torch.Generator().manual_seed(0))
    width, period = float(params["pulse_width_s"]), float(params["pulse_period_s"])
    trial = float(params["trial_s"])
    seg = train_segments(width, period, trial, int(params.get("samples_per_pulse", 10)), period)
    n_c = currents_a.size
    neurons = FeLIFParams(
        **{
            k: torch.cat([getattr(mean, k).expand(n_c), getattr(pop, k).repeat_interleave(n_c)])
            for k in specs
        }
    )
    amps = torch.as_tensor(np.tile(currents_a, n_pop + 1), dtype=torch.float64)
    cur = torch.as_tensor(seg["trial_on"], dtype=torch.float64).unsqueeze(1) * amps
    micro = float(seg["micro_dt_s"][0])
    res = felif_run_sequence(
        cur,
        torch.full((cur.shape[0],), micro, dtype=torch.float64),
        torch.as_tensor(seg["trial_steps"]),
        neurons,
        max_spikes=1,
    )
    rates = res.n_spikes.numpy().astype(float) / trial
    return rates[:n_c], rates[n_c:].reshape(n_pop, n_c)


def _raster(s: Section, data: ReportData) -> None:
    arrays = data.arrays(PROTOCOL, ("spike_times_s", "spike_trial", "input_current_a"))
    rows = data.rows(PROTOCOL, ok=True)
    labels = device_label(data)
    picked = [
        (labels.get(int(r.device_id), ""), arrays[int(r.measurement_id)])
        for r in rows.itertuples(index=False)
        if int(r.measurement_id) in arrays
    ][:MAX_RASTER_DEVICES]
    if not picked:
        return
    n_trials = max(a["input_current_a"].size for _, a in picked)
    n_trials = min(n_trials, 4)
    trial_s = data.parameters().get(int(rows["measurement_id"].iloc[0]), {}).get("trial_s")
    t_end_ms = 1e3 * float(trial_s) if trial_s else None
    traces = []
    gap = 0.04
    width = (1.0 - gap * (n_trials - 1)) / n_trials
    lay_axes: dict[str, Any] = {}
    for k in range(n_trials):
        xs, ys = [], []
        for j, (_, a) in enumerate(picked):
            m = a["spike_trial"] == k
            xs.append(a["spike_times_s"][m] * 1e3)
            ys.append(np.full(int(m.sum()), j))
        cur = next((a["input_current_a"][k] for _, a in picked if a["input_current_a"].size > k), 0)
        ax = "" if k == 0 else str(k + 1)
        traces.append(
            {
                "type": "scattergl",
                "mode": "markers",
                "x": np.concatenate(xs) if xs else np.empty(0),
                "y": np.concatenate(ys) if ys else np.empty(0),
                "xaxis": f"x{ax}",
                "yaxis": f"y{ax}",
                "marker": {
                    "symbol": "line-ns-open",
                    "size": 9,
                    "color": color(k),
                    "line": {"width": 1.5, "color": color(k)},
                },
                "name": quantity("input_current_a", [cur]).format(cur),
                "hovertemplate": "%{x:.3f} ms<extra>%{fullData.name}</extra>",
            }
        )
        dom = [k * (width + gap), k * (width + gap) + width]
        lay_axes[f"xaxis{ax}"] = {
            **axis("time in trial (ms)"),
            "domain": dom,
            "anchor": f"y{ax}",
            **({"range": [0, t_end_ms]} if t_end_ms else {}),
        }
        lay_axes[f"yaxis{ax}"] = {
            **axis("device" if k == 0 else ""),
            "anchor": f"x{ax}",
            "tickmode": "array",
            "tickvals": list(range(len(picked))),
            "ticktext": [lbl for lbl, _ in picked] if k == 0 else [""] * len(picked),
            "range": [len(picked) - 0.5, -0.5],
        }
    s.fig(
        "felif-raster",
        figure(traces, layout("spike raster", height=max(300, 40 + 18 * len(picked)), **lay_axes)),
        f"Spike times of {len(picked)} neurons, one panel per input amplitude (each a pulse "
        "train; trials run one after the other on the same neuron).",
        wide=True,
    )


def _membrane(s: Section, data: ReportData) -> None:
    arrays = data.arrays(PROTOCOL, ("time_s", "voltage_v"))
    if not arrays:
        return
    mid, a = next(iter(arrays.items()))
    dev = data.device_of()[mid]  # every measurement of the frame has its device
    st = decimate(a["time_s"].size, 4000)
    s.fig(
        "felif-membrane",
        figure(
            [
                {
                    "type": "scattergl",
                    "mode": "lines",
                    "x": (a["time_s"][st] - a["time_s"][0]) * 1e3,
                    "y": a["voltage_v"][st],
                    "line": {"width": 1},
                    "name": "membrane",
                }
            ],
            layout("membrane voltage, last trial", xaxis=axis("time (ms)"), yaxis=axis("V (V)")),
        ),
        f"Device {device_label(data).get(dev, dev)}: the scope's record of the last trial; zoom "
        "to see charge-up and reset.",
    )


def _rate_vs_current(s: Section, data: ReportData) -> None:
    arrays = data.arrays(PROTOCOL, ("input_current_a", "trial_firing_rate_hz"))
    if not arrays:
        return
    cur = np.concatenate([a["input_current_a"] for a in arrays.values()])
    rate = np.concatenate([a["trial_firing_rate_hz"] for a in arrays.values()])
    qi = quantity("input_current_a", cur)
    qr = quantity("firing_rate_hz", rate)
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "markers",
            "x": qi.scale(cur),
            "y": qr.scale(rate),
            "marker": {"size": 6, "color": "rgba(31,119,180,0.45)"},
            "name": f"measured ({len(arrays)} neurons)",
        }
    ]
    uc = np.unique(cur)
    med = [float(np.median(rate[cur == c])) for c in uc]
    traces.append(
        {
            "type": "scatter",
            "mode": "lines+markers",
            "x": qi.scale(uc),
            "y": qr.scale(med),
            "line": {"color": "#1f77b4", "width": 2},
            "name": "measured median",
        }
    )
    card = data.cards.get("felif")
    caption = "Each input amplitude is one pulse train (protocol felif_response)."
    if card is not None:
        try:
            mid = next(iter(arrays))
            params = data.parameters()[mid]
            dev = data.device_of()[mid]
            area = float(data.geometry.get(dev, {}).get("area_m2", 25e-12))
            grid = np.geomspace(uc.min() / 2.0, uc.max() * 1.5, N_CURRENTS)
            mean_r, pop_r = model_rates(card.card(), area, params, grid, N_POPULATION)
            lo, hi = np.percentile(pop_r, 16, axis=0), np.percentile(pop_r, 84, axis=0)
            traces += [
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": qi.scale(grid),
                    "y": qr.scale(lo),
                    "line": {"width": 0},
                    "showlegend": False,
                    "hoverinfo": "skip",
                },
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": qi.scale(grid),
                    "y": qr.scale(hi),
                    "fill": "tonexty",
                    "fillcolor": "rgba(214,39,40,0.18)",
                    "line": {"width": 0},
                    "name": "card: 16–84 % of its population",
                },
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": qi.scale(grid),
                    "y": qr.scale(mean_r),
                    "line": {"color": "#d62728", "width": 2.5},
                    "name": f"card v{card.version}: mean neuron",
                },
            ]
            caption += (
                f" Card v{card.version} simulated with bruno_lab.devices.felif on the same train "
                f"({N_POPULATION} neurons drawn from its spreads for the band)."
            )
        except Exception as exc:
            log.warning("felif model rates: %s", exc)
            s.note(f"The FeLIF card's rates could not be simulated: {exc}", "warn")
    s.fig(
        "felif-rate",
        figure(
            traces,
            layout(
                "firing rate vs input current",
                xaxis=axis(f"input current ({qi.unit})", log=True),
                yaxis=axis(f"firing rate ({qr.unit})"),
            ),
        ),
        caption,
    )


def build(data: ReportData) -> Section | None:
    if "felif" not in data.kinds() or not data.has(PROTOCOL):
        return None
    s = Section(
        "felif",
        "FeLIF neurons",
        "Ferroelectric leaky integrate-and-fire neurons driven by input pulse trains.",
    )
    add_map(
        s,
        data,
        "felif-map-rate",
        "firing rate (mean over input amplitudes)",
        "firing_rate_hz",
        scalar_by_device(data, PROTOCOL, "firing_rate_hz"),
        (PROTOCOL,),
    )
    for name in ("ps_c_m2", "t_hzo_m"):
        add_map(
            s,
            data,
            f"felif-map-fit-{name}",
            f"fitted {quantity(name).label}",
            name,
            fit_param_by_device(data, "felif", name),
            (PROTOCOL,),
        )
    _raster(s, data)
    _rate_vs_current(s, data)
    _membrane(s, data)
    if "felif" not in data.cards:
        s.note("No FeLIF model card for this wafer: rates are shown without the model.", "warn")
    return s
