"""The simulated lab: SCPI servers on loopback, backed by bruno_lab.devices physics."""
