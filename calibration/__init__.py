"""Feature extraction, per-device fits and population statistics, into model cards."""
