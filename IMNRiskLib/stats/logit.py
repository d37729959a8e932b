"""The logistic function and Z95, the arithmetic of a risk and its Wald interval: one home for the
fits, the metrics and the scoring path, which loads with numpy alone (no scipy in Slicer's logic)."""

from __future__ import annotations

import math


Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975), as a literal: the scoring path need not import scipy.stats


def logistic(value: float) -> float:
    """1 / (1 + exp(-value)) without overflow, and with full relative precision for tiny risks."""
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    small = math.exp(value)
    return small / (1.0 + small)
