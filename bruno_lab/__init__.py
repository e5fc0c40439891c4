"""bruno-lab: from a wafer of FeCap and RRAM devices to a trained spiking network and back."""

__version__ = "0.1.0"
