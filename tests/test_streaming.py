"""Streaming (PxByStreamer / PxByIteratorStreamer) and BlockEndStoppingCriteria: events equal the final decode,
blocks end where the layout (DESIGN §5) says they do."""

from __future__ import annotations

import queue
import threading

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList

from pixelbytes import ActionPixelBytesTokenizer, generate_audio, generate_image
from pixelbytes.generation_pixelbytes import (
    AudioChunk,
    BlockEnd,
    BlockEndStoppingCriteria,
    PxByIteratorStreamer,
    PxByStreamer,
    SpriteFrame,
    SpriteRow,
    TextChunk,
)
from tiny_models import layout_stream, tiny_model


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3)


def of(events, kind):
    return [e for e in events if isinstance(e, kind)]


def feed(streamer: PxByStreamer, ids: list[int], prompt: int = 1) -> None:
    """Drive a streamer like generate(): the prompt (1, prompt), then one (1,) tensor per token, then end()."""
    streamer.put(torch.tensor([ids[:prompt]]))
    for token in ids[prompt:]:
        streamer.put(torch.tensor([token]))
    streamer.end()


def assert_events_match(events, decoded, images: bool = True) -> None:
    """Text chunks join to the decoded text, rows / frames equal the decoded frames' (rectangular sprites),
    each clip's chunks concatenate to the decoded clip."""
    assert "".join(e.text for e in of(events, TextChunk)) == decoded.text
    if images:
        rows = [e.pixels for e in of(events, SpriteRow)]
        frames = [e.pixels for e in of(events, SpriteFrame)]
        expected = [np.asarray(f) for image in decoded.images for f in image]
        assert len(frames) == len(expected)
        for got, want in zip(frames, expected):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(np.stack(rows), np.concatenate(expected))
    chunks = of(events, AudioChunk)
    for clip_index, clip in enumerate(decoded.audios):
        block_chunks = [c for c in chunks if c.block == sorted({c.block for c in chunks})[clip_index]]
        np.testing.assert_array_equal(np.concatenate([c.samples for c in block_chunks], axis=1), clip)
        assert [c.start for c in block_chunks] == list(np.cumsum([0] + [c.samples.shape[1] for c in block_chunks]))[:-1]


def test_streamer_events_equal_the_decoded_stream(tok):
    """text + 2-frame sprite + stereo clip, then a second caption: every event kind against decode_multimodal."""
    ids = layout_stream(tok)[0].tolist() + tok("the end")["input_ids"]
    streamer = PxByStreamer(tok, skip_prompt=False, audio_chunk_steps=4)
    feed(streamer, ids)
    events = streamer.events
    assert_events_match(events, tok.decode_multimodal(ids))
    assert [e.kind for e in of(events, BlockEnd)] == ["text", "image", "audio", "text"]
    assert [len(c.samples[0]) for c in of(events, AudioChunk)] == [4, 2]  # 6 steps in chunks of 4
    assert of(events, SpriteRow)[0].image.size == (4, 1) and of(events, SpriteFrame)[1].image.size == (4, 3)
    assert all(c.sampling_rate == 16000 for c in of(events, AudioChunk))


def test_streamer_skips_the_prompt_but_keeps_its_layout(tok):
    """A prompt that ends inside a sprite row: only generated events, the row streamed whole."""
    ids = layout_stream(tok)[0].tolist()
    prompt = 12  # "a heart\n" + the first 4 pixels of row 0
    streamer = PxByStreamer(tok)
    feed(streamer, ids, prompt=prompt)
    events = streamer.events
    assert not of(events, TextChunk)
    decoded = tok.decode_multimodal(ids)
    np.testing.assert_array_equal(of(events, SpriteRow)[0].pixels, np.asarray(decoded.frames[0])[0])
    assert len(of(events, SpriteFrame)) == 2
    assert {e.block for e in events if not isinstance(e, (TextChunk, AudioChunk))} == {0, 1}  # sprite, then clip


def test_streamer_with_generate_image_and_audio(tok, model):
    streamer = PxByStreamer(tok, audio_chunk_steps=3)
    _, decoded = generate_image(model, tok, "a red heart", 3, 5, frames=2, streamer=streamer, do_sample=True)
    rows = [e.pixels for e in of(streamer.events, SpriteRow)]
    assert len(rows) == 6
    np.testing.assert_array_equal(np.stack(rows), np.concatenate([np.asarray(f) for f in decoded[0].frames]))
    assert [e.frame for e in of(streamer.events, SpriteFrame)] == [0, 1]
    streamer.events.clear()
    _, decoded = generate_audio(model, tok, "boom", 7, streamer=streamer, do_sample=True)
    chunks = of(streamer.events, AudioChunk)
    assert [c.samples.shape for c in chunks] == [(2, 3), (2, 3), (2, 1)]
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks], axis=1), decoded[0].audio)


def test_streamer_text_of_free_generation(tok, model):
    streamer = PxByStreamer(tok)
    prompt = tok("hello", return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=40, do_sample=True, streamer=streamer)
    generated = out[0, prompt["input_ids"].shape[1] :]
    assert_events_match(streamer.events, tok.decode_multimodal(generated), images=False)  # rows may be ragged


def test_streamer_refuses_batches(tok, model):
    batch = tok(["a", "bb"], padding=True, padding_side="left", return_tensors="pt")
    with pytest.raises(ValueError, match="batch size 1 only"):
        model.generate(**batch, max_new_tokens=3, streamer=PxByStreamer(tok))
    with pytest.raises(ValueError, match="batch size 1 only"):
        generate_image(model, tok, ["a", "bb"], 2, 2, streamer=PxByStreamer(tok))


def test_iterator_streamer_in_a_thread(tok, model):
    streamer = PxByIteratorStreamer(tok, timeout=30)
    result = {}

    def run():
        result["out"] = generate_image(model, tok, "a red heart", 2, 3, streamer=streamer)

    job = threading.Thread(target=run)
    job.start()
    events = list(streamer)
    job.join()
    rows = [e.pixels for e in of(events, SpriteRow)]
    np.testing.assert_array_equal(np.stack(rows), np.asarray(result["out"][1][0].frames[0]))
    assert isinstance(events[-1], BlockEnd)
    with pytest.raises(queue.Empty):
        next(PxByIteratorStreamer(tok, timeout=0.01))


# ---------------------------------------------------------------------------------------------- stopping
def run_criteria(tok, ids, prompt, **kwargs):
    """Call the criteria like generate() does (one more token per call); the first length where it says stop."""
    criteria = BlockEndStoppingCriteria(tok.token_classes, tok.audio_channels, **kwargs)
    for length in range(prompt + 1, len(ids) + 1):
        if bool(criteria(torch.tensor([ids[:length]]), None)[0]):
            return length, criteria.end_positions[0]
    return None, criteria.end_positions[0]


def test_block_end_criteria_on_a_hand_made_stream(tok):
    caption = tok("a heart")["input_ids"]  # 8 tokens, ends with 2
    sprite = layout_stream(tok)[0].tolist()[len(caption) :]
    image_len = 2 * 3 * 5  # 2 frames of 3 rows x (4 colours + separator)
    audio_len = len(sprite) - image_len  # 6 steps + terminator frame, stereo
    ids = caption + sprite + tok("ok")["input_ids"]
    p = len(caption)
    # the image ends when a byte / level follows its frame separator: one token later, end_position cuts it
    assert run_criteria(tok, ids, p, kinds="image") == (p + image_len + 1, p + image_len)
    assert run_criteria(tok, ids, p, kinds="image", image_frames=1) == (p + 15, p + 15)
    assert run_criteria(tok, ids, p, kinds="image", image_frames=2) == (p + image_len, p + image_len)
    assert audio_len == 14
    assert run_criteria(tok, ids, p, kinds="audio") == (p + image_len + audio_len,) * 2
    assert run_criteria(tok, ids, p, kinds="text") == (len(ids),) * 2  # the prompt caption does not count
    assert run_criteria(tok, ids, p, kinds=("image", "audio"), count=2) == (p + image_len + audio_len,) * 2
    assert run_criteria(tok, ids, p, kinds="image", count=2) == (None, None)
    assert run_criteria(tok, ids, 2, kinds="text") == (p, p)  # a caption opened in the prompt counts


def test_block_end_criteria_rejects_bad_arguments(tok):
    for kwargs in ({"kinds": "video"}, {"kinds": ()}, {"count": 0}, {"image_frames": 0}):
        with pytest.raises(ValueError):
            BlockEndStoppingCriteria(tok.token_classes, 2, **kwargs)


class ForceTokens(LogitsProcessor):
    """Forces row b to write ``scripts[b]`` after the prompt (then anything)."""

    def __init__(self, scripts, prompt_length):
        self.scripts, self.prompt_length = scripts, prompt_length

    def __call__(self, input_ids, scores):
        j = input_ids.shape[1] - self.prompt_length
        for b, script in enumerate(self.scripts):
            if j < len(script):
                scores[b] = float("-inf")
                scores[b, script[j]] = 0.0
        return scores


def test_block_end_criteria_stops_generation_per_row(tok, model):
    """Batch of 3 (left-padded): each row stops at the end of its own first generated caption; generation ends
    when the last row does."""
    batch = tok(["a", "bb", "the heart"], padding=True, padding_side="left", return_tensors="pt")
    width = batch["input_ids"].shape[1]
    scripts = [tok("hi")["input_ids"], tok("a longer one")["input_ids"], [58, 1, 59, 2] + tok("x")["input_ids"]]
    criteria = BlockEndStoppingCriteria(tok.token_classes, tok.audio_channels, kinds="text")
    with torch.no_grad():
        out = model.generate(
            **batch,
            max_new_tokens=60,
            logits_processor=LogitsProcessorList([ForceTokens(scripts, width)]),
            stopping_criteria=StoppingCriteriaList([criteria]),
        )
    assert criteria.end_positions == [width + 3, width + 13, width + 6]  # the sprite of row 2 is not a caption
    assert out.shape[1] == width + 13
    for row, script, end in zip(out, scripts, criteria.end_positions):
        assert row[width:end].tolist() == script[: end - width]


def test_block_end_criteria_follows_beam_reordering(tok):
    criteria = BlockEndStoppingCriteria(tok.token_classes, tok.audio_channels, kinds="text")
    a, b = tok("x")["input_ids"], tok("y")["input_ids"]
    criteria(torch.tensor([a + [40], b + [41]]), None)
    # rows swapped (beam search picked the other parent for each), then both finish their caption
    stop = criteria(torch.tensor([b + [41, 2], a + [40, 3]]), None)
    assert stop.tolist() == [True, False] and criteria.end_positions == [len(b) + 2, None]
