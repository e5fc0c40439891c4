"""Compact device models (FeCap, FeLIF neuron, RRAM) in PyTorch: batched, differentiable.

- ``params``: typed frozen parameter sets (unit, bounds, default per field), model-card JSON,
  device-to-device variability ``theta = mu*(1 + sigma*eps)``.
- ``fecap``: the ferroelectric equations (field, switching time, dP/dt, leakage, capacitance) and
  ``FeCapParams``; ``fecap_sim``: a multi-domain capacitor under any waveform
  (``fecap_simulate``); ``fecap_waveforms``: standard waveforms and P-V loop features.
- ``felif_core`` (leaf): the FeLIF neuron's parameters (composing ``FeCapParams``), state,
  reference Euler step and reset; ``felif``: the public face (windows, coarse step, simulation);
  ``felif_fast`` (fine window) and ``felif_sequence`` (bench-like resets) run the C kernels of
  ``kernels/`` (one Euler step, ``felif_step.h``), built and cached by ``ckernel``.
- ``rram``: Stanford-PKU filament-gap RRAM with forming, compliance, noise, relaxation, stuck cells.
- ``scenarios``: bench-free experiments behind ``bruno-lab device simulate``.
"""
