"""How faithfully the NIR export's FeLIF node and whole networks run in a NIR consumer (snnTorch,
through ``bruno_lab.train.nir_snntorch``), against our own device-faithful simulation.

Three tables (the figures of docs/nir.md):

1. constant current, 200 steps of 1 ms from rest, one FeLIF neuron at the design's defaults:
   spike counts of our FeLIF layer (BRUNO's neuron, 1000 micro-steps of 1 us per step, reset at
   the next step: what a trained network computes), of the exported IF run in snnTorch at the
   network's step, of the former export (IF on the membrane capacitance alone, reset to 0), and
   of the device on a bench (reset at each crossing, ``felif_run_sequence``) beside the exported
   IF's continuous-time count (NIR's own semantics, ``dt -> 0``);
2. mixed-sign drive (Gaussian per step, 64 neurons, 200 steps): mean |count difference| per
   neuron of the exported IF with its clip floor (``v_min``, honoured by our consumer) and of a
   plain NIR IF without it;
3. networks of the patterns task (20-32-4, LIF hidden; FeLIF or LIF outputs) trained for a few
   epochs per seed: output spike counts of snnTorch vs ours over the test split, as our consumer
   reads the graph (metadata honoured) and as a plain NIR consumer does (no floor, CubaLIF reset
   to v_reset instead of our subtractive reset), and how often the predicted class agrees.

    nice -n 10 .venv/bin/python benchmarks/nir_agreement.py [--seeds 1 2 3] [--epochs 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

import numpy as np
import torch

from bruno_lab.devices.felif import FeLIFParams, felif_initial_state, felif_run_sequence
from bruno_lab.train import nir_snntorch
from bruno_lab.train.data.patterns import make_patterns
from bruno_lab.train.felif_layer import FeLIFLayer
from bruno_lab.train.loop import TrainConfig, train
from bruno_lab.train.network import NetworkConfig, SpikingNetwork
from bruno_lab.train.nir_export import felif_if_parameters, neuron_node, to_nir

F64 = torch.float64
STEPS = 200
CURRENTS_NA = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 13, 13.5, 20, 50, 100, 300, 1000)


def _layer(n: int) -> FeLIFLayer:
    p = FeLIFParams.from_json({}, n=1, dtype=F64)
    p = FeLIFParams(**{k: getattr(p, k).expand(n).clone() for k in p.specs()})
    return FeLIFLayer(p.to(dtype=torch.float32), input_scale_a=1e-9, n_micro=1000).eval()


def _graph(node: Any, n: int, dt_s: float) -> Any:
    import nir

    size = np.array([n])
    return nir.NIRGraph(
        nodes={
            "input": nir.Input({"input": size}),
            "n": node,
            "output": nir.Output({"output": size}),
        },
        edges=[("input", "n"), ("n", "output")],
        metadata={"dt_s": dt_s},
    )


def _snn_counts(graph: Any, x: torch.Tensor, metadata: bool = True) -> torch.Tensor:
    return nir_snntorch.run(nir_snntorch.load(graph, metadata=metadata), x).sum((0, 1))


def _former_node(layer: FeLIFLayer) -> Any:
    """The export before format 2: ``r = input_scale*dt/C_tot`` per step, ``v_reset = 0``."""
    import nir

    from bruno_lab.devices.fecap import linear_capacitance_f

    p = layer.params().to(dtype=F64)
    r_per_step = layer.input_scale_a * layer.step_s / linear_capacitance_f(p)
    return nir.IF(r=(r_per_step / layer.step_s).numpy(), v_threshold=p.v_thr_v.numpy())


def constant_current() -> list[dict[str, Any]]:
    n = len(CURRENTS_NA)
    layer = _layer(n)
    x = torch.tensor(CURRENTS_NA, dtype=torch.float32).expand(STEPS, 1, n).clone()
    with torch.no_grad():
        ours = layer(x).sum((0, 1))
    dt = layer.step_s
    exported = _snn_counts(_graph(neuron_node(layer, dt), n, dt), x)
    former = _snn_counts(_graph(_former_node(layer), n, dt), x)
    p = layer.params().to(dtype=F64)
    device = felif_run_sequence(
        torch.tensor(CURRENTS_NA, dtype=F64)[None] * 1e-9,
        torch.tensor([1e-6], dtype=F64),
        torch.tensor([STEPS * 1000]),
        p,
        felif_initial_state(p, (n,), F64),
        max_spikes=1,
    ).n_spikes
    f = felif_if_parameters(layer)
    q_rest, q_reset = f["charge_to_spike_c"], f["charge_to_spike_after_reset_c"]
    charge = np.array(CURRENTS_NA) * 1e-9 * STEPS * dt
    continuous = np.where(charge >= q_rest, np.floor((charge - q_rest) / q_reset) + 1, 0)
    return [
        {
            "current_na": c,
            "felif_layer": int(ours[i]),
            "exported_if_snntorch": int(exported[i]),
            "former_export": int(former[i]),
            "device_at_crossing": int(device[i]),
            "exported_if_continuous": int(continuous[i]),
        }
        for i, c in enumerate(CURRENTS_NA)
    ]


def mixed_drive(seed: int = 0) -> list[dict[str, Any]]:
    n = 64
    layer = _layer(n)
    graph = _graph(neuron_node(layer, layer.step_s), n, layer.step_s)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for mean in (1.0, 3.0, 5.0):
        for sd in (0.0, 1.0, 2.0, 5.0, 10.0, 20.0):
            x = mean + sd * torch.randn(STEPS, 1, n, generator=gen)
            with torch.no_grad():
                ours = layer(x).sum((0, 1))
            floor = _snn_counts(graph, x)
            plain = _snn_counts(graph, x, metadata=False)
            rows.append(
                {
                    "mean_na": mean,
                    "sd_na": sd,
                    "felif_mean_count": float(ours.mean()),
                    "if_with_floor_mean_abs_diff": float((floor - ours).abs().mean()),
                    "plain_if_mean_abs_diff": float((plain - ours).abs().mean()),
                    "plain_if_mean_count": float(plain.mean()),
                }
            )
    return rows


def networks(seeds: list[int], epochs: int) -> list[dict[str, Any]]:
    data = make_patterns(seed=0)
    x = data.test_x.transpose(0, 1)
    rows = []
    for neuron in ("felif", "lif"):
        for seed in seeds:
            cfg = NetworkConfig(
                kind="classify", n_in=20, n_hidden=32, n_out=4, neuron=neuron, seed=seed
            )
            net = SpikingNetwork(cfg)
            result = train(net, data, TrainConfig(epochs=epochs, lr=2e-2, fidelity_samples=0))
            net.eval()
            with torch.no_grad():
                ours = net(x).double()
            graph = to_nir(net)
            row: dict[str, Any] = {
                "neuron": neuron,
                "seed": seed,
                "test_accuracy": result.final.test_accuracy if result.final else math.nan,
                "total_ours": float(ours.sum()),
            }
            for name, metadata in (("consumer", True), ("plain_nir", False)):
                theirs = nir_snntorch.run(nir_snntorch.load(graph, metadata=metadata), x).sum(0)
                diff = (theirs - ours).abs()
                row[f"{name}_relative_total"] = float((theirs.sum() - ours.sum()) / ours.sum())
                row[f"{name}_mean_abs_per_neuron"] = float(diff.mean())
                row[f"{name}_exact_fraction"] = float((diff == 0).double().mean())
                same = theirs.argmax(1) == ours.argmax(1)
                row[f"{name}_same_class"] = float(same.double().mean())
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out: dict[str, Any] = {
        "load": os.getloadavg(),
        "constant_current": constant_current(),
        "mixed_drive": mixed_drive(),
        "networks": networks(args.seeds, args.epochs),
    }
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return 0
    print(f"1. constant current, {STEPS} steps of 1 ms from rest (spike counts)")
    print(f"{'nA':>8} {'FeLIF':>6} {'IF/snn':>6} {'former':>7} {'device':>7} {'IF dt->0':>9}")
    for r in out["constant_current"]:
        print(
            f"{r['current_na']:8.2f} {r['felif_layer']:6d} {r['exported_if_snntorch']:6d} "
            f"{r['former_export']:7d} {r['device_at_crossing']:7d} "
            f"{r['exported_if_continuous']:9d}"
        )
    print("\n2. mixed-sign drive, 64 neurons: mean |count difference| per neuron vs FeLIF")
    print(f"{'mean nA':>8} {'sd nA':>6} {'FeLIF':>7} {'IF+floor':>9} {'plain IF':>9}")
    for r in out["mixed_drive"]:
        print(
            f"{r['mean_na']:8.1f} {r['sd_na']:6.1f} {r['felif_mean_count']:7.2f} "
            f"{r['if_with_floor_mean_abs_diff']:9.2f} {r['plain_if_mean_abs_diff']:9.2f}"
        )
    print("\n3. patterns networks (test split, 128 samples x 4 outputs): snnTorch vs ours")
    print(
        f"{'neuron':>6} {'seed':>4} {'acc':>5} {'total':>6} | consumer: {'rel':>6} {'|d|':>6} "
        f"{'class':>6} | plain NIR: {'rel':>6} {'|d|':>6} {'class':>6}"
    )
    for r in out["networks"]:
        print(
            f"{r['neuron']:>6} {r['seed']:4d} {r['test_accuracy']:5.3f} {r['total_ours']:6.0f} |"
            f"           {r['consumer_relative_total']:+6.3f} "
            f"{r['consumer_mean_abs_per_neuron']:6.3f} {r['consumer_same_class']:6.3f} |"
            f"            {r['plain_nir_relative_total']:+6.3f} "
            f"{r['plain_nir_mean_abs_per_neuron']:6.3f} {r['plain_nir_same_class']:6.3f}"
        )
    print(f"\nload {out['load'][0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
