"""A PixelBytes model as a controller, and the comparison with the baselines on held-out plants.

At every control step k the model controller holds the stream of the episode so far (``lead_in`` rest frames, then
frames ``(u_j, y_{j+1})`` for j < k, the last ``history`` of them) and appends ``horizon`` future frames whose
outputs are the desired ones (the setpoint preview, or with ``reference_tau`` a first-order approach to it from
the current output). It then chooses u_k:

* ``mode="infill"`` (an ``objective="diffusion"`` model): the future actions are placeholders (action levels) and
  ``model.infill`` fills them given the history and the desired outputs; u_k is the first filled action. This is
  the paper's scheme (action in-painting conditioned on the desired output).
* ``mode="score"`` (a causal model): every candidate action c (``num_candidates`` levels spread over [−1, 1]) is
  held over the horizon, the future frames ``(c, y*_j)`` are scored in one batched forward pass, and the candidate
  whose predicted outputs have the smallest expected squared error to the desired ones wins (the expectation is
  over the model's distribution of the level at each output position).

Tokens are the control vocabulary's 141 levels on the fixed normalisation of :mod:`.datasets`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .controllers import Controller
from .datasets import make_controller, random_setpoints
from .loop import METRIC_NAMES, Trajectory, episode_metrics, run_closed_loop, setpoint_schedule
from .plants import LTIPlant

__all__ = ["ModelController", "baseline_factories", "evaluate_controllers", "format_table", "plot_trajectories"]

logger = logging.getLogger(__name__)


def _check_tokenizer(tokenizer: Any) -> None:
    vocab = tokenizer.vocabulary
    if not vocab.has_levels or vocab.num_levels < 2:
        raise ValueError(
            "the tokenizer has no action levels (e.g. the v1 vocabulary): a controller needs the control vocabulary, "
            "ActionPixelBytesTokenizer(vocabulary=control_vocabulary(), audio_channels=2, audio_normalization='none')"
        )
    if tokenizer.audio_channels != 2:
        raise ValueError(f"a controller needs a stereo (u, y) tokenizer, got audio_channels={tokenizer.audio_channels}")
    if tokenizer.audio_normalization != "none":
        raise ValueError(
            f"a controller needs audio_normalization='none' (fixed scale), got {tokenizer.audio_normalization!r}: "
            "per-window min-max would change what each token means at every step"
        )


class ModelController(Controller):
    """Choose each action with a PixelBytes model (module docstring); ``mode`` defaults from the objective."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        horizon: int = 4,
        history: int = 60,
        mode: str | None = None,
        num_candidates: int = 11,
        num_steps: int | None = None,
        reference_tau: float | None = None,
        lead_in: int = 4,
        u_max: float = 1.0,
        y_scale: float = 1.0,
        dt: float = 0.5,
    ) -> None:
        _check_tokenizer(tokenizer)
        model.config.check_tokenizer(tokenizer)
        diffusion = model.config.objective == "diffusion"
        mode = mode or ("infill" if diffusion else "score")
        if mode == "infill" and not diffusion:
            raise ValueError("mode='infill' needs an objective='diffusion' model; use mode='score' for causal ones")
        if mode == "score" and (diffusion or model.config.bidirectional):
            raise ValueError("mode='score' needs a causal (unidirectional, non-diffusion) model")
        if mode not in ("infill", "score"):
            raise ValueError(f"mode must be 'infill' or 'score', got {mode!r}")
        if horizon < 1 or history < 1:
            raise ValueError(f"horizon and history must be >= 1, got {horizon}, {history}")
        window = getattr(model.config, "window_size", None)
        if model.config.bidirectional and window and 2 * (lead_in + history + horizon) > window:
            history = max(1, window // 2 - lead_in - horizon)
            logger.info("history cut to %d frames to fit the model's window of %d tokens", history, window)
        self.model, self.tokenizer, self.mode = model.eval(), tokenizer, mode
        self.name = f"pixelbytes-{mode}"
        self.horizon, self.history, self.num_candidates, self.num_steps = horizon, history, num_candidates, num_steps
        self.reference_tau, self.lead_in, self.u_max, self.y_scale, self.dt = reference_tau, lead_in, u_max, y_scale, dt
        vocab = tokenizer.vocabulary
        self.levels = np.asarray(vocab.levels_array, dtype=np.float64)
        self.level_offset = int(vocab.level_offset)
        self.reset()

    def reset(self) -> None:
        self._frames: list[tuple[float, float]] = [(0.0, 0.0)] * self.lead_in
        self._pending: float | None = None

    def _ids(self, values: np.ndarray) -> np.ndarray:
        """Level ids of normalised values (nearest level; values clipped to [−1, 1])."""
        clipped = np.clip(values, -1.0, 1.0)
        return self.level_offset + np.abs(clipped[..., None] - self.levels).argmin(-1)

    def _desired(self, y: float, preview: np.ndarray) -> np.ndarray:
        preview = np.concatenate([preview, np.full(max(0, self.horizon - len(preview)), preview[-1])])[: self.horizon]
        if self.reference_tau is None:
            return preview / self.y_scale
        a = math.exp(-self.dt / self.reference_tau)
        steps = np.arange(1, self.horizon + 1)
        return (preview + (y - preview) * a**steps) / self.y_scale

    @torch.no_grad()
    def __call__(self, y: float, preview: np.ndarray) -> float:
        if not np.isfinite(y):
            raise ValueError(f"the measured output is not finite ({y}): the loop diverged")
        if self._pending is not None:
            self._frames.append((self._pending, y / self.y_scale))
        past = np.asarray(self._frames[: self.lead_in] + self._frames[self.lead_in :][-self.history :]).ravel()
        desired = self._desired(y, np.asarray(preview, dtype=float))
        last_u = self._pending / self.u_max if self._pending is not None else 0.0
        device = next(self.model.parameters()).device
        if self.mode == "infill":
            future = np.stack([np.full(self.horizon, last_u), desired], axis=1).ravel()
            ids = torch.as_tensor(self._ids(np.concatenate([past, future])), device=device)[None]
            mask = torch.zeros_like(ids, dtype=torch.bool)
            start = past.size
            mask[0, start::2] = True  # the future actions
            filled = self.model.infill(ids, mask, num_steps=self.num_steps)
            u = float(self.levels[int(filled[0, start]) - self.level_offset])
        else:
            candidates = np.linspace(-1.0, 1.0, self.num_candidates)
            rows = [np.concatenate([past, np.stack([np.full(self.horizon, c), desired], axis=1).ravel()])
                    for c in candidates]  # fmt: skip
            ids = torch.as_tensor(self._ids(np.stack(rows)), device=device)
            logits = self.model(input_ids=ids).logits.float()
            level_slice = slice(self.level_offset, self.level_offset + self.levels.size)
            y_positions = past.size + 1 + 2 * np.arange(self.horizon)  # output tokens of the future frames
            probs = logits[:, y_positions - 1, level_slice].softmax(-1).cpu().numpy()  # (K, H, levels)
            errors = (self.levels[None, None, :] - desired[None, :, None]) ** 2
            expected = (probs * errors).sum(-1).sum(-1)
            u = float(candidates[int(np.argmin(expected))])
        self._pending = float(np.clip(u, -1.0, 1.0)) * self.u_max
        return self._pending


def evaluate_controllers(
    plants: list[LTIPlant],
    factories: dict[str, Callable[[LTIPlant], Controller]],
    steps: int = 200,
    seed: int = 0,
    segments: int = 2,
) -> dict[str, Any]:
    """Run every controller on every plant with the same seeded setpoints and noise; per-plant and mean metrics.

    Plant i gets setpoints from ``np.random.default_rng([seed, i])`` and the noise of ``[seed, i, 1]``; means are
    over the episodes that did not fail (``failed`` is the count of failures).
    """
    from tqdm.auto import tqdm

    results: dict[str, Any] = {"per_plant": {name: [] for name in factories}, "trajectories": {}}
    for i, plant in enumerate(tqdm(plants, desc="plants", disable=len(plants) < 4)):
        r = setpoint_schedule(steps, random_setpoints(np.random.default_rng([seed, i]), segments))
        for name, factory in factories.items():
            traj = run_closed_loop(plant, factory(plant), r, rng=np.random.default_rng([seed, i, 1]))
            results["per_plant"][name].append({"plant": plant.name, "order": plant.order, **episode_metrics(traj)})
            results["trajectories"].setdefault(plant.name, {})[name] = traj
    summary = {}
    for name, rows in results["per_plant"].items():
        ok = [row for row in rows if not row["failed"]]
        summary[name] = {m: (float(np.mean([row[m] for row in ok])) if ok else float("nan")) for m in METRIC_NAMES}
        summary[name]["failed"] = float(sum(row["failed"] for row in rows))
        summary[name]["episodes"] = float(len(rows))
    results["summary"] = summary
    return results


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """A Markdown table of :func:`evaluate_controllers`' summary."""
    lines = [
        "| controller | IAE | ISE | overshoot % | settling time (s) | effort Σu²dt | failures |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in summary.items():
        lines.append(
            f"| {name} | {m['iae']:.2f} | {m['ise']:.3f} | {m['overshoot_pct']:.1f} | {m['settling_time']:.1f} | "
            f"{m['effort']:.1f} | {int(m['failed'])}/{int(m['episodes'])} |"
        )
    return "\n".join(lines)


def plot_trajectories(trajectories: dict[str, Trajectory], path: str | Path, title: str = "") -> Path:
    """Plot y(t) (with the setpoint) and u(t) of several controllers on one plant to ``path`` (PNG)."""
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install pixelbytes[control]") from err

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_y, ax_u) = plt.subplots(2, 1, figsize=(7, 4.2), sharex=True, dpi=80)
    any_traj = next(iter(trajectories.values()))
    t = np.arange(any_traj.r.size) * any_traj.dt
    ax_y.step(t, any_traj.r, "k--", where="post", lw=1, label="setpoint")
    for name, traj in trajectories.items():
        n = traj.u.size
        ax_y.plot(np.arange(n + 1) * traj.dt, traj.y_true, lw=1.2, label=name)
        ax_u.step(np.arange(n) * traj.dt, traj.u, where="post", lw=1, label=name)
    ax_y.set_ylabel("y(t)")
    ax_u.set_ylabel("u(t)")
    ax_u.set_xlabel("t (s)")
    ax_y.legend(fontsize=7, ncol=4, loc="lower right")
    if title:
        ax_y.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def baseline_factories(seed: int = 0) -> dict[str, Callable[[LTIPlant], Controller]]:
    """PID (tuned per plant), LQG and bang-bang factories for :func:`evaluate_controllers`."""
    return {name: (lambda plant, n=name: make_controller(n, plant, seed=seed)) for name in ("pid", "lqg", "bang-bang")}
