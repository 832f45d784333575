"""Baseline controllers: bang-bang (as the original dataset), PID tuned per plant, LQG.

Every controller is called once per sample: ``u = controller(y, preview)`` with ``y`` the measured output and
``preview`` the setpoints from now on (``preview[0]`` is the current setpoint; only the model controller looks
further ahead). ``reset()`` starts a new episode. Outputs are clipped to ``[-u_max, u_max]`` (the actuator).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .plants import LTIPlant

__all__ = ["LQG", "PID", "BangBang", "Controller", "tune_pid"]

logger = logging.getLogger(__name__)


class Controller:
    """Base class: ``reset()`` then one ``__call__(y, preview) -> u`` per sample."""

    name = "controller"

    def reset(self) -> None:
        """Forget the episode (integrators, estimates, held actions)."""

    def __call__(self, y: float, preview: np.ndarray) -> float:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Parameters written into the dataset text."""
        return {}


class BangBang(Controller):
    """The original dataset's controller: every ``period`` samples ``u = a·sign(r − y) + b·U(−1, 1)``, held between.

    ``a = 0.66`` and ``b = 0.33`` as ``generate_gymsetpoint_dataset``; ``b`` > 0 makes the actions diverse.
    """

    name = "bang-bang"

    def __init__(self, amplitude: float = 0.66, noise: float = 0.33, period: int = 1, u_max: float = 1.0,
                 seed: int | None = 0) -> None:  # fmt: skip
        if period < 1:
            raise ValueError(f"period must be >= 1 sample, got {period}")
        self.amplitude, self.noise, self.period, self.u_max, self.seed = amplitude, noise, int(period), u_max, seed
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._k, self._u = 0, 0.0

    def __call__(self, y: float, preview: np.ndarray) -> float:
        if self._k % self.period == 0:
            u = self.amplitude * np.sign(preview[0] - y) + self.noise * self._rng.uniform(-1.0, 1.0)
            self._u = float(np.clip(u, -self.u_max, self.u_max))
        self._k += 1
        return self._u

    def params(self) -> dict[str, Any]:
        return {"amplitude": self.amplitude, "noise": self.noise, "period": self.period}


class PID(Controller):
    """Discrete PID: derivative on the measurement (first-order filter), clamping anti-windup, saturation."""

    name = "pid"

    def __init__(self, kp: float, ki: float, kd: float, dt: float, u_max: float = 1.0, filter_steps: float = 2.0):
        for label, value in (("kp", kp), ("ki", ki), ("kd", kd)):
            if not np.isfinite(value):
                raise ValueError(f"PID gain {label} must be finite, got {value}")
        self.kp, self.ki, self.kd, self.dt, self.u_max = float(kp), float(ki), float(kd), float(dt), float(u_max)
        self.alpha = filter_steps / (filter_steps + 1.0)
        self.reset()

    def reset(self) -> None:
        self._integral, self._deriv, self._y_prev = 0.0, 0.0, None

    def __call__(self, y: float, preview: np.ndarray) -> float:
        e = float(preview[0]) - y
        dy = 0.0 if self._y_prev is None else (y - self._y_prev) / self.dt
        self._y_prev = y
        self._deriv = self.alpha * self._deriv + (1.0 - self.alpha) * dy
        integral = self._integral + e * self.dt
        u = self.kp * e + self.ki * integral - self.kd * self._deriv
        clipped = float(np.clip(u, -self.u_max, self.u_max))
        if clipped == u or np.sign(e) != np.sign(u):  # clamping: integrate only when not pushing the saturation
            self._integral = integral
        return clipped

    def params(self) -> dict[str, Any]:
        return {"kp": round(self.kp, 4), "ki": round(self.ki, 4), "kd": round(self.kd, 4)}


def _step_cost(plant: LTIPlant, gains: np.ndarray, setpoint: float, steps: int, u_max: float) -> float:
    Ad, Bd, Cd, _ = plant._discrete
    b, c = Bd[:, 0], Cd[0]
    pid = PID(*gains, dt=plant.dt, u_max=u_max)
    x = np.zeros(Ad.shape[0])
    cost, u_prev = 0.0, 0.0
    preview = np.array([setpoint])
    for _ in range(steps):
        y = float(c @ x)
        if not abs(y) < 1e3:
            return 1e6
        u = pid(y, preview)
        cost += abs(setpoint - y) + 0.05 * abs(u - u_prev)
        u_prev = u
        x = Ad @ x + b * u
    return cost * plant.dt


def tune_pid(plant: LTIPlant, setpoint: float = 0.5, steps: int = 120, u_max: float = 1.0,
             max_iter: int = 200) -> PID:  # fmt: skip
    """A PID for ``plant``: SIMC rule on a first-order-plus-dead-time fit, refined by Nelder–Mead.

    The fit reads the noise-free open-loop step response: gain K = G(0), dead time θ = the delay plus the time to
    reach 5 % of K, time constant τ = t(63 %) − θ. SIMC (Skogestad 2003) with τc = max(θ, dt) gives
    ``kp = τ / (K (τc + θ))``, ``Ti = min(τ, 4 (τc + θ))``. Nelder–Mead then minimises, on the simulated
    closed-loop step to ``setpoint`` over ``steps`` samples, ``Σ (|e| + 0.05 |Δu|) dt`` (IAE with a small
    penalty on input moves) over log-gains. Unstable plants raise :class:`~.plants.UnstablePlantError`.
    """
    from scipy.optimize import minimize

    plant.require_stable()
    K = plant.dc_gain
    response = plant.step_response(max(steps, 400)) / K
    t = np.arange(response.size) * plant.dt
    theta = float(t[np.argmax(response >= 0.05)])
    tau = max(float(t[np.argmax(response >= 0.632)]) - theta, plant.dt)
    tau_c = max(theta, plant.dt)
    kp = tau / (K * (tau_c + theta))
    ti = min(tau, 4 * (tau_c + theta))
    start = np.log([kp, kp / ti, 0.1 * kp * plant.dt])

    def objective(logs: np.ndarray) -> float:
        return _step_cost(plant, np.exp(logs), setpoint, steps, u_max)

    result = minimize(objective, start, method="Nelder-Mead", options={"maxiter": max_iter, "xatol": 1e-3,
                                                                        "fatol": 1e-4})  # fmt: skip
    best = result.x if result.fun <= objective(start) else start
    kp, ki, kd = np.exp(best)
    logger.debug("tune_pid %s: kp=%.3f ki=%.3f kd=%.3f cost=%.4f", plant.name, kp, ki, kd, result.fun)
    return PID(kp, ki, kd, dt=plant.dt, u_max=u_max)


class LQG(Controller):
    """LQG setpoint following: steady-state Kalman filter + LQR ``u = −K x̂ + N̄ r`` on the exact discrete model.

    LQR weights: ``Q = q_y CᵀC + 1e-6 I``, ``R = r_u``; Kalman: process noise ``process_var · I``, measurement
    noise ``max(noise_std², 1e-6)``. ``N̄`` makes the noise-free closed loop settle exactly on ``r``. Inputs are
    clipped to ``[-u_max, u_max]`` (then the loop is no longer exactly optimal) and the filter uses the clipped
    input. The plant must be stable, controllable and observable (delay included through its shift register).
    """

    name = "lqg"

    def __init__(self, plant: LTIPlant, q_y: float = 1.0, r_u: float = 0.1, process_var: float = 1e-4,
                 u_max: float = 1.0) -> None:  # fmt: skip
        from scipy.linalg import solve_discrete_are

        plant.require_stable()
        A, B, C, _ = plant.discrete()
        n = A.shape[0]
        Q = q_y * C.T @ C + 1e-6 * np.eye(n)
        P = solve_discrete_are(A, B, Q, np.array([[r_u]]))
        self.K = np.linalg.solve(B.T @ P @ B + r_u, B.T @ P @ A)  # (1, n)
        W = max(plant.noise_std**2, 1e-6)
        S = solve_discrete_are(A.T, C.T, process_var * np.eye(n), np.array([[W]]))
        self.L = (S @ C.T / (C @ S @ C.T + W)).ravel()  # (n,)
        closed = np.linalg.solve(np.eye(n) - (A - B @ self.K), B)
        self.Nbar = float(1.0 / (C @ closed)[0, 0])
        self.A, self.b, self.c = A, B[:, 0], C[0]
        self.q_y, self.r_u, self.u_max = q_y, r_u, u_max
        self.reset()

    def reset(self) -> None:
        self._x = np.zeros(self.A.shape[0])

    def __call__(self, y: float, preview: np.ndarray) -> float:
        x = self._x + self.L * (y - float(self.c @ self._x))
        u = float(np.clip(-float(self.K[0] @ x) + self.Nbar * float(preview[0]), -self.u_max, self.u_max))
        self._x = self.A @ x + self.b * u
        return u

    def params(self) -> dict[str, Any]:
        return {"q_y": self.q_y, "r_u": self.r_u}
