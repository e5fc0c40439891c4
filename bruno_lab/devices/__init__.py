"""Compact device models (FeCap, FeLIF neuron, RRAM) in PyTorch: batched, differentiable.

- ``params``: typed frozen parameter sets (unit, bounds, default per field), model-card JSON,
  device-to-device variability ``theta = mu*(1 + sigma*eps)``.
- ``fecap``: the ferroelectric equations (field, switching time, dP/dt, leakage, capacitance),
  re-exporting ``fecap_simulate`` (multi-domain capacitor under any waveform, ``fecap_sim``) and
  the waveforms and P-V loop features (``fecap_waveforms``).
- ``felif``: the FeLIF neuron (reference Euler step and window, coarse step, simulation); its fused
  fine-window fast path is ``felif_fast`` (C kernel built and loaded by ``felif_ccall``).
- ``rram``: Stanford-PKU filament-gap RRAM with forming, compliance, noise, relaxation, stuck cells.
- ``scenarios``: bench-free experiments behind ``bruno-lab device simulate``.
"""
