"""Train a PixelBytes LSTM on a local folder (``metadata.jsonl`` + images + WAVs) with the Trainer API directly.

    python examples/train_local_folder.py --data ../shared/data/pokemon-sample --output runs/pokemon \
        --max-steps 200 --image-stride 2 --audio-stride 2

The folder layout is the one of ``datasets``' imagefolder: one JSON object per line with ``text``,
``image`` and ``audio`` (paths relative to the folder). Any subset of the three columns works.
"""

from __future__ import annotations

import argparse
import logging

from transformers import Trainer, TrainingArguments

from pixelbytes import ActionPixelBytesTokenizer, PxByConfig, PxBySequenceModel
from pixelbytes.data import PxByDataCollator, PxByWindowDataset, load_samples, stream_lengths, tokenize_samples
from pixelbytes.training import make_compute_metrics, preprocess_logits_for_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="folder with metadata.jsonl")
    parser.add_argument("--output", default="runs/local", help="where the model is saved")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--seq-length", type=int, default=1024)
    parser.add_argument("--stride", type=int, default=512)
    parser.add_argument("--image-stride", type=int, default=2)
    parser.add_argument("--audio-stride", type=int, default=2)
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--embed-size", type=int, default=126)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    tokenizer = ActionPixelBytesTokenizer(image_stride=args.image_stride, frame_stride=args.image_stride,
                                          audio_stride=args.audio_stride)  # fmt: skip
    store = tokenize_samples(load_samples(args.data), tokenizer)  # Arrow-backed: windows are read from disk
    split = store.train_test_split(test_size=0.1, seed=42) if len(store) > 1 else {"train": store, "test": None}
    datasets = {
        name: PxByWindowDataset(part, stream_lengths(part), args.seq_length, args.stride)
        for name, part in split.items()
        if part is not None
    }
    config = PxByConfig.from_tokenizer(tokenizer, hidden_size=args.hidden_size, embed_size=args.embed_size)
    model = PxBySequenceModel(config)
    training_args = TrainingArguments(
        output_dir=args.output,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        learning_rate=1e-3,
        eval_strategy="steps" if "test" in datasets else "no",
        eval_steps=max(1, args.max_steps // 4),
        logging_steps=max(1, args.max_steps // 20),
        save_strategy="no",
        report_to="none",
        remove_unused_columns=False,  # our windows are tensors, not dataset columns
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=datasets["train"],
        eval_dataset=datasets.get("test"),
        data_collator=PxByDataCollator(),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(tokenizer.token_classes, config.objective),
        preprocess_logits_for_metrics=preprocess_logits_for_metrics,
    )
    trainer.train()
    if "test" in datasets:
        print(trainer.evaluate())
    trainer.save_model(args.output)
    tokenizer.save_pretrained(args.output)


if __name__ == "__main__":
    main()
