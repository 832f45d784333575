"""generate() with the PxByCache: cached == full recompute, padding, beams, sampling, layout-constrained decoding."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import warnings

import numpy as np
import pytest
import torch
import transformers
from packaging import version
from transformers import GenerationMixin, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from pixelbytes import (
    ActionPixelBytesTokenizer,
    AudioLogitsProcessor,
    BatchLayoutTracker,
    ImageGridLogitsProcessor,
    PxByCache,
    PxByModelOutput,
    generate_audio,
    generate_image,
)
from pixelbytes.generation_pixelbytes import CACHE_NAME
from tiny_models import tiny_model


@pytest.fixture(scope="module")
def tok() -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer()


PROMPTS = ["a red heart", "hi", "pixel bytes: 12 colours"]


def greedy(model, batch, **kwargs):
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=24, do_sample=False, **kwargs)


@pytest.mark.parametrize("n_prompts", [1, 3])
def test_cached_greedy_equals_recompute(tok, n_prompts):
    model = tiny_model()
    batch = tok(PROMPTS[:n_prompts], padding=True, padding_side="left", return_tensors="pt")
    cached = greedy(model, batch)
    recomputed = greedy(model, batch, use_cache=False)
    assert cached.shape == (n_prompts, batch["input_ids"].shape[1] + 24)
    assert torch.equal(cached, recomputed)


def test_left_padded_rows_generate_as_alone(tok):
    model = tiny_model(seed=1)
    batch = tok(PROMPTS, padding=True, padding_side="left", return_tensors="pt")
    together = greedy(model, batch)
    width = batch["input_ids"].shape[1]
    for i, prompt in enumerate(PROMPTS):
        alone = greedy(model, tok(prompt, return_tensors="pt"))
        assert torch.equal(alone[0, -24:], together[i, width:])


def test_image_prompt_continuation_matches_recompute(tok):
    model = tiny_model(seed=2)
    sprite = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    batch = tok(text="x", images=sprite, return_tensors="pt")
    batch["input_ids"] = batch["input_ids"][:, :-5]  # stop in the middle of the second frame
    batch["attention_mask"] = batch["attention_mask"][:, :-5]
    assert torch.equal(greedy(model, batch), greedy(model, batch, use_cache=False))


def test_beam_search_cached_equals_recompute(tok):
    model = tiny_model(seed=3)
    batch = tok(PROMPTS[:2], padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        kwargs = {"max_new_tokens": 12, "num_beams": 3, "num_return_sequences": 2, "do_sample": False}
        cached = model.generate(**batch, **kwargs)
        recomputed = model.generate(**batch, use_cache=False, **kwargs)
    assert cached.shape[0] == 4
    assert torch.equal(cached, recomputed)


def test_sampling_options(tok):
    model = tiny_model(seed=4)
    batch = tok(PROMPTS[:2], padding=True, padding_side="left", return_tensors="pt")
    kwargs = {
        "max_new_tokens": 16,
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 20,
        "top_p": 0.9,
        "repetition_penalty": 1.3,
        "num_return_sequences": 3,
    }
    with torch.no_grad():
        torch.manual_seed(0)
        cached = model.generate(**batch, **kwargs)
        torch.manual_seed(0)
        recomputed = model.generate(**batch, use_cache=False, **kwargs)
    assert cached.shape == (6, batch["input_ids"].shape[1] + 16)
    assert torch.equal(cached, recomputed)
    assert int(cached.max()) < 151


def test_stopping_criteria_stop_early(tok):
    class StopAfter(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), input_ids.shape[1] >= self.limit, dtype=torch.bool)

    criterion = StopAfter()
    batch = tok("abc", return_tensors="pt")
    criterion.limit = batch["input_ids"].shape[1] + 5
    out = tiny_model().generate(**batch, max_new_tokens=50, stopping_criteria=StoppingCriteriaList([criterion]))
    assert out.shape[1] == criterion.limit


def test_reorder_cache_keeps_state_and_layout(tok):
    model = tiny_model(seed=5)
    sprite = np.random.default_rng(1).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    streams = [tok(text=t, images=sprite, return_tensors="pt")["input_ids"][0, :-6] for t in ("ab", "cd")]
    ids = torch.stack(streams)  # same length (same image, 2-char captions)
    with torch.no_grad():
        cache = model(input_ids=ids, use_cache=True).cache
        cache.reorder_cache(torch.tensor([1, 0, 1]))  # rows: cd, ab, cd
        follow = torch.tensor([[60, 61, 1, 62], [70, 71, 72, 1], [2, 80, 81, 82]])  # diverging continuations
        stepped = []
        for j in range(follow.shape[1]):
            out = model(input_ids=follow[:, j : j + 1], cache=cache, use_cache=True)
            cache = out.cache
            stepped.append(out.logits[:, 0])
        for row, source in enumerate([1, 0, 1]):
            full = torch.cat((ids[source], follow[row]))[None]
            reference = model(input_ids=full, use_cache=False).logits[0, -follow.shape[1] :]
            torch.testing.assert_close(torch.stack([s[row] for s in stepped]), reference, atol=1e-5, rtol=1e-5)


def test_batch_tracker_reorder_independent_copies(tok):
    classes = tok.token_classes
    tracker = BatchLayoutTracker(classes, 2, 2)
    tracker.push_sequence(np.array([[59, 60, 1, 61, 62], [39, 40, 41, 42, 43]]))
    tracker.reorder([0, 0, 1])
    tracker.push([2, 63, 44])
    tracker.push([70, 1, 45])
    alone = BatchLayoutTracker(classes, 2, 1)
    alone.push_sequence(np.array([[59, 60, 1, 61, 62, 63, 1]]))
    assert tracker.contexts()[1] == alone.contexts()[0]


@pytest.mark.parametrize("frames", [1, 2])
def test_generate_image_always_decodes_to_requested_size(tok, frames):
    model = tiny_model(seed=6)
    for seed in range(3):
        torch.manual_seed(seed)
        _, decoded = generate_image(model, tok, "a sprite", height=3, width=5, frames=frames, do_sample=True)
        out = decoded[0]
        assert len(out.frames) == frames
        assert all(frame.size == (5, 3) for frame in out.frames)
        assert out.text == "a sprite"


def test_generate_audio_decodes_to_requested_length(tok):
    model = tiny_model(seed=7)
    torch.manual_seed(0)
    sequences, decoded = generate_audio(model, tok, "a chirp", num_steps=9, do_sample=True)
    assert decoded[0].audio.shape == (2, 9)
    assert sequences[0, -2:].tolist() == [1, 2]


def test_structure_processors_mask_scores(tok):
    image = ImageGridLogitsProcessor(tok.token_classes, height=2, width=2, frames=1)
    allowed = [image.allowed(j) for j in range(image.length)]
    assert allowed == ["colour", "colour", "row", "colour", "colour", "sep"]
    audio = AudioLogitsProcessor(tok.token_classes, num_steps=2, channels=2)
    assert [audio.allowed(j) for j in range(audio.length)] == ["level"] * 4 + ["row", "sep"]
    scores = torch.zeros(2, 151)
    prompt = torch.tensor([[32, 33, 34, 2], [0, 0, 35, 2]])
    masked = LogitsProcessorList([image])(prompt, scores)
    assert torch.isinf(masked[:, :58]).all() and torch.isfinite(masked[:, 58:113]).all()
    with pytest.raises(ValueError, match="positive"):
        ImageGridLogitsProcessor(tok.token_classes, height=0, width=2)


def test_structure_processors_refuse_a_prompt_that_does_not_end_a_block(tok):
    image = ImageGridLogitsProcessor(tok.token_classes, height=2, width=2)
    with pytest.raises(ValueError, match="must end a block"):
        image(torch.tensor([[32, 33, 34]]), torch.zeros(1, 151))  # a caption without its terminator
    audio = AudioLogitsProcessor(tok.token_classes, num_steps=2, prompt_length=2)
    with pytest.raises(ValueError, match="must end a block"):
        audio(torch.tensor([[32, 60]]), torch.zeros(1, 151))


@pytest.mark.parametrize("prompt_length", [None, "given"])
def test_a_reused_structure_processor_starts_again_with_each_generate_call(tok, prompt_length):
    """One processor, two generate() calls with prompts of other lengths: both sprites come out whole."""
    model = tiny_model(seed=6)
    for caption in ("a much longer caption than the other", "a sprite"):
        ids = tok(caption, return_tensors="pt")["input_ids"]
        length = ids.shape[1] if prompt_length else None
        if caption.startswith("a much") or prompt_length:
            processor = ImageGridLogitsProcessor(tok.token_classes, 2, 3, prompt_length=length)
        with torch.no_grad():
            out = model.generate(ids, logits_processor=LogitsProcessorList([processor]), max_new_tokens=8,
                                 do_sample=True)  # fmt: skip
        decoded = tok.decode_multimodal(out[0])
        assert [frame.size for frame in decoded.frames] == [(3, 2)], caption


def test_bidirectional_generation_recomputes_a_window(tok):
    model = tiny_model(bidirectional=True, window_size=16)
    batch = tok("abc", return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=20, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 20
    # the last step re-encoded the last window_size positions of the whole sequence
    with torch.no_grad():
        windowed = model(input_ids=out[:, :-1], use_cache=False).logits[:, -1].argmax(-1)
    assert torch.equal(windowed, out[:, -1])


# -------------------------------------------------------------------------------------------------
# the cache's name: `past_key_values` (transformers 5.23) / `cache` (5.24+)
# -------------------------------------------------------------------------------------------------
@pytest.fixture
def deprecation_messages(monkeypatch):
    """Messages transformers logs with ``warning_once`` during the test (its own once-cache bypassed)."""
    messages: list[str] = []
    monkeypatch.setattr(logging.Logger, "warning_once", lambda self, msg, *args, **kwargs: messages.append(str(msg)))
    return messages


def test_cache_name_matches_installed_transformers():
    parameters = inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    assert CACHE_NAME in parameters
    fields = [field.name for field in dataclasses.fields(PxByModelOutput)]
    assert fields == ["loss", "logits", "context_logits", "cache", "hidden_states", "next_token_accuracy",
                      "context_accuracy", "state"]  # the same fields whatever the installed transformers  # fmt: skip
    cache = object()
    assert PxByModelOutput(logits=torch.zeros(1), cache=cache).past_key_values is cache
    expected = "cache" if version.parse(transformers.__version__) >= version.parse("5.24.0.dev0") else "past_key_values"
    assert CACHE_NAME == expected


def test_generate_uses_the_cache_one_token_per_step(tok, deprecation_messages):
    """Cached generate feeds the prompt once, then one token per step with the PxByCache (the LSTM fast path)."""
    model = tiny_model(seed=6)
    batch = tok(PROMPTS[:2], padding=True, padding_side="left", return_tensors="pt")
    seen: list[tuple[int, bool]] = []

    def record(module, args, kwargs):
        seen.append((kwargs["input_ids"].shape[1], isinstance(kwargs.get("cache"), PxByCache)))

    steps = []
    fast = model._token_step
    model._token_step = lambda *args: steps.append(1) or fast(*args)
    handle = model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        greedy(model, batch)
    finally:
        handle.remove()
        del model._token_step
    assert seen[0] == (batch["input_ids"].shape[1], False)
    assert seen[1:] == [(1, True)] * 23
    assert len(steps) == 23
    assert not [m for m in deprecation_messages if "deprecated" in m]


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
def test_forward_takes_the_cache_under_both_names(tok, name, deprecation_messages):
    model = tiny_model(seed=7)
    ids = sample_ids(tok)
    with torch.no_grad():
        full = model(input_ids=ids, use_cache=False).logits
        prefix = model(input_ids=ids[:, :5], use_cache=True)
        assert isinstance(prefix.cache, PxByCache)
        assert prefix[CACHE_NAME] is prefix.cache
        step = model(input_ids=ids[:, 5:6], **{name: prefix.cache})
        torch.testing.assert_close(step.logits[:, 0], full[:, 5], atol=1e-5, rtol=1e-5)
        assert step.cache is prefix.cache and step.cache.get_seq_length() == 6
        with pytest.raises(ValueError, match="not both"):
            model(input_ids=ids[:, 6:7], cache=step.cache, past_key_values=step.cache)
    assert not [m for m in deprecation_messages if "deprecated" in m]
    assert step.past_key_values is step.cache  # the old attribute still reads it (5.24 itself warns)


@pytest.mark.parametrize("name", ["cache", "past_key_values"])
def test_generate_continues_from_a_cache_under_both_names(tok, name, deprecation_messages):
    model = tiny_model(seed=8)
    ids = sample_ids(tok)
    with torch.no_grad():
        expected = model.generate(ids, max_new_tokens=8, do_sample=False)
        cache = model(input_ids=ids[:, :-3], use_cache=True).cache
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)  # generate()'s own deprecate_kwarg (5.24) warns with it
            continued = model.generate(ids, max_new_tokens=8, do_sample=False, **{name: cache})
        with pytest.raises(ValueError, match="not both"):
            model.generate(ids, max_new_tokens=2, cache=cache, past_key_values=cache)
    assert torch.equal(continued, expected)
    assert not [m for m in deprecation_messages if "deprecated" in m]


def sample_ids(tok) -> torch.Tensor:
    """A short text + sprite stream, ``(1, L)``."""
    sprite = np.random.default_rng(2).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    return tok(text="ab", images=sprite, return_tensors="pt")["input_ids"]


def test_image_processor_continues_a_frame_after_a_row_separator(tok):
    """A prompt ending a row (id 1) gets the frame's remaining rows; with several frames it is an error."""
    model = tiny_model(seed=6)
    ids = tok(text="a", images=np.zeros((1, 3, 2, 3), dtype=np.uint8), return_tensors="pt")["input_ids"]
    cut = int((ids[0] == 1).nonzero()[0]) + 1  # after the first row of the 3 × 2 frame
    processor = ImageGridLogitsProcessor(tok.token_classes, height=2, width=2, prompt_length=cut)
    with torch.no_grad():
        out = model.generate(ids[:, :cut], logits_processor=LogitsProcessorList([processor]),
                             max_new_tokens=processor.length, do_sample=True)  # fmt: skip
    assert out[0, cut:].tolist()[2::3] == [1, 2]  # a row separator, then the frame's end
    assert tok.decode_multimodal(out[0]).frames[0].size == (2, 3)
    with pytest.raises(ValueError, match="frames must be 1"):
        ImageGridLogitsProcessor(tok.token_classes, 2, 2, frames=2)(ids[:, :cut], torch.zeros(1, 151))
