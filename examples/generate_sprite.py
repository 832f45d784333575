"""Generate a sprite (and its sound) from a caption with a trained model; save GIF + WAV.

    pixelbytes demo --output-dir demo_output            # trains the demo model (a few minutes)
    python examples/generate_sprite.py --model demo_output/model \
        --caption "a big green heart blinking on black" --frames 2 --output sprite
"""

from __future__ import annotations

import argparse
import math

import torch

from pixelbytes import ActionPixelBytesTokenizer, PxBySequenceModel, generate_audio, generate_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model directory (with its tokenizer) or Hub id")
    parser.add_argument("--caption", default="a big green heart blinking on black")
    parser.add_argument("--height", type=int, default=16)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--sound-seconds", type=float, default=0.064)
    parser.add_argument("--sample", action="store_true", help="sample (temperature 0.8) instead of greedy")
    parser.add_argument("--output", default="sprite", help="output path stem (.gif / .png and .wav are added)")
    args = parser.parse_args()

    tokenizer = ActionPixelBytesTokenizer.from_pretrained(args.model)
    model = PxBySequenceModel.from_pretrained(args.model).eval()
    sampling = {"do_sample": True, "temperature": 0.8} if args.sample else {"do_sample": False}
    torch.manual_seed(0)
    sequences, decoded = generate_image(
        model, tokenizer, args.caption, args.height, args.width, args.frames, **sampling
    )
    steps = math.ceil(args.sound_seconds * tokenizer.sampling_rate / tokenizer.audio_stride)
    _, decoded = generate_audio(model, tokenizer, sequences[0].tolist(), steps, **sampling)
    result = decoded[0]
    image_path = f"{args.output}.gif" if args.frames > 1 else f"{args.output}.png"
    result.save_image(image_path)
    result.save_audio(f"{args.output}.wav")
    print(
        f"{result.text!r}: {len(result.frames)} frame(s) of {result.frames[0].size} -> {image_path}, "
        f"sound {result.audio.shape} -> {args.output}.wav"
    )


if __name__ == "__main__":
    main()
