"""Fine-tune a saved (or converted) PixelBytes model on new data; its tokenizer settings come with it.

    python examples/finetune_saved_model.py --model runs/local --data my_folder --output runs/tuned --max-steps 100

Equivalent CLI: ``pixelbytes train --model_name_or_path runs/local --dataset my_folder --output_dir runs/tuned``.
"""

from __future__ import annotations

import argparse
import logging

from transformers import TrainingArguments

from pixelbytes.training import DataArguments, ModelArguments, run_training


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="saved model directory or Hub id")
    parser.add_argument("--data", required=True, help="folder with metadata.jsonl, parquet/arrow file or Hub id")
    parser.add_argument("--output", default="runs/tuned")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--seq-length", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=512)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    metrics = run_training(
        ModelArguments(model_name_or_path=args.model),
        DataArguments(dataset=args.data, seq_length=args.seq_length, stride=args.stride, validation_fraction=0.1),
        TrainingArguments(
            output_dir=args.output,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=4,
            eval_strategy="steps",
            eval_steps=max(1, args.max_steps // 2),
            save_strategy="no",
            report_to="none",
        ),
    )
    print({k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})


if __name__ == "__main__":
    main()
