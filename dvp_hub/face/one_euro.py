"""The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012): causal smoothing for live tracking.

A first-order low-pass whose cutoff rises with the signal's speed: still heads are smoothed hard (no
jitter), fast motion gets through with little lag. Per component of a vector:

    cutoff = min_cutoff + beta * |dx/dt|  (dx/dt itself low-passed at d_cutoff)
    alpha  = 1 / (1 + 1 / (2 pi cutoff dt)),   y = y_prev + alpha (x - y_prev)

min_cutoff (Hz) sets the smoothing of a still signal, beta how fast the cutoff opens with speed, in
the signal's own units per second (so pose and expression each get their own).
"""

from __future__ import annotations

import math

import numpy as np


class OneEuroFilter:
    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """The filtered value of ``x`` observed at time ``t`` (seconds, increasing)."""
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t <= self._t:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx = self._dx + self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + self._alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()
