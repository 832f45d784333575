"""Closed-loop simulation of a plant with a controller, and the setpoint-following metrics.

Stream convention (the stereo "audio" of the dataset): frame k is ``(u_k, y_{k+1})``: the action, then the
output it leads to one sample later. A controller sees the history up to ``y_k`` when it chooses ``u_k``.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .controllers import Controller
from .plants import LTIPlant

__all__ = ["ClosedLoopDivergenceError", "Trajectory", "episode_metrics", "run_closed_loop", "setpoint_schedule"]

logger = logging.getLogger(__name__)

METRIC_NAMES = ("iae", "ise", "overshoot_pct", "settling_time", "effort", "failed")


class ClosedLoopDivergenceError(FloatingPointError):
    """The closed loop produced a NaN / infinite value or left the divergence limit."""


@dataclass
class Trajectory:
    """One episode: ``u`` (N,), measured ``y`` (N+1,), noise-free ``y_true`` (N+1,), setpoints ``r`` (N,)."""

    u: np.ndarray
    y: np.ndarray
    y_true: np.ndarray
    r: np.ndarray
    dt: float
    diverged: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def frames(self) -> np.ndarray:
        """The stereo stream ``(2, N)``: row 0 = u_k, row 1 = y_{k+1} (measured)."""
        return np.stack([self.u, self.y[1:]]).astype(np.float32)


def _check_setpoints(setpoints: np.ndarray, limit: float = 1.0) -> np.ndarray:
    r = np.asarray(setpoints, dtype=float).ravel()
    if r.size == 0:
        raise ValueError("setpoints must not be empty")
    if not np.all(np.isfinite(r)):
        raise ValueError("setpoints contain NaN or infinite values")
    if np.any(np.abs(r) >= limit):
        raise ValueError(
            f"setpoint(s) {r[np.abs(r) >= limit][:3].tolist()} outside the normalised range (-{limit}, {limit}): "
            "the stream holds u and y in [-1, 1] (see the README's control section)"
        )
    return r


def setpoint_schedule(steps: int, levels: list[float] | np.ndarray) -> np.ndarray:
    """A piecewise-constant schedule: ``levels`` in equal segments over ``steps`` samples (checked in (−1, 1))."""
    levels = _check_setpoints(np.asarray(levels, dtype=float))
    edges = np.linspace(0, steps, levels.size + 1).round().astype(int)
    r = np.empty(steps)
    for value, lo, hi in zip(levels, edges[:-1], edges[1:]):
        r[lo:hi] = value
    return r


def run_closed_loop(
    plant: LTIPlant,
    controller: Controller,
    setpoints: np.ndarray,
    rng: np.random.Generator | None = None,
    u_max: float = 1.0,
    preview: int = 16,
    divergence_limit: float = 100.0,
    raise_on_divergence: bool = False,
) -> Trajectory:
    """Run ``controller`` on ``plant`` (from rest) for ``len(setpoints)`` samples.

    The controller gets the measured output and the next ``preview`` setpoints (the last one repeated past the
    end). A NaN / infinite action is always a :class:`ClosedLoopDivergenceError` error. An output that is not finite or
    leaves ``|y| <= divergence_limit`` stops the episode, marked ``diverged`` (a failure in the metrics), or raises
    :class:`ClosedLoopDivergenceError` with ``raise_on_divergence``.
    """
    plant.require_stable()
    r = _check_setpoints(setpoints)
    n = r.size
    padded = np.concatenate([r, np.full(preview, r[-1])])
    rng = rng if rng is not None else np.random.default_rng(0)
    controller.reset()
    state = plant.initial_state()
    u = np.zeros(n)
    y = np.zeros(n + 1)
    y_true = np.zeros(n + 1)
    diverged = False
    y_true[0], y[0] = plant.output(state), plant.measure(state, rng)
    for k in range(n):
        action = controller(float(y[k]), padded[k : k + preview])
        if not np.isfinite(action):
            raise ClosedLoopDivergenceError(f"{controller.name} returned a non-finite action {action} at step {k}")
        u[k] = float(np.clip(action, -u_max, u_max))
        state = plant.advance(state, u[k])
        y_true[k + 1] = plant.output(state)
        y[k + 1] = y_true[k + 1] + (rng.normal(0.0, plant.noise_std) if plant.noise_std > 0 else 0.0)
        if not (np.isfinite(y_true[k + 1]) and abs(y_true[k + 1]) <= divergence_limit):
            message = f"{plant.name} with {controller.name}: |y| = {y_true[k + 1]} at step {k + 1} (diverged)"
            if raise_on_divergence:
                raise ClosedLoopDivergenceError(message)
            logger.warning(message)
            diverged = True
            u, y, y_true, r = u[: k + 1], y[: k + 2], y_true[: k + 2], r[: k + 1]
            break
    return Trajectory(u=u, y=y, y_true=y_true, r=r, dt=plant.dt, diverged=diverged)


def episode_metrics(traj: Trajectory, band: float = 0.05, min_band: float = 0.02) -> dict[str, float]:
    """IAE, ISE (of r_k − y_true_k), overshoot (% of each setpoint step, worst), settling time (s, mean over steps;
    within ``max(band·|step|, min_band)`` for good; never settling counts as the segment's length), control effort
    ``Σ u² dt`` and ``failed`` (1.0 when the loop diverged)."""
    if traj.diverged:
        return {"iae": float("nan"), "ise": float("nan"), "overshoot_pct": float("nan"),
                "settling_time": float("nan"), "effort": float("nan"), "failed": 1.0}  # fmt: skip
    r, y, u, dt = traj.r, traj.y_true[: traj.r.size], traj.u, traj.dt
    e = r - y
    changes = np.flatnonzero(np.diff(np.concatenate([[0.0], r])) != 0)
    if changes.size == 0 or changes[0] != 0:
        changes = np.concatenate([[0], changes])
    bounds = np.concatenate([changes, [r.size]])
    overshoots, settles = [], []
    y_full = traj.y_true
    for lo, hi in itertools.pairwise(bounds):
        target = r[lo]
        step = target - y_full[lo]
        if abs(step) < 1e-9:
            continue
        seg = y_full[lo + 1 : hi + 1]
        overshoots.append(max(0.0, float(np.max(np.sign(step) * (seg - target)))) / abs(step) * 100.0)
        outside = np.flatnonzero(np.abs(seg - target) > max(band * abs(step), min_band))
        settles.append(min((outside[-1] + 2) if outside.size else 1, hi - lo) * dt)
    return {
        "iae": float(np.sum(np.abs(e)) * dt),
        "ise": float(np.sum(e**2) * dt),
        "overshoot_pct": float(max(overshoots)) if overshoots else 0.0,
        "settling_time": float(np.mean(settles)) if settles else 0.0,
        "effort": float(np.sum(u**2) * dt),
        "failed": 0.0,
    }
