"""Compact device models (FeCap, FeLIF neuron, RRAM) in PyTorch: batched, differentiable."""
