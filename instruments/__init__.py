"""pyvisa drivers for the lab's instruments, each below a safety envelope."""
