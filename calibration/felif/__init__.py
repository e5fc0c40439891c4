"""The FeLIF fit (``felif-spikes``) by job; ``calibration.felif_fit`` is its public face.

``spec`` (model name, fitted and held parameters), ``options`` (the tuning constants, recorded
in every fit), ``segments`` (pulse trains and on-times), ``records`` (measurements -> fit
inputs), ``spikes_model`` (the batched predictor), ``start`` (global start table), ``grid``
(the valley grid search), ``noise`` (the pooled GLS noise model), ``optimum`` (per-device
optimum and scaled uncertainty).
"""
