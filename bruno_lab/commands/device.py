"""``bruno-lab device simulate felif|fecap|rram``: try a compact model without a lab.

FeLIF: spike times under a constant or piecewise current. FeCap: a P-V loop and PUND charges.
RRAM: forming and a DC I-V sweep. ``--param NAME=VALUE`` overrides a model parameter (units
accepted: ``--param area_m2="30 um**2"``); ``--json`` prints the result on stdout; ``--plot``
draws it to a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bruno_lab.commands.options import JsonOption, ModelName
from bruno_lab.extras import require_extra
from bruno_lab.limits import MAX_CYCLES, MAX_DOMAINS, MAX_N_MICRO, finite

device_app = typer.Typer(
    name="device", no_args_is_help=True, help="Device models (FeLIF, FeCap, RRAM) without a lab."
)


def register(app: typer.Typer) -> None:
    app.add_typer(device_app, name="device")


def _q(value: str, unit: str, where: str) -> float:
    """A quantity from the command line: a bare number is already in SI ``unit``."""
    from bruno_lab.units import parse_quantity

    try:
        return float(value)
    except ValueError:
        return parse_quantity(value.strip(), unit, where=where)


def _params(kind: str, overrides: list[str]) -> Any:
    """The kind's default parameters with ``NAME=VALUE`` overrides (units via parse_quantity)."""
    from bruno_lab.devices.scenarios import params_class
    from bruno_lab.errors import BadInputError

    cls = params_class(kind)
    specs = cls.specs()
    values: dict[str, float] = {}
    for item in overrides:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not raw.strip():
            raise BadInputError(f"--param {item!r}: expected NAME=VALUE, e.g. area_m2='30 um**2'")
        if name not in specs:
            raise BadInputError(
                f"--param {name!r}: not a {kind} parameter; valid names: {', '.join(specs)}"
            )
        values[name] = _q(raw, specs[name].unit, where=f"--param {name}")
    return cls.from_json(values, n=1, where="--param")


def _segments(specs: list[str]) -> list[tuple[float, float]]:
    """``VALUE`` or ``VALUE@START`` (e.g. "5 nA@10 ms") -> (start_s, current_a) segments."""
    out = []
    for spec in specs:
        value, _, start = spec.partition("@")
        start_s = _q(start, "s", where="--current start") if start else 0.0
        out.append((start_s, _q(value, "A", where="--current")))
    return out


def simulate(
    kind: Annotated[ModelName, typer.Argument(metavar="KIND", help="The device model.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="NAME=VALUE override, units accepted; repeatable."),
    ] = None,
    current: Annotated[
        list[str] | None,
        typer.Option("--current", help="FeLIF input: VALUE or VALUE@START, e.g. '5 nA@10 ms'."),
    ] = None,
    duration: Annotated[str, typer.Option("--duration", help="FeLIF run length.")] = "20 ms",
    dt: Annotated[str, typer.Option("--dt", help="FeLIF network step.")] = "1 ms",
    n_micro: Annotated[
        int, typer.Option("--n-micro", min=1, max=MAX_N_MICRO, help="Micro-steps per step.")
    ] = 1000,
    amplitude: Annotated[
        str, typer.Option("--amplitude", help="FeCap loop/PUND amplitude.")
    ] = "3 V",
    frequency: Annotated[str, typer.Option("--frequency", help="FeCap loop frequency.")] = "1 kHz",
    pund_width: Annotated[
        str, typer.Option("--pund-width", help="FeCap PUND pulse width.")
    ] = "1 us",
    domains: Annotated[
        int, typer.Option("--domains", min=1, max=MAX_DOMAINS, help="FeCap domains K.")
    ] = 16,
    v_set_max: Annotated[str, typer.Option("--v-set-max", help="RRAM sweep top.")] = "1.5 V",
    v_reset_max: Annotated[
        str, typer.Option("--v-reset-max", help="RRAM sweep bottom.")
    ] = "-1.5 V",
    step: Annotated[str, typer.Option("--step", help="RRAM sweep step.")] = "10 mV",
    rate: Annotated[
        float,
        typer.Option(
            "--rate-v-s", help="RRAM sweep rate, V/s.", callback=finite(0, 1e9, lo_open=True)
        ),
    ] = 1.0,
    compliance: Annotated[
        str, typer.Option("--compliance", help="RRAM SET compliance.")
    ] = "100 uA",
    cycles: Annotated[
        int, typer.Option("--cycles", min=1, max=MAX_CYCLES, help="RRAM I-V cycles.")
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="RRAM random seed.")] = 0,
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="Draw the result to a PNG.")] = None,
) -> None:
    """Simulate one device and report spike times (felif), loop and PUND (fecap) or I-V (rram)."""
    from bruno_lab.devices import scenarios
    from bruno_lab.errors import BadInputError
    from bruno_lab.limits import check_points

    q = _q
    if plot is not None:
        from bruno_lab.safeio import check_output_path

        check_output_path(plot, "--plot", suffixes=(".png",))
    params = _params(kind, param or [])
    if kind == "felif":
        duration_s, dt_s = q(duration, "s", where="--duration"), q(dt, "s", where="--dt")
        if not (duration_s > 0 and dt_s > 0):
            raise BadInputError("--duration and --dt must be > 0")
        check_points(duration_s / dt_s * n_micro, "--duration/--dt/--n-micro", "the run")
        result = scenarios.felif_scenario(
            params, _segments(current or ["10 nA"]), duration_s, dt_s, n_micro
        )
        summary = f"felif: {result['n_spikes']} spikes in {result['duration_s']:g} s; first at " + (
            f"{result['spike_times_s'][0] * 1e3:.3f} ms" if result["spike_times_s"] else "none"
        )
    elif kind == "fecap":
        amplitude_v, frequency_hz = (
            q(amplitude, "V", where="--amplitude"),
            q(frequency, "Hz", where="--frequency"),
        )
        width_s = q(pund_width, "s", where="--pund-width")
        if not (0 < abs(amplitude_v) <= 100 and 0 < frequency_hz <= 1e9 and 0 < width_s <= 1):
            raise BadInputError(
                "--amplitude must be within (0, 100] V, --frequency within (0, 1 GHz], "
                "--pund-width within (0, 1 s]"
            )
        result = scenarios.fecap_scenario(
            params, amplitude_v, frequency_hz, width_s, n_domains=domains
        )
        lp, sw = result["loop"], result["pund"]["switched_polarization_c_m2"]
        summary = (
            f"fecap: Pr+ {lp['pr_pos_c_m2']:.4f} C/m², Pr- {lp['pr_neg_c_m2']:.4f} C/m², "
            f"Vc+ {lp['vc_pos_v']:.3f} V, Vc- {lp['vc_neg_v']:.3f} V, "
            f"imprint {lp['imprint_v']:.3f} V; PUND switched P {sw:.4f} C/m²"
        )
    else:
        v_set, v_reset = (
            q(v_set_max, "V", where="--v-set-max"),
            q(v_reset_max, "V", where="--v-reset-max"),
        )
        step_v = q(step, "V", where="--step")
        if not (abs(v_set) <= 100 and abs(v_reset) <= 100 and step_v > 0):
            raise BadInputError("--v-set-max/--v-reset-max within ±100 V, --step > 0")
        check_points(2 * (abs(v_set) + abs(v_reset)) / step_v * cycles, "--step", "the sweep")
        result = scenarios.rram_scenario(
            params,
            v_set,
            v_reset,
            step_v,
            rate,
            q(compliance, "A", where="--compliance"),
            cycles,
            seed,
        )
        c = result["cycles"][-1]
        summary = (
            f"rram: formed at {result['forming_voltage_v']} V; SET {c['v_set_v']} V, RESET "
            f"{c['v_reset_v']} V; G {c['conductance_before_s'] * 1e6:.1f} -> "
            f"{c['conductance_after_s'] * 1e6:.1f} µS"
        )
    if plot is not None:
        _plot(result, plot)
    typer.echo(summary, err=True)
    if as_json:
        from bruno_lab.cli import emit_json

        emit_json(result)


device_app.command("simulate")(simulate)


def _plot(result: dict[str, Any], path: Path) -> None:
    require_extra("plot", "device plots (--plot)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    kind = result["kind"]
    if kind == "felif":
        t_ms = [t * 1e3 for t in result["time_s"]]
        axes[0].plot(t_ms, result["voltage_v"])
        for s in result["spike_times_s"]:
            axes[0].axvline(s * 1e3, color="r", lw=0.5)
        axes[0].set(xlabel="time (ms)", ylabel="V at step end (V)", title="FeLIF membrane")
        axes[1].step(t_ms, [i * 1e9 for i in result["current_a"]], where="post")
        axes[1].set(xlabel="time (ms)", ylabel="input (nA)", title="input current")
    elif kind == "fecap":
        lp, pund = result["loop"], result["pund"]
        axes[0].plot(lp["voltage_v"], lp["polarization_c_m2"])
        axes[0].set(
            xlabel="V (V)", ylabel="P (C/m²)", title=f"P-V loop at {lp['frequency_hz']:g} Hz"
        )
        axes[1].plot([t * 1e6 for t in pund["time_s"]], [i * 1e6 for i in pund["current_a"]])
        axes[1].set(xlabel="time (µs)", ylabel="current (µA)", title="PUND")
    else:
        for c in result["cycles"]:
            axes[0].semilogy(c["voltage_v"], [abs(i) + 1e-15 for i in c["current_a"]])
            axes[1].plot(c["voltage_v"], [i * 1e6 for i in c["current_a"]])
        axes[0].set(xlabel="V (V)", ylabel="|I| (A)", title="RRAM I-V")
        axes[1].set(xlabel="V (V)", ylabel="I (µA)", title="RRAM I-V (linear)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
