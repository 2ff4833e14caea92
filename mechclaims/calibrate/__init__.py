"""Calibration of every decision rule at the alpha where it decides (0.05 / L), under structured nulls.

``bound``: the Clopper-Pearson bound and the size criterion (upper 95% bound <= 1.5 x alpha) that every committed
rate must meet. The per-claim calibrations and ``python -m mechclaims.calibrate`` (``make calibrate``) build on it.
"""
