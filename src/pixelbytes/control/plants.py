"""Stable SISO LTI plants of order 1–5, discretised exactly, with an optional input delay and measurement noise.

A plant is ``dx/dt = A x + B u``, ``y = C x + D u`` (continuous time). :meth:`LTIPlant.discrete` gives the exact
zero-order-hold discretisation at the sample period ``dt`` (matrix exponential of the block matrix
``[[A, B], [0, 0]]``), augmented with a shift register when ``delay`` > 0 (``u`` reaches the plant ``delay``
samples late; for the input–output map this equals an output delay). Measurement noise (``noise_std``) is
Gaussian, added to ``y`` by :meth:`LTIPlant.measure`.

:func:`random_plant` draws the paper's parameter ranges (v3 Table "Parameter Ranges": orders 1–5, eigenvalues in
[−5, −0.1], delays 0–5, noise 0–0.1) as real eigenvalues in a random orthogonal basis with random B, C, keeping
only controllable and observable draws (modal test: distinct eigenvalues, every mode reached by B and
seen by C), and scales C so that the DC gain is a chosen ``gain``.
:meth:`LTIPlant.transfer_function` is the exact ``ss2tf`` (the original's ``-tr(A^k)/k`` denominator was only
right for order 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["LTIPlant", "UnstablePlantError", "random_plant"]


class UnstablePlantError(ValueError):
    """A plant with an eigenvalue of non-negative real part where a stable one is required."""


def _matrix(value: Any, shape: tuple[int, int] | None, name: str) -> np.ndarray:
    array = np.atleast_2d(np.asarray(value, dtype=np.float64))
    if shape is not None and array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


@dataclass(frozen=True, eq=False)
class LTIPlant:
    """A continuous SISO state-space plant sampled every ``dt`` seconds (see the module docstring)."""

    A: np.ndarray
    B: np.ndarray
    C: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))
    dt: float = 0.5
    delay: int = 0
    noise_std: float = 0.0
    name: str = "plant"

    def __post_init__(self) -> None:
        A = _matrix(self.A, None, "A")
        n = A.shape[0]
        if A.shape != (n, n) or n < 1:
            raise ValueError(f"A must be square, got shape {A.shape}")
        object.__setattr__(self, "A", A)
        object.__setattr__(self, "B", _matrix(np.reshape(self.B, (-1, 1)) if np.ndim(self.B) < 2 else self.B,
                                              (n, 1), "B"))  # fmt: skip
        object.__setattr__(self, "C", _matrix(np.reshape(self.C, (1, -1)), (1, n), "C"))
        object.__setattr__(self, "D", _matrix(self.D, (1, 1), "D"))
        if not (np.isfinite(self.dt) and self.dt > 0):
            raise ValueError(f"dt must be a positive number of seconds, got {self.dt}")
        if not isinstance(self.delay, (int, np.integer)) or self.delay < 0:
            raise ValueError(f"delay must be a non-negative integer number of samples, got {self.delay!r}")
        if not (np.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_transfer_function(cls, num: Any, den: Any, **kwargs: Any) -> LTIPlant:
        """A plant from the polynomial coefficients of G(s) = num(s) / den(s) (highest power first)."""
        from scipy import signal

        den = np.atleast_1d(np.asarray(den, dtype=float))
        if den.size < 2 or den[0] == 0:
            raise ValueError(f"the denominator must have degree >= 1 with a non-zero leading coefficient, got {den}")
        A, B, C, D = signal.tf2ss(np.atleast_1d(np.asarray(num, dtype=float)), den)
        return cls(A, B, C, D, **kwargs)

    # ---------------------------------------------------------------- properties
    @property
    def order(self) -> int:
        """The number of continuous states (the delay register not included)."""
        return self.A.shape[0]

    @cached_property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of A (the poles of the minimal plant), sorted."""
        return np.sort_complex(np.linalg.eigvals(self.A))

    @property
    def is_stable(self) -> bool:
        """Whether every eigenvalue of A has a strictly negative real part."""
        return bool(np.all(self.eigenvalues.real < 0))

    def require_stable(self) -> LTIPlant:
        """Return ``self``, or raise :class:`UnstablePlantError` naming the offending eigenvalues."""
        if not self.is_stable:
            bad = [complex(v) for v in self.eigenvalues if v.real >= 0]
            raise UnstablePlantError(
                f"{self.name}: a stable plant is required, but A has eigenvalue(s) {bad} with real part >= 0"
            )
        return self

    @cached_property
    def dc_gain(self) -> float:
        """Steady-state gain G(0) = D − C A⁻¹ B (stable plants only)."""
        self.require_stable()
        return float((self.D - self.C @ np.linalg.solve(self.A, self.B))[0, 0])

    def transfer_function(self) -> tuple[np.ndarray, np.ndarray]:
        """Exact ``(num, den)`` polynomial coefficients of G(s) (delay not included), highest power first."""
        from scipy import signal

        num, den = signal.ss2tf(self.A, self.B, self.C, self.D)
        num = np.trim_zeros(np.ravel(num), "f")
        return (num if num.size else np.zeros(1)), den

    @cached_property
    def _discrete(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        from scipy.linalg import expm

        n = self.order
        block = np.zeros((n + 1, n + 1))
        block[:n, :n], block[:n, n:] = self.A, self.B
        phi = expm(block * self.dt)
        Ad, Bd = phi[:n, :n], phi[:n, n:]
        Cd, Dd = self.C.copy(), self.D.copy()
        d = int(self.delay)
        if d:
            # z = [x, u_{k-1}, ..., u_{k-d}]: the plant is driven by u_{k-d}
            Az = np.zeros((n + d, n + d))
            Az[:n, :n] = Ad
            Az[:n, n + d - 1 : n + d] = Bd
            Az[n + 1 : n + d, n : n + d - 1] = np.eye(d - 1)
            Bz = np.zeros((n + d, 1))
            Bz[n, 0] = 1.0
            Cz = np.zeros((1, n + d))
            Cz[:, :n] = Cd
            if np.any(Dd):
                raise ValueError("a delayed plant must be strictly proper (D = 0)")
            return Az, Bz, Cz, np.zeros((1, 1))
        return Ad, Bd, Cd, Dd

    def discrete(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Exact zero-order-hold ``(Ad, Bd, Cd, Dd)`` at ``dt``, the delay register appended to the state."""
        return tuple(m.copy() for m in self._discrete)  # type: ignore[return-value]

    # ---------------------------------------------------------------- simulation
    def initial_state(self) -> np.ndarray:
        """The state at rest (zeros, delay register included)."""
        return np.zeros(self._discrete[0].shape[0])

    def output(self, state: np.ndarray, u: float = 0.0) -> float:
        """Noise-free output ``Cd z + Dd u``."""
        Cd, Dd = self._discrete[2], self._discrete[3]
        return float(Cd[0] @ state + Dd[0, 0] * u)

    def measure(self, state: np.ndarray, rng: np.random.Generator | None = None) -> float:
        """The measured output: noise-free output (D u excluded: u is not chosen yet) plus Gaussian noise."""
        y = self.output(state)
        if self.noise_std > 0:
            y += float((rng if rng is not None else np.random.default_rng()).normal(0.0, self.noise_std))
        return y

    def advance(self, state: np.ndarray, u: float) -> np.ndarray:
        """The state one sample later under the held input ``u``."""
        Ad, Bd = self._discrete[0], self._discrete[1]
        return Ad @ state + Bd[:, 0] * float(u)

    def simulate(self, u: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Open-loop response: ``y[k]`` (k = 0..N) measured before ``u[k]`` is applied, from rest; shape (N+1,)."""
        u = np.asarray(u, dtype=float).ravel()
        state = self.initial_state()
        out = np.empty(u.size + 1)
        for k, value in enumerate(u):
            out[k] = self.measure(state, rng)
            state = self.advance(state, value)
        out[-1] = self.measure(state, rng)
        return out

    def step_response(self, steps: int, amplitude: float = 1.0) -> np.ndarray:
        """Noise-free unit (or ``amplitude``) step response at t = 0, dt, …, steps·dt; shape (steps+1,)."""
        Ad, Bd, Cd, Dd = self._discrete
        state = np.zeros(Ad.shape[0])
        out = np.empty(steps + 1)
        for k in range(steps + 1):
            out[k] = float(Cd[0] @ state + Dd[0, 0] * amplitude)
            state = Ad @ state + Bd[:, 0] * amplitude
        return out

    # ---------------------------------------------------------------- description
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (``from_dict`` rebuilds the same plant)."""
        return {
            "name": self.name, "A": self.A.tolist(), "B": self.B.tolist(), "C": self.C.tolist(),
            "D": self.D.tolist(), "dt": self.dt, "delay": int(self.delay), "noise_std": self.noise_std,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LTIPlant:
        """Inverse of :meth:`to_dict`."""
        keys = ("A", "B", "C", "D", "dt", "delay", "noise_std", "name")
        return cls(**{k: data[k] for k in keys if k in data})

    def description(self) -> dict[str, str]:
        """The system columns of the dataset text (numerator, denominator, order, delay, noise, dt)."""
        num, den = self.transfer_function()
        return {
            "order": str(self.order),
            "numerator": json.dumps([round(float(v), 5) for v in num]),
            "denominator": json.dumps([round(float(v), 5) for v in den]),
            "delay_s": f"{self.delay * self.dt:g}",
            "noise_std": f"{self.noise_std:g}",
            "dt": f"{self.dt:g}",
        }


def _controllable_observable(A: np.ndarray, B: np.ndarray, C: np.ndarray, tol: float = 1e-6) -> bool:
    n = A.shape[0]
    ctrb = np.hstack([np.linalg.matrix_power(A, i) @ B for i in range(n)])
    obsv = np.vstack([C @ np.linalg.matrix_power(A, i) for i in range(n)])

    def well_ranked(m: np.ndarray) -> bool:
        s = np.linalg.svd(m, compute_uv=False)
        return bool(s[-1] > tol * s[0])

    return well_ranked(ctrb) and well_ranked(obsv)


def random_plant(
    order: int,
    rng: np.random.Generator,
    eig_range: tuple[float, float] = (-5.0, -0.1),
    gain_range: tuple[float, float] = (0.7, 1.4),
    max_delay: int = 0,
    max_noise: float = 0.0,
    dt: float = 0.5,
    name: str = "plant",
    max_tries: int = 100,
) -> LTIPlant:
    """A random stable, controllable and observable plant of ``order`` 1–5 (see the module docstring).

    Eigenvalues are uniform in ``eig_range`` (both ends negative), the DC gain uniform in ``gain_range``
    (positive), the delay uniform in 0..``max_delay`` samples, the noise std uniform in [0, ``max_noise``].
    """
    if not 1 <= order <= 5:
        raise ValueError(f"order must be 1..5, got {order}")
    low, high = sorted(eig_range)
    if high >= 0:
        raise UnstablePlantError(f"eig_range must be strictly negative for a stable plant, got {eig_range}")
    if not 0 < gain_range[0] <= gain_range[1]:
        raise ValueError(f"gain_range must be positive, got {gain_range}")
    for _ in range(max_tries):
        eigs = rng.uniform(low, high, order)
        q, _ = np.linalg.qr(rng.normal(size=(order, order)))
        A = q @ np.diag(eigs) @ q.T
        B = rng.normal(size=(order, 1))
        C = rng.normal(size=(1, order))
        # modal (PBH) test: distinct eigenvalues and every mode reached by B and seen by C
        gaps = np.diff(np.sort(eigs)) if order > 1 else np.array([1.0])
        if gaps.min() < 0.02 or np.abs(q.T @ B).min() < 0.1 or np.abs(C @ q).min() < 0.1:
            continue
        dc = float(-(C @ np.linalg.solve(A, B))[0, 0])
        modal = float(np.sum(np.abs((C @ q).ravel() * (q.T @ B).ravel()) / np.abs(eigs)))
        if abs(dc) < 0.2 * modal:
            continue  # modes that nearly cancel at DC: a tiny gain would need enormous inputs
        C = C * (rng.uniform(*gain_range) / dc)
        return LTIPlant(
            A, B, C, np.zeros((1, 1)), dt=dt, delay=int(rng.integers(0, max_delay + 1)),
            noise_std=float(rng.uniform(0.0, max_noise)) if max_noise > 0 else 0.0, name=name,
        )  # fmt: skip
    raise RuntimeError(f"no controllable, observable plant of order {order} in {max_tries} draws")
