"""Spiking-network training: FeLIF/LIF layers, RRAM synapses, BRUNO, baselines, data sets."""
