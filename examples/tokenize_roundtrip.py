"""Tokenise a caption + animated sprite + stereo sound into one PixelBytes stream, and back.

Everything is generated in code (no download): a blinking 16x16 heart, its caption and a short
chirp whose second channel is a smoothed copy of the first. The script prints the stream layout and
writes the decoded sprite (GIF), the contact sheet (PNG) and the sound (WAV) to ``--output``.

    python examples/tokenize_roundtrip.py --output demo_output
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from pixelbytes import ActionPixelBytesTokenizer

logger = logging.getLogger("tokenize_roundtrip")

HEART = [
    "................",
    "..XXX......XXX..",
    ".XXXXX....XXXXX.",
    "XXXXXXX..XXXXXXX",
    "XXXXXXXXXXXXXXXX",
    "XXXXXXXXXXXXXXXX",
    ".XXXXXXXXXXXXXX.",
    "..XXXXXXXXXXXX..",
    "...XXXXXXXXXX...",
    "....XXXXXXXX....",
    ".....XXXXXX.....",
    "......XXXX......",
    ".......XX.......",
    "................",
    "................",
    "................",
]


def make_sample(sampling_rate: int = 16000) -> tuple[str, Image.Image, np.ndarray]:
    """A caption, a 2-frame animated sprite and a stereo (2, N) sound."""
    mask = np.array([[ch == "X" for ch in row] for row in HEART])
    frames = []
    for colour in ((228, 0, 88), (0, 0, 0)):
        pixels = np.zeros((16, 16, 3), dtype=np.uint8)
        pixels[mask] = colour
        frames.append(Image.fromarray(pixels, "RGB"))
    t = np.arange(int(0.1 * sampling_rate)) / sampling_rate
    cry = np.sin(2 * np.pi * (440 + 2000 * t) * t) * np.exp(-8 * t)
    smoothed = np.convolve(cry, np.ones(16) / 16, mode="same")
    return "a small red heart blinking on black", frames, np.stack((cry, smoothed)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("demo_output"))
    parser.add_argument("--audio-stride", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    tokenizer = ActionPixelBytesTokenizer(audio_stride=args.audio_stride)
    caption, frames, sound = make_sample(tokenizer.sampling_rate)
    animation = np.stack([np.asarray(f) for f in frames])  # (F, H, W, 3)

    encoded = tokenizer(text=caption, images=animation, audio=sound, return_context_ids=True, return_tensors="np")
    ids = encoded["input_ids"][0]
    logger.info("stream of %d tokens, context_ids %s", len(ids), encoded["context_ids"].shape)

    decoded = tokenizer.decode_multimodal(ids)
    logger.info("text back: %r", decoded.text)
    logger.info("image back: %d frame(s) of %s", len(decoded.frames), decoded.frames[0].size)
    logger.info("audio back: %s at %d Hz", decoded.audio.shape, decoded.sampling_rate)

    args.output.mkdir(parents=True, exist_ok=True)
    decoded.save_image(args.output / "sprite.gif")
    decoded.save_audio(args.output / "sound.wav")
    sheet = Image.new("RGB", (16 * len(frames) * 2, 16))
    for i, frame in enumerate(frames + decoded.frames):
        sheet.paste(frame, (16 * i, 0))
    sheet.resize((sheet.width * 8, sheet.height * 8), Image.NEAREST).save(args.output / "contact_sheet.png")
    (args.output / "tokens.txt").write_text(tokenizer.decode(ids.tolist()))
    logger.info("wrote %s", ", ".join(sorted(p.name for p in args.output.iterdir())))


if __name__ == "__main__":
    main()
