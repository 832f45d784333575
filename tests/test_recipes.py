"""The Pokémon recipes (examples/recipes/*.yaml) parse into valid arguments and models; --config takes overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import HfArgumentParser, TrainingArguments

from pixelbytes.cli import config_arguments
from pixelbytes.training import DataArguments, ModelArguments
from pixelbytes.training.trainer import check_data_arguments, make_model, make_tokenizer

RECIPES = sorted((Path(__file__).resolve().parents[1] / "examples" / "recipes").glob("*.yaml"))


def parse(flags: list[str]) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    return HfArgumentParser((ModelArguments, DataArguments, TrainingArguments)).parse_args_into_dataclasses(args=flags)


def test_there_are_recipes():
    assert {p.stem for p in RECIPES} >= {"pokemon-paper", "pokemon-context", "pokemon-caption", "pokemon-stateful"}


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_builds_a_valid_model(recipe, tmp_path):
    model_args, data_args, _training_args = parse(config_arguments(str(recipe)) + ["--output_dir", str(tmp_path)])
    check_data_arguments(data_args)
    assert (data_args.image_stride, data_args.frame_stride, data_args.audio_stride) == (2, 2, 2)  # (2, 2) slicing
    assert data_args.validation_fraction == 0.1 and data_args.split_seed == 42
    model = make_model(model_args, make_tokenizer(model_args, data_args))
    assert model.config.hidden_size == 512 and model.config.embed_size == 126


def test_flags_after_the_config_override_it(tmp_path):
    recipe = next(p for p in RECIPES if p.stem == "pokemon-paper")
    _, data_args, training_args = parse(
        config_arguments(str(recipe)) + ["--seq_length", "64", "--stride", "32", "--output_dir", str(tmp_path)]
    )
    assert (data_args.seq_length, data_args.stride) == (64, 32)
    assert training_args.learning_rate == pytest.approx(1e-3)


def test_config_file_must_be_a_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="mapping"):
        config_arguments(str(bad))
