"""Measurement protocols and the wafer-run orchestrator."""
