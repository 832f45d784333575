"""Action-state control with PixelBytes (issue #15): filters, plants, controllers, datasets, closed loops.

Not imported by ``import pixelbytes`` and not part of the Hub remote code; needs ``scipy``
(``pip install pixelbytes[control]``, which also brings matplotlib for the plots).

* :mod:`.filters` — the Game Boy speaker channel of the Pokémon dataset and the paper's second-order H(s).
* :mod:`.plants` — stable LTI plants of order 1–5, discretised exactly (zero-order hold), optional delay / noise.
* :mod:`.controllers` — bang-bang (the original dataset), PID tuned per plant, LQG.
* :mod:`.loop` — closed-loop simulation and metrics (IAE, ISE, overshoot, settling time, effort, failures).
* :mod:`.datasets` — the PixelBytes-OptimalControl folder / Hub dataset builders.
* :mod:`.model_controller` — a PixelBytes model as a controller (diffusion infill or causal candidate scoring).
"""

from .controllers import LQG, PID, BangBang, Controller, tune_pid
from .filters import (
    gameboy_bandpass,
    gameboy_frequency_response,
    gameboy_speaker,
    speaker_filter,
    speaker_frequency_response,
    speaker_transfer_function,
)
from .loop import ClosedLoopDivergenceError, Trajectory, episode_metrics, run_closed_loop, setpoint_schedule
from .plants import LTIPlant, UnstablePlantError, random_plant

__all__ = [
    "LQG",
    "PID",
    "BangBang",
    "ClosedLoopDivergenceError",
    "Controller",
    "LTIPlant",
    "Trajectory",
    "UnstablePlantError",
    "episode_metrics",
    "gameboy_bandpass",
    "gameboy_frequency_response",
    "gameboy_speaker",
    "random_plant",
    "run_closed_loop",
    "setpoint_schedule",
    "speaker_filter",
    "speaker_frequency_response",
    "speaker_transfer_function",
    "tune_pid",
]
