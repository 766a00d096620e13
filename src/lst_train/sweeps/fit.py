"""Power-law fit of loss against training compute: L(C) = a·C^(−b) + c."""

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit


@dataclass
class PowerLaw:
    a: float
    b: float
    c: float
    """Irreducible loss."""
    points: int
    """Points the fit used."""

    def __call__(self, flops):
        return self.a * np.asarray(flops, dtype=float) ** -self.b + self.c


def fit_power_law(flops, losses) -> PowerLaw | None:
    """Least-squares fit; None with fewer than 3 distinct FLOP values or when it does not converge.

    FLOPs are scaled by their geometric mean first: a·C^(−b) over 1e12..1e21 is numerically hopeless otherwise.
    """
    c_arr, l_arr = np.asarray(flops, dtype=float), np.asarray(losses, dtype=float)
    if len(np.unique(c_arr)) < 3:
        return None
    scale = math.exp(np.log(c_arr).mean())
    x = c_arr / scale

    def law(x, a, b, c):
        return a * x ** -b + c

    low = float(l_arr.min())
    start = (max(float(l_arr.max()) - low, 1e-3), 0.3, 0.5 * low)
    try:
        with warnings.catch_warnings():
            # 3 points for 3 parameters leave no covariance estimate; only the parameters are used.
            warnings.simplefilter("ignore", OptimizeWarning)
            (a, b, c), _ = curve_fit(law, x, l_arr, p0=start, bounds=([0, 0, 0], [np.inf, 5, low]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return PowerLaw(float(a * scale ** b), float(b), float(c), len(c_arr))
