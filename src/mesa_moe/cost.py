"""The Beta-rational adaptation cost of docs/method.md §2.

C(f) = 1 / ((f + α_shift) · (100 − f)²), the reciprocal of a Beta(α=2, β=3) shape over the R_mix
rank percentile f ∈ [0, 100): dear at the saturated head (f → 0), very dear at the fragile tail
(f → 100), cheapest in the shoulder. With α_shift = a the minimum sits at f* = (100 − 2a) / 3.
"""

from __future__ import annotations

import numpy as np


def beta_rational_cost(f: np.ndarray, alpha_shift: float = 1.0) -> np.ndarray:
    """C(f) for rank percentiles f [n] in [0, 100); α_shift > 0 keeps the head finite."""
    f = np.asarray(f, dtype=np.float64)
    if alpha_shift <= 0:
        raise ValueError(f"selection.alpha_shift must be > 0, got {alpha_shift}")
    if np.any((f < 0) | (f >= 100)):
        raise ValueError("rank percentiles f must lie in [0, 100)")
    return 1.0 / ((f + alpha_shift) * (100.0 - f) ** 2)


def cost_minimum(alpha_shift: float) -> float:
    """Where C is smallest: d/df [(f + a)(100 − f)²] = 0 ⇒ f* = (100 − 2a) / 3."""
    return (100.0 - 2.0 * alpha_shift) / 3.0


def normalised_cost(f: np.ndarray, alpha_shift: float = 1.0) -> np.ndarray:
    """Ĉ = C / max C over one layer's experts [E], so Ĉ ∈ (0, 1] in every layer and model."""
    cost = beta_rational_cost(f, alpha_shift)
    return cost / cost.max()
