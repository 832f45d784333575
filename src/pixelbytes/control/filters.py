"""The Game Boy speaker channel of the Pokémon dataset and the paper's second-order speaker model H(s).

* :func:`gameboy_speaker` is what the dataset actually did (``pokemon.py:process_audio``): FFT-resample to
  8192 Hz, 4th-order Butterworth band-pass 100–3000 Hz (an 8th-order IIR), resample back to the original length,
  normalise by the peak. The filter runs as second-order sections (the same filter as the original ``b, a`` +
  ``lfilter``, numerically safer at these low normalised frequencies).
* :func:`speaker_transfer_function` is the paper's H(s) = K·ωn² / (s² + 2ζωn·s + ωn²), never implemented in the
  original. Note that it is a second-order LOW-pass (resonant at ωn for small ζ), not the band-pass that the
  dataset used; :func:`speaker_filter` applies it to a signal (bilinear transform).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "GAMEBOY_BAND_HZ",
    "GAMEBOY_RATE",
    "gameboy_bandpass",
    "gameboy_frequency_response",
    "gameboy_speaker",
    "speaker_filter",
    "speaker_frequency_response",
    "speaker_transfer_function",
]

GAMEBOY_RATE = 8192
GAMEBOY_BAND_HZ = (100.0, 3000.0)


def gameboy_bandpass(order: int = 4, band_hz: tuple[float, float] = GAMEBOY_BAND_HZ, rate: int = GAMEBOY_RATE):
    """Second-order sections of the Butterworth band-pass of the dataset (``butter(4, [100, 3000] / 4096)``)."""
    from scipy import signal

    low, high = band_hz
    if not 0 < low < high < rate / 2:
        raise ValueError(f"band {band_hz} Hz must satisfy 0 < low < high < rate/2 = {rate / 2}")
    return signal.butter(order, [low, high], btype="band", fs=rate, output="sos")


def gameboy_frequency_response(freqs_hz: np.ndarray, rate: int = GAMEBOY_RATE) -> np.ndarray:
    """Complex response of :func:`gameboy_bandpass` at ``freqs_hz`` (at the 8192 Hz speaker rate)."""
    from scipy import signal

    _, h = signal.sosfreqz(gameboy_bandpass(rate=rate), worN=np.asarray(freqs_hz, dtype=float), fs=rate)
    return h


def gameboy_speaker(x: np.ndarray, rate: int, normalize: bool = True) -> np.ndarray:
    """The dataset's "state" channel: ``x`` (N,) at ``rate`` Hz through the Game Boy speaker, same length.

    Resample to 8192 Hz (FFT), band-pass, resample back to N samples, then (``normalize``) divide by the peak.
    """
    from scipy import signal

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size < 2:
        raise ValueError(f"expected a mono signal of shape (N,), N >= 2, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the signal contains NaN or infinite values")
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    n_low = max(2, int(round(x.size * GAMEBOY_RATE / rate)))
    low = signal.resample(x, n_low)
    filtered = signal.sosfilt(gameboy_bandpass(), low)
    y = signal.resample(filtered, x.size)
    if normalize:
        peak = np.max(np.abs(y))
        y = y / peak if peak > 0 else y
    return y


def _check_speaker(gain: float, wn: float, zeta: float) -> None:
    if not (np.isfinite(gain) and wn > 0 and zeta > 0):
        raise ValueError(
            f"H(s) needs a finite gain K, wn > 0 and zeta > 0 (stable), got K={gain}, wn={wn}, zeta={zeta}"
        )


def speaker_transfer_function(gain: float, wn: float, zeta: float):
    """The paper's H(s) = K·ωn² / (s² + 2ζωn·s + ωn²) as a ``scipy.signal.TransferFunction`` (ωn in rad/s)."""
    from scipy import signal

    _check_speaker(gain, wn, zeta)
    return signal.TransferFunction([gain * wn**2], [1.0, 2.0 * zeta * wn, wn**2])


def speaker_frequency_response(w: np.ndarray, gain: float, wn: float, zeta: float) -> np.ndarray:
    """H(jω) at the angular frequencies ``w`` (rad/s), in closed form."""
    _check_speaker(gain, wn, zeta)
    s = 1j * np.asarray(w, dtype=float)
    return gain * wn**2 / (s**2 + 2 * zeta * wn * s + wn**2)


def speaker_filter(x: np.ndarray, rate: int, gain: float, wn: float, zeta: float) -> np.ndarray:
    """Filter ``x`` (N,) sampled at ``rate`` Hz through H(s) (bilinear transform; ωn must be well below Nyquist)."""
    from scipy import signal

    _check_speaker(gain, wn, zeta)
    if wn >= np.pi * rate:
        raise ValueError(f"wn = {wn} rad/s is above the Nyquist frequency {np.pi * rate} rad/s")
    b, a = signal.bilinear([gain * wn**2], [1.0, 2.0 * zeta * wn, wn**2], fs=rate)
    return signal.lfilter(b, a, np.asarray(x, dtype=np.float64))
