"""``pixelbytes evaluate``: whole-item scoring, codec baselines, the v1 protocol, pre-tokenised data, errors."""

from __future__ import annotations

import io
import json
import lzma
import math

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from folder_data import make_folder_dataset
from pixelbytes import ActionPixelBytesTokenizer
from pixelbytes.cli import main
from pixelbytes.evaluation.baselines import audio_levels, codec_baselines, gif_bits, png_bits, sprite_frames, xz_bits
from pixelbytes.evaluation.protocols import v1_segments, v1_table1
from pixelbytes.evaluation.runner import EvaluationOptions, run_evaluation
from pixelbytes.evaluation.scoring import check_scorable, modality_of_tokens, score_streams
from pixelbytes.evaluation.similarity import sequence_similarity
from pixelbytes.hub.eval_results import load_eval_results, model_index_metrics
from pixelbytes.layout import AUDIO, IMAGE, TEXT, batch_windows, stream_blocks
from pixelbytes.vocabulary import control_vocabulary
from tiny_models import layout_stream, tiny_model


@pytest.fixture(scope="module")
def streams() -> list[np.ndarray]:
    tok = ActionPixelBytesTokenizer()
    first = layout_stream(tok)[0].numpy()
    return [first, np.concatenate([first, first[3:50]]), first[:40]]


def full_forward_bits(model, stream: np.ndarray) -> np.ndarray:
    ids = torch.from_numpy(stream)[None]
    with torch.no_grad():
        log_probs = model(ids).logits[0, :-1].double().log_softmax(-1)
    return (-log_probs.gather(-1, ids[0, 1:, None]).squeeze(-1) / math.log(2)).numpy()


BACKBONES = [
    {},
    {"backbone": "mamba"},
    {"backbone": "attention"},
    {"caption_memory_buckets": 16, "grid_position_size": 8},
    {"objective": "context"},
]


@pytest.mark.parametrize("overrides", BACKBONES, ids=lambda o: "-".join(map(str, o.values())) or "lstm")
def test_chunked_scores_equal_one_forward_over_the_whole_item(overrides, streams):
    model = tiny_model(**overrides)
    expected = sum(full_forward_bits(model, s).sum() for s in streams)
    for chunk in (5, 16, 10_000):
        scores = score_streams(model, streams, chunk_length=chunk, batch_size=2)
        assert scores.overall.bits == pytest.approx(expected, rel=1e-5)
        assert scores.overall.tokens == sum(len(s) - 1 for s in streams)


def test_modalities_partition_the_tokens_and_count_units(streams):
    model = tiny_model()
    tok = ActionPixelBytesTokenizer()
    scores = score_streams(model, streams, chunk_length=11)
    per_modality = scores.modalities
    assert sum(m.bits for m in per_modality.values()) == pytest.approx(scores.overall.bits)
    assert sum(m.tokens for m in per_modality.values()) == scores.overall.tokens
    # units: content tokens among the predicted targets (everything but each item's first token)
    classes = tok.token_classes
    targets = np.concatenate([s[1:] for s in streams])
    assert per_modality["image"].units == int((classes[targets] == 4).sum())
    assert per_modality["audio"].units == int((classes[targets] == 5).sum())
    assert per_modality["text"].units == int((classes[targets] == 3).sum())
    metrics = scores.metrics()
    assert metrics["image_bits_per_pixel"] == pytest.approx(per_modality["image"].bits / per_modality["image"].units)
    assert metrics["perplexity"] == pytest.approx(2 ** metrics["bits_per_token"])
    kinds = modality_of_tokens(streams[0], classes, 2)
    assert kinds[0] == TEXT and IMAGE in kinds and kinds[-1] == AUDIO


def test_context_models_report_the_six_slot_accuracy(streams):
    metrics = score_streams(tiny_model(objective="context"), streams).metrics()
    assert 0.0 <= metrics["context_accuracy"] <= 1.0
    assert "context_accuracy" not in score_streams(tiny_model(), streams).metrics()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"objective": "diffusion", "bidirectional": True}, "objective 'diffusion'"),
     ({"bidirectional": True}, "causal backbone")],
)  # fmt: skip
def test_models_without_next_token_scores_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        check_scorable(tiny_model(**overrides))


def test_bad_streams_are_refused_before_scoring():
    model = tiny_model()
    with pytest.raises(ValueError, match="at least 2"):
        score_streams(model, [np.array([5])])
    with pytest.raises(ValueError, match="tokenizer and model do not match"):
        score_streams(model, [np.array([5, 400])])


def test_sprite_and_audio_are_recovered_exactly_from_the_stream():
    tok = ActionPixelBytesTokenizer(audio_normalization="none")
    vocab = tok.vocabulary
    rng = np.random.default_rng(3)
    index = rng.integers(0, vocab.num_colors, (3, 5, 4))  # (T, H, W) palette indices
    sprite = np.asarray(vocab.palette, dtype=np.uint8)[index]
    levels = rng.integers(0, vocab.num_levels, (2, 9))
    sound = np.asarray(vocab.levels, dtype=np.float32)[levels]
    ids = tok(images=sprite, audio=sound, return_tensors="np")["input_ids"][0]
    classes = tok.token_classes
    blocks = {kind: ids[s:e] for s, e, kind, _ in stream_blocks(classes[ids], 2)}
    np.testing.assert_array_equal(sprite_frames(blocks[IMAGE], classes, vocab.color_offset), index)
    decoded = audio_levels(blocks[AUDIO], classes, vocab.level_offset, 2)
    np.testing.assert_array_equal(decoded[: levels.shape[1]], levels.T)


def test_codecs_are_lossless_and_sized_in_bits():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 55, (3, 6, 5), dtype=np.uint8)
    palette = bytes(rng.integers(0, 256, 55 * 3, dtype=np.uint8))
    data = b"abcabcabc"
    assert xz_bits(data) == 8 * len(lzma.compress(data, preset=9))
    buffer = io.BytesIO()
    Image.fromarray(frames[0], mode="P").save(buffer, format="PNG", optimize=True)
    assert png_bits(frames[0], palette) > 0
    gif = io.BytesIO()
    images = [Image.fromarray(f, mode="P") for f in frames]
    for image in images:
        image.putpalette(palette)
    images[0].save(gif, format="GIF", save_all=True, append_images=images[1:], loop=0, duration=100)
    assert gif_bits(frames, palette) == 8 * gif.getbuffer().nbytes
    reread = Image.open(io.BytesIO(gif.getvalue()))
    for t in range(3):
        reread.seek(t)
        colours = np.frombuffer(palette, np.uint8).reshape(-1, 3)[frames[t]]
        assert np.array_equal(np.asarray(reread.convert("RGB")), colours)
    levels = rng.integers(0, 38, (100, 2)).astype(np.int16)
    buffer = io.BytesIO()
    soundfile.write(buffer, levels, 8000, format="FLAC", subtype="PCM_16")
    buffer.seek(0)
    np.testing.assert_array_equal(soundfile.read(buffer, dtype="int16")[0], levels)


def test_codec_baselines_report_bits_per_unit(streams):
    tok = ActionPixelBytesTokenizer()
    totals = codec_baselines(streams, tok.vocabulary, 2, 16000)
    metrics = totals.metrics()
    assert set(metrics) == {"xz", "gif", "png", "flac"}
    assert set(metrics["xz"]) == {"text_bits_per_character", "image_bits_per_pixel", "audio_bits_per_sample"}
    assert all(v > 0 for codec in metrics.values() for v in codec.values())
    with pytest.raises(ValueError, match="unknown codec"):
        codec_baselines(streams, tok.vocabulary, 2, 16000, codecs=("zip",))


def test_v1_segments_wrap_around_within_the_item():
    rows = v1_segments(100)
    assert rows.shape == (2, 80)
    assert rows[1, 0] == 80 and rows[1, 19] == 99 and rows[1, 20] == 0


def test_v1_table1_compares_the_windows_of_the_greedy_continuation(streams):
    model = tiny_model()
    tok = ActionPixelBytesTokenizer()
    table = v1_table1(model, streams[:1], context=20, steps=6)
    segment = streams[0][v1_segments(len(streams[0]), 20, 6)[0]]
    with torch.no_grad():
        out = model.generate(torch.from_numpy(segment[None, :20]), max_new_tokens=6, do_sample=False)[0].numpy()
    generated = batch_windows(out[None], tok.token_classes, 2)[0, 20:].reshape(-1)
    target = batch_windows(segment[None], tok.token_classes, 2)[0, 20:].reshape(-1)
    first = sequence_similarity(generated, target)
    assert table["published"]["segments"][0] == len(v1_segments(len(streams[0]), 20, 6))
    rows = len(v1_segments(len(streams[0]), 20, 6))
    if rows == 1:
        assert table["published"]["hamming"][0] == pytest.approx(first["hamming"])
    assert 0.0 <= table["corrected"]["hamming"][0] <= 1.0
    # the corrected variant drops the 4 always-zero cells, so it can only find more differences
    assert table["corrected"]["hamming"][0] >= table["published"]["hamming"][0]


@pytest.fixture()
def saved_model(tmp_path):
    model = tiny_model(embed_size=12, hidden_size=16, num_hidden_layers=1)
    path = tmp_path / "model"
    model.save_pretrained(path)
    ActionPixelBytesTokenizer().save_pretrained(path)
    return path


def test_evaluate_command_writes_results_report_and_figures(tmp_path, saved_model, capsys):
    data = make_folder_dataset(tmp_path / "data", n=12, corrupt=False)
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(saved_model), "--data", str(data), "--output-dir", str(out),
                 "--v1-max-segments", "8", "--figure-items", "2", "--device", "cpu",
                 "--dataset-name", "someone/pokemon"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| image (per pixel) |" in printed and "v1 Table 1 (published, 8 segments)" in printed
    results = json.loads((out / "eval_results.json").read_text())
    assert results["dataset"]["split"] == "validation" and results["dataset"]["num_items"] == 2  # ceil(12 * 0.1)
    assert results["dataset"]["name"] == "someone/pokemon"  # not the local path given as --data
    for key in ("image_bits_per_pixel", "audio_bits_per_sample", "text_bits_per_character", "bits_per_token"):
        assert results["metrics"][key] > 0
    assert results["baselines"]["gif"]["image_bits_per_pixel"] > 0
    assert results["protocols"]["v2_table2"]["slot5_accuracy"] == results["metrics"]["accuracy"]
    for name in results["figures"].values():
        assert Image.open(out / name).size[0] > 0
    assert "## Bits per unit" in (out / "evaluation_report.md").read_text()
    card_metrics = model_index_metrics(load_eval_results(out / "eval_results.json"))  # what the model card shows
    assert card_metrics["image_bits_per_pixel"] == results["metrics"]["image_bits_per_pixel"]
    assert results["protocols"]["v1_table1_corrected"]["segments"][0] == 8


def test_evaluate_scores_the_same_with_pretokenised_data(tmp_path, saved_model):
    data = make_folder_dataset(tmp_path / "data", n=10, corrupt=False)
    parquet = tmp_path / "ids.parquet"
    assert main(["tokenize", "--data", str(data), "--output", str(parquet)]) == 0
    common = {"model": str(saved_model), "split": "all", "protocols": ("scores",), "device": "cpu"}
    raw = run_evaluation(EvaluationOptions(data=str(data), output_dir=str(tmp_path / "a"), **common))
    pre = run_evaluation(EvaluationOptions(data=str(parquet), output_dir=str(tmp_path / "b"), **common))
    assert pre["metrics"] == pytest.approx(raw["metrics"])
    assert pre["dataset"]["num_tokens"] == raw["dataset"]["num_tokens"]


def test_pretokenised_data_of_another_tokenizer_is_refused(tmp_path, saved_model, capsys):
    data = make_folder_dataset(tmp_path / "data", n=4, corrupt=False)
    parquet = tmp_path / "ids.parquet"
    assert main(["tokenize", "--data", str(data), "--output", str(parquet), "--data-slicing", "2"]) == 0
    assert main(["evaluate", "--model", str(saved_model), "--data", str(parquet), "--split", "all"]) == 2
    assert "tokenizer/data mismatch" in capsys.readouterr().err


def test_bad_inputs_fail_before_any_long_work(tmp_path, saved_model, capsys):
    data = make_folder_dataset(tmp_path / "data", n=4, corrupt=False)
    # a tokenizer whose vocabulary differs from the model's
    mismatched = tmp_path / "mismatched"
    tiny_model(num_hidden_layers=1).save_pretrained(mismatched)
    ActionPixelBytesTokenizer(vocabulary=control_vocabulary()).save_pretrained(mismatched)
    assert main(["evaluate", "--model", str(mismatched), "--data", str(data)]) == 2
    assert "mismatch" in capsys.readouterr().err
    # a dataset without any modality column
    empty_columns = tmp_path / "nocolumns"
    empty_columns.mkdir()
    (empty_columns / "metadata.jsonl").write_text('{"name": "a"}\n{"name": "b"}\n')
    assert main(["evaluate", "--model", str(saved_model), "--data", str(empty_columns)]) == 2
    assert "no text / image / audio column" in capsys.readouterr().err
    # an empty split: one item leaves nothing for validation
    one = make_folder_dataset(tmp_path / "one", n=1, corrupt=False)
    assert main(["evaluate", "--model", str(saved_model), "--data", str(one)]) == 2
    assert "validation split" in capsys.readouterr().err
    # a folder has no test split
    assert main(["evaluate", "--model", str(saved_model), "--data", str(data), "--split", "test"]) == 2
    assert "no test split" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown protocol"):
        run_evaluation(EvaluationOptions(model=str(saved_model), data=str(data), protocols=("bleu",)))


def test_sprite_figure_completes_the_frame_in_its_shape(streams):
    """The Figure 3 rows: a tiny random model still completes each first frame with its reference's shape."""
    from pixelbytes.evaluation.runner import _sprite_rows

    tok = ActionPixelBytesTokenizer()
    rows = _sprite_rows(tiny_model(seed=3), tok, streams, count=2)
    assert len(rows) == 2
    for reference, generated in rows:
        assert reference.shape == generated.shape == (3, 4, 3)  # height 3, width 4, RGB
        assert (reference[:2] == generated[:2]).all()  # the top half (2 of 3 rows) is the prompt


def test_v1_table1_max_segments_spreads_over_every_item(streams):
    """max_segments=2 keeps the very first and the very last segment (of the last item), not the first two."""
    model, tok = tiny_model(), ActionPixelBytesTokenizer()
    every = np.concatenate([s[v1_segments(len(s), 20, 6)] for s in streams])  # (n, 26)

    def hamming_of(segment: np.ndarray) -> float:
        with torch.no_grad():
            out = model.generate(torch.from_numpy(segment[None, :20]), max_new_tokens=6, do_sample=False)
        generated = batch_windows(out.numpy(), tok.token_classes, 2)[0, 20:].reshape(-1)
        target = batch_windows(segment[None], tok.token_classes, 2)[0, 20:].reshape(-1)
        return sequence_similarity(generated, target)["hamming"]

    table = v1_table1(model, streams, context=20, steps=6, max_segments=2)
    assert table["published"]["segments"][0] == 2 < len(every)
    expected = (hamming_of(every[0]) + hamming_of(every[-1])) / 2
    assert table["published"]["hamming"][0] == pytest.approx(expected)
