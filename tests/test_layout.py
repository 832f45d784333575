"""The PxBy stream layout (DESIGN §5): three implementations (grid path, vectorised, incremental tracker)
checked against each other, against an independent oracle written from the §5 table, and on hand cases."""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pixelbytes import ActionPixelBytesTokenizer, layout
from pixelbytes.layout import (
    IMAGE,
    BatchLayoutTracker,
    LayoutTracker,
    assemble_blocks,
    batch_context_ids,
    batch_windows,
    grid_block_contexts,
    stream_blocks,
    stream_contexts,
    stream_windows,
)
from pixelbytes.vocabulary import BYTE, COLOUR, LEVEL, ROW, SEP, control_vocabulary, default_vocabulary

DEFAULT = default_vocabulary()
CONTROL = control_vocabulary()
VOCABS = {"default": DEFAULT, "control": CONTROL}


# ==================================================================================================
# An independent oracle: DESIGN §5 written out literally, one token at a time, with a dict grid
# ==================================================================================================
def oracle(ids, classes, W):
    """Contexts of positions 0..L (L + 1 rows) and windows of tokens 0..L-1, from the §5 tables."""
    kind = None  # None = fresh, else "text" / "image" / "audio"
    t = r = c = 0
    seen_term = False
    grid: dict[tuple[int, int, int], int] = {}
    prev = 0
    contexts, windows = [], []

    def X(tt, rr, cc):  # noqa: N802 (the DESIGN's notation)
        return grid.get((tt, rr, cc), 0) if min(tt, rr, cc) >= 0 else 0

    def context():
        if kind is None:
            return [0] * 6
        return [X(t - 1, r - 1, c), X(t - 1, r, c), X(t - 1, r + 1, c), X(t, r - 1, c - 1), X(t, r - 1, c), prev]

    for x in ids:
        x = int(x)
        cls = int(classes[x])
        contexts.append(context())
        if kind is None or (kind == "image" and (t > 0 and r == 0 and c == 0) and cls in (BYTE, LEVEL)):
            kind = {COLOUR: "image", LEVEL: "audio"}.get(cls, "text")
            t = r = c = 0
            seen_term = False
            grid = {}
        windows.append([X(t, r - 1, c - 1), X(t, r - 1, c), X(t, r - 1, c + 1), X(t, r, c - 1), x, 0, 0, 0, 0])
        grid[(t, r, c)] = x
        if kind == "text":
            if cls == SEP:
                kind = None
            else:
                c += 1
        elif kind == "image":
            if cls == ROW:
                r, c = r + 1, 0
            elif cls == SEP:
                t, r, c = t + 1, 0, 0
            else:
                c += 1
        else:
            seen_term = seen_term or cls <= SEP
            c += 1
            if c == W:
                if seen_term:
                    kind = None
                else:
                    t, c = t + 1, 0
        prev = x
    contexts.append(context())
    return np.array(contexts, dtype=np.int64).reshape(-1, 6), np.array(windows, dtype=np.int64).reshape(-1, 9)


def run_tracker(ids, classes, W):
    """Incremental contexts: tracker.context before the first push and after each push (L + 1 rows)."""
    tracker = LayoutTracker(classes, W)
    contexts = [list(tracker.context)]
    windows = []
    for x in ids:
        windows.append(tracker.push(int(x)))
        contexts.append(list(tracker.context))
    return np.array(contexts, dtype=np.int64).reshape(-1, 6), np.array(windows, dtype=np.int64).reshape(-1, 9)


def check_all_agree(ids, vocab, W):
    classes = vocab.token_classes
    ctx = stream_contexts(np.asarray(ids, dtype=np.int64), classes, W)
    win = stream_windows(np.asarray(ids, dtype=np.int64), classes, W)
    tr_ctx, tr_win = run_tracker(ids, classes, W)
    or_ctx, or_win = oracle(ids, classes, W)
    assert ctx.shape == (len(ids) + 1, 6) and win.shape == (len(ids), 9)
    np.testing.assert_array_equal(ctx, or_ctx)
    np.testing.assert_array_equal(tr_ctx, or_ctx)
    np.testing.assert_array_equal(win, or_win)
    np.testing.assert_array_equal(tr_win, or_win)
    return ctx, win


# ==================================================================================================
# Stream strategies
# ==================================================================================================
def class_ranges(vocab):
    return {
        "sep": (0, 2),
        "byte": (3, vocab.color_offset - 1),
        "colour": (vocab.color_offset, vocab.level_offset - 1),
        "level": (vocab.level_offset, vocab.vocab_size - 1),
    }


garbage = st.lists(st.integers(0, 150), max_size=300)
biased = st.lists(
    st.one_of(st.sampled_from([0, 1, 2]), st.integers(3, 57), st.integers(58, 112), st.integers(113, 150)),
    max_size=300,
)


@st.composite
def runs(draw, vocab=DEFAULT):
    """Mixed-class garbage made of runs (sprite-like rows, separator bursts, audio stretches, text)."""
    ranges = class_ranges(vocab)
    out: list[int] = []
    for _ in range(draw(st.integers(0, 25))):
        name = draw(st.sampled_from(sorted(ranges)))
        lo, hi = ranges[name]
        n = draw(st.integers(1, 12))
        if draw(st.booleans()):
            out += [draw(st.integers(lo, hi))] * n
        else:
            out += draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))
    return out[:300]


any_stream = st.one_of(garbage, biased, runs())
channels = st.sampled_from([1, 2, 3])


# ==================================================================================================
# vectorised == incremental == oracle
# ==================================================================================================
@given(garbage, channels)
@settings(max_examples=200)
def test_garbage_streams_all_agree(ids, W):
    check_all_agree(ids, DEFAULT, W)


@given(biased, channels)
@settings(max_examples=200)
def test_separator_biased_streams_all_agree(ids, W):
    check_all_agree(ids, DEFAULT, W)


@given(runs(), channels)
@settings(max_examples=150)
def test_run_streams_all_agree(ids, W):
    check_all_agree(ids, DEFAULT, W)


@given(runs(CONTROL), st.sampled_from([1, 2]))
@settings(max_examples=100)
def test_control_vocabulary_streams_all_agree(ids, W):
    check_all_agree(ids, CONTROL, W)


def test_empty_stream():
    ctx, win = check_all_agree([], DEFAULT, 2)
    assert ctx.tolist() == [[0] * 6] and win.shape == (0, 9)
    assert stream_blocks(np.zeros(0, np.int8), 2) == []
    assert batch_context_ids(np.zeros((2, 0), np.int64), DEFAULT.token_classes, 2).shape == (2, 0, 6)


@pytest.mark.parametrize(
    "ids",
    [
        [0] * 50,
        [1] * 50,
        [2] * 50,
        [58] * 40,
        [113] * 41,
        [2, 113, 2, 3, 2, 58, 2, 113, 114, 1],
        [58, 2, 58, 1, 58, 2, 3, 4, 2, 58, 2, 113, 113, 0, 113],
    ],
)
@pytest.mark.parametrize("W", [1, 2, 3])
def test_degenerate_streams_all_agree(ids, W):
    check_all_agree(ids, DEFAULT, W)


def test_long_malformed_block_takes_sparse_path_naturally():
    ids = [60] * 3000 + [2] * 600 + [61, 1] * 50  # one long row, then 600 empty frames
    cls = DEFAULT.token_classes[np.array(ids)]
    t, r, c, pending = layout._image_positions(cls)
    assert not layout._BlockGrid(np.array(ids), t, r, c, pending).dense
    check_all_agree(ids, DEFAULT, 2)


# ==================================================================================================
# Dense vs sparse grids
# ==================================================================================================
def force_sparse():
    return mock.patch.multiple(layout, _DENSE_FACTOR=0, _DENSE_SLACK=0)


def test_force_sparse_patch_takes_effect():
    ids = np.array([58, 59, 1, 60, 61, 2, 62, 63, 1, 64, 65, 2])
    t, r, c, pending = layout._image_positions(DEFAULT.token_classes[ids])
    assert layout._BlockGrid(ids, t, r, c, pending).dense
    with force_sparse():
        assert not layout._BlockGrid(ids, t, r, c, pending).dense


@given(any_stream, channels)
@settings(max_examples=200)
def test_dense_and_sparse_grids_agree(ids, W):
    arr = np.asarray(ids, dtype=np.int64)
    classes = DEFAULT.token_classes
    dense_ctx, dense_win = stream_contexts(arr, classes, W), stream_windows(arr, classes, W)
    with force_sparse():
        sparse_ctx, sparse_win = stream_contexts(arr, classes, W), stream_windows(arr, classes, W)
    np.testing.assert_array_equal(sparse_ctx, dense_ctx)
    np.testing.assert_array_equal(sparse_win, dense_win)
    np.testing.assert_array_equal(sparse_ctx, oracle(ids, classes, W)[0])


# ==================================================================================================
# No look-ahead
# ==================================================================================================
@given(any_stream.filter(len), st.data(), channels)
@settings(max_examples=200)
def test_no_look_ahead(ids, data, W):
    k = data.draw(st.integers(0, len(ids) - 1))
    new = data.draw(st.integers(0, 150))
    assume(new != ids[k])
    changed = list(ids)
    changed[k] = new
    classes = DEFAULT.token_classes
    a, b = stream_contexts(ids, classes, W), stream_contexts(changed, classes, W)
    # the contexts of positions 0..k only depend on tokens < k
    np.testing.assert_array_equal(a[: k + 1], b[: k + 1])
    wa, wb = stream_windows(ids, classes, W), stream_windows(changed, classes, W)
    np.testing.assert_array_equal(wa[:k], wb[:k])  # windows of tokens 0..k-1
    # the same cut through the HF-aligned context_ids (row j = context of position j + 1)
    ca = batch_context_ids(np.array(ids), classes, W)[0]
    cb = batch_context_ids(np.array(changed), classes, W)[0]
    np.testing.assert_array_equal(ca[:k], cb[:k])


@given(any_stream, channels)
@settings(max_examples=60)
def test_prefix_consistency(ids, W):
    """Contexts of a prefix are the prefix of the contexts (what generation relies on)."""
    classes = DEFAULT.token_classes
    full = stream_contexts(ids, classes, W)
    for cut in {0, len(ids) // 3, len(ids) // 2, len(ids)}:
        np.testing.assert_array_equal(stream_contexts(ids[:cut], classes, W), full[: cut + 1])


# ==================================================================================================
# Batches: padding and the batch tracker
# ==================================================================================================
@given(st.lists(any_stream, min_size=1, max_size=4), st.data(), channels)
@settings(max_examples=60)
def test_batch_padding_equals_row_alone(rows, data, W):
    classes = DEFAULT.token_classes
    L = max(len(r) for r in rows) + data.draw(st.integers(0, 3))
    for side in ("left", "right"):
        ids = np.zeros((len(rows), L), dtype=np.int64)
        mask = np.zeros((len(rows), L), dtype=np.int64)
        for b, row in enumerate(rows):
            pad = L - len(row)
            # garbage in the padded positions: the mask alone must hide them
            filler = data.draw(st.lists(st.integers(0, 150), min_size=pad, max_size=pad))
            ids[b] = filler + row if side == "left" else row + filler
            mask[b] = [0] * pad + [1] * len(row) if side == "left" else [1] * len(row) + [0] * pad
        ctx = batch_context_ids(ids, classes, W, attention_mask=mask)
        win = batch_windows(ids, classes, W, attention_mask=mask)
        assert ctx.shape == (len(rows), L, 6) and win.shape == (len(rows), L, 9)
        for b, row in enumerate(rows):
            keep = mask[b].astype(bool)
            np.testing.assert_array_equal(ctx[b, keep], stream_contexts(row, classes, W)[1:])
            np.testing.assert_array_equal(win[b, keep], stream_windows(row, classes, W))
            assert not ctx[b, ~keep].any() and not win[b, ~keep].any()
        tracker = BatchLayoutTracker(classes, W, len(rows))
        tracker.push_sequence(ids, mask)
        assert tracker.contexts() == [stream_contexts(row, classes, W)[-1].tolist() for row in rows]


def test_batch_context_ids_shapes_and_errors():
    classes = DEFAULT.token_classes
    one = batch_context_ids([39, 36, 2], classes, 2)
    assert one.shape == (1, 3, 6)
    np.testing.assert_array_equal(one[0], stream_contexts([39, 36, 2], classes, 2)[1:])
    full = batch_context_ids(np.array([[39, 36, 2]]), classes, 2, attention_mask=np.ones((1, 3)))
    np.testing.assert_array_equal(full, one)
    with pytest.raises(ValueError):
        batch_context_ids(np.zeros((1, 2, 3), np.int64), classes, 2)


def test_batch_tracker_push_with_mask():
    classes = DEFAULT.token_classes
    tracker = BatchLayoutTracker(classes, 2, 2)
    assert len(tracker) == 2
    w = tracker.push([58, 39], mask=[1, 0])
    assert w[1] == [0] * 9 and w[0][4] == 58
    assert tracker.contexts()[1] == [0] * 6  # untouched row
    tracker.push([59, 39])
    assert tracker.contexts() == [[0, 0, 0, 0, 0, 59], [0, 0, 0, 0, 0, 39]]
    assert tracker.rows[0].position() == ("image", 0, 0, 2)
    assert tracker.rows[1].position() == ("text", 0, 0, 1)
    with pytest.raises(ValueError):
        tracker.push([1, 2, 3])


@given(any_stream, any_stream, st.lists(any_stream, min_size=3, max_size=3), channels)
@settings(max_examples=60)
def test_batch_tracker_reorder_copies_are_independent(p0, p1, continuations, W):
    classes = DEFAULT.token_classes
    tracker = BatchLayoutTracker(classes, W, 2)
    for p, tr in zip((p0, p1), tracker.rows):
        for x in p:
            tr.push(x)
    tracker.reorder([1, 1, 0])  # duplicate row 1, move row 0
    assert len(tracker) == 3
    sources = [p1, p1, p0]
    L = max(len(c) for c in continuations)
    expected_windows: list[list] = [[], [], []]
    got_windows: list[list] = [[], [], []]
    for j in range(L):
        tokens = [c[j] if j < len(c) else 0 for c in continuations]
        mask = [int(j < len(c)) for c in continuations]
        for i, w in enumerate(tracker.push(tokens, mask)):
            if mask[i]:
                got_windows[i].append(w)
    for i in range(3):
        stream = sources[i] + continuations[i]
        ctx, win = run_tracker(stream, classes, W)
        assert tracker.contexts()[i] == ctx[-1].tolist()
        assert tracker.rows[i].context == stream_contexts(stream, classes, W)[-1].tolist()
        expected_windows[i] = win[len(sources[i]) :].tolist()
        assert got_windows[i] == expected_windows[i]


def test_reorder_with_torch_indices_and_clone():
    torch = pytest.importorskip("torch")
    classes = DEFAULT.token_classes
    tracker = BatchLayoutTracker(classes, 2, 2)
    tracker.push_sequence(np.array([[58, 1, 59, 2], [39, 40, 2, 0]]), np.array([[1, 1, 1, 1], [1, 1, 1, 0]]))
    tracker.reorder(torch.tensor([0, 0]))
    tracker.push([60, 3])
    assert tracker.contexts()[0] == stream_contexts([58, 1, 59, 2, 60], classes, 2)[-1].tolist()
    assert tracker.contexts()[1] == stream_contexts([58, 1, 59, 2, 3], classes, 2)[-1].tolist()
    single = LayoutTracker(classes, 2)
    for x in [58, 59, 1, 60]:
        single.push(x)
    copy = single.clone()
    copy.push(61)
    single.push(2)
    assert copy.context == stream_contexts([58, 59, 1, 60, 61], classes, 2)[-1].tolist()
    assert single.context == stream_contexts([58, 59, 1, 60, 2], classes, 2)[-1].tolist()
    single.reset()
    assert single.context == [0] * 6 and single.position()[0] == "fresh"


# ==================================================================================================
# Errors
# ==================================================================================================
@pytest.mark.parametrize("bad", [[151], [3, -1], [3, 4, 1000]])
def test_ids_outside_vocabulary(bad):
    classes = DEFAULT.token_classes
    with pytest.raises(ValueError, match="outside the vocabulary"):
        stream_contexts(bad, classes, 2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        stream_windows(bad, classes, 2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        batch_context_ids(np.array([bad]), classes, 2)
    tracker = LayoutTracker(classes, 2)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        for x in bad:
            tracker.push(x)


def test_non_integer_or_nd_ids():
    classes = DEFAULT.token_classes
    with pytest.raises(ValueError):
        stream_contexts(np.array([1.5, 2.0]), classes, 2)
    with pytest.raises(ValueError):
        stream_contexts(np.zeros((2, 2), np.int64), classes, 2)


# ==================================================================================================
# Hand-derived cases (DESIGN §5 table)
# ==================================================================================================
def contexts_of(ids, W=2, vocab=DEFAULT):
    ctx, _ = check_all_agree(ids, vocab, W)
    return ctx.tolist()


def test_hand_two_frame_2x2_image():
    A, B, C, D, E, F, G, H = range(58, 66)
    ids = [A, B, 1, C, D, 2, E, F, 1, G, H, 2]
    assert contexts_of(ids) == [
        [0, 0, 0, 0, 0, 0],  # A (0,0,0): fresh
        [0, 0, 0, 0, 0, A],  # B (0,0,1)
        [0, 0, 0, 0, 0, B],  # 1 (0,0,2)
        [0, 0, 0, 0, A, 1],  # C (0,1,0): up = A
        [0, 0, 0, A, B, C],  # D (0,1,1): up-left A, up B
        [0, 0, 0, B, 1, D],  # 2 (0,1,2)
        [0, A, C, 0, 0, 2],  # E (1,0,0): previous frame same cell A, below C
        [0, B, D, 0, 0, E],  # F (1,0,1)
        [0, 1, 2, 0, 0, F],  # 1 (1,0,2)
        [A, C, 0, 0, E, 1],  # G (1,1,0)
        [B, D, 0, E, F, G],  # H (1,1,1)
        [1, 2, 0, F, 1, H],  # 2 (1,1,2)
        [0, E, G, 0, 0, 2],  # pending (2,0,0): the image stays open
    ]
    _, win = check_all_agree(ids, DEFAULT, 2)
    assert win[:, :5].tolist() == [
        [0, 0, 0, 0, A], [0, 0, 0, A, B], [0, 0, 0, B, 1],
        [0, A, B, 0, C], [A, B, 1, C, D], [B, 1, 0, D, 2],
        [0, 0, 0, 0, E], [0, 0, 0, E, F], [0, 0, 0, F, 1],
        [0, E, F, 0, G], [E, F, 1, G, H], [F, 1, 0, H, 2],
    ]  # fmt: skip
    assert not win[:, 5:].any()
    tracker = LayoutTracker(DEFAULT.token_classes, 2)
    for x in ids:
        tracker.push(x)
    assert tracker.position() == ("image", 2, 0, 0)


def test_hand_text():
    assert contexts_of([32, 33, 2]) == [[0] * 6, [0, 0, 0, 0, 0, 32], [0, 0, 0, 0, 0, 33], [0] * 6]
    _, win = check_all_agree([32, 33, 2], DEFAULT, 2)
    assert win[:, 3:5].tolist() == [[0, 32], [32, 33], [33, 2]]


def test_hand_stereo_audio():
    a0, b0, a1, b1 = 113, 150, 120, 130
    assert contexts_of([a0, b0, a1, b1, 1, 2]) == [
        [0] * 6,
        [0, 0, 0, 0, 0, a0],
        [0, a0, 0, 0, 0, b0],
        [0, b0, 0, 0, 0, a1],
        [0, a1, 0, 0, 0, b1],
        [0, b1, 0, 0, 0, 1],
        [0] * 6,  # the terminator frame closed the block
    ]
    _, win = check_all_agree([a0, b0, a1, b1, 1, 2], DEFAULT, 2)
    assert win[:, 3].tolist() == [0, a0, 0, a1, 0, 1]  # left neighbour within the frame only


def test_hand_mono_audio():
    a0, a1 = 125, 140
    assert contexts_of([a0, a1, 1], W=1) == [[0] * 6, [0, a0, 0, 0, 0, a0], [0, a1, 0, 0, 0, a1], [0] * 6]


def test_hand_text_image_audio_boundary():
    P, a0 = 70, 125
    ids = [32, 2, P, 2, a0, 1]  # "a", 1x1 image, mono audio
    assert contexts_of(ids, W=1) == [
        [0] * 6,
        [0, 0, 0, 0, 0, 32],
        [0] * 6,  # fresh after the text's separator: the image starts a new block
        [0, 0, 0, 0, 0, P],
        [0, P, 0, 0, 0, 2],  # after the image's SEP: continuation context (the documented difference)
        [0, a0, 0, 0, 0, a0],
        [0] * 6,
    ]


def test_hand_image_then_text_and_pad_inside_audio():
    P, Q = 60, 61
    # an image interrupted by a BYTE after its SEP: a new text block opens there
    assert contexts_of([P, Q, 2, 32, 2]) == [
        [0] * 6, [0, 0, 0, 0, 0, P], [0, 0, 0, 0, 0, Q], [0, P, 0, 0, 0, 2], [0, 0, 0, 0, 0, 32], [0] * 6,
    ]  # fmt: skip
    # a PAD inside a stereo frame closes the audio block at the end of that frame
    a0, a1, b1 = 113, 114, 115
    assert contexts_of([a0, 0, a1, b1]) == [
        [0] * 6, [0, 0, 0, 0, 0, a0], [0] * 6, [0, 0, 0, 0, 0, a1], [0, a1, 0, 0, 0, b1],
    ]  # fmt: skip
    # a ROW after an image SEP continues the image (it is not a block start)
    assert contexts_of([P, 2, 1, Q]) == [
        [0] * 6, [0, 0, 0, 0, 0, P], [0, P, 0, 0, 0, 2], [P, 0, 0, 0, 1, 1], [2, 0, 0, 1, 0, Q],
    ]  # fmt: skip


# ==================================================================================================
# The tokenizer's grid path
# ==================================================================================================
def test_grid_block_contexts_matches_definition():
    rng = np.random.default_rng(0)
    grid = rng.integers(3, 151, size=(3, 4, 5))
    got = grid_block_contexts(grid).reshape(3, 4, 5, 5)

    def X(t, r, c):  # noqa: N802 (the DESIGN's notation)
        return int(grid[t, r, c]) if 0 <= t < 3 and 0 <= r < 4 and 0 <= c < 5 else 0

    for t in range(3):
        for r in range(4):
            for c in range(5):
                expected = [X(t - 1, r - 1, c), X(t - 1, r, c), X(t - 1, r + 1, c), X(t, r - 1, c - 1), X(t, r - 1, c)]
                assert got[t, r, c].tolist() == expected


@functools.cache
def tokenizer_for(
    W: int, image_stride: int, frame_stride: int, audio_stride: int, control: bool
) -> ActionPixelBytesTokenizer:
    return ActionPixelBytesTokenizer(
        audio_channels=W,
        image_stride=image_stride,
        frame_stride=frame_stride,
        audio_stride=audio_stride,
        vocabulary=CONTROL if control else None,
    )


@st.composite
def valid_samples(draw):
    """A random tokenizer setting and a random valid sample (text / image / audio, each optional)."""
    W = draw(st.sampled_from([1, 2]))
    strides = draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 3]))
    tok = tokenizer_for(W, *strides, control=draw(st.booleans()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    text = draw(st.none() | st.text(st.characters(codec="utf-8"), max_size=15) | st.text("01 ab", max_size=15))
    image = None
    if draw(st.booleans()):
        F, H, Wd = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
        if draw(st.booleans()):  # palette colours (exact) or arbitrary colours
            palette = tok.vocabulary.palette_array
            image = palette[rng.integers(0, len(palette), (F, H, Wd))]
        else:
            image = rng.integers(0, 256, (F, H, Wd, 3), dtype=np.uint8)
        if F == 1 and draw(st.booleans()):
            image = image[0]
    audio = None
    if draw(st.booleans()):
        # empty clips (terminator frame only) are a known bug: see test_empty_audio_clip_contexts_agree
        n = draw(st.integers(1, 12))
        audio = rng.normal(size=(W, n)).astype(np.float32)
        if W == 1 and draw(st.booleans()):
            audio = audio[0]
    if text is None and image is None and audio is None:
        text = ""
    return tok, text, image, audio


@given(valid_samples())
@settings(max_examples=150)
def test_valid_samples_grid_path_equals_vectorised_and_tracker(sample):
    tok, text, image, audio = sample
    enc = tok(text=text, images=image, audio=audio, return_context_ids=True)
    ids = np.array(enc["input_ids"], dtype=np.int64)
    grid_ctx = np.array(enc["context_ids"], dtype=np.int64).reshape(-1, 6)
    assert grid_ctx.shape == (len(ids), 6)
    W = tok.audio_channels
    # assemble_blocks directly on the codec blocks
    blocks = tok.encode_sample_blocks(text, image, audio)
    asm_ids, asm_ctx = assemble_blocks(blocks)
    np.testing.assert_array_equal(asm_ids, ids)
    np.testing.assert_array_equal(asm_ctx[1:], grid_ctx)
    # the vectorised and incremental derivations from the ids alone, and the oracle
    ctx, _ = check_all_agree(ids.tolist(), tok.vocabulary, W)
    np.testing.assert_array_equal(ctx[1:], grid_ctx)
    np.testing.assert_array_equal(ctx[0], 0)
    np.testing.assert_array_equal(tok.context_ids(ids[None])[0], grid_ctx)
    # block structure seen from the ids alone == the tokenizer's blocks
    kinds = [k for _, _, k, _ in stream_blocks(tok.vocabulary.token_classes[ids], W)]
    assert kinds == [k for k, _ in blocks]


def test_assemble_blocks_image_stays_open():
    grid = np.array([[[58, 59, 1], [60, 61, 2]]])
    ids, ctx = assemble_blocks([(IMAGE, grid)])
    assert ids.tolist() == [58, 59, 1, 60, 61, 2]
    assert ctx[-1].tolist() == [0, 58, 60, 0, 0, 2]
    np.testing.assert_array_equal(ctx, stream_contexts(ids, DEFAULT.token_classes, 2))
    ids, ctx = assemble_blocks([])
    assert ids.shape == (0,) and ctx.tolist() == [[0] * 6]


def test_empty_clips_are_refused(tok, tok_mono):
    """An empty clip would be a lone terminator frame, which the stream layout reads as text (DESIGN §5)."""
    image = DEFAULT.palette_array[np.array([[[1, 0], [0, 0]]])]
    with pytest.raises(ValueError, match="empty"):
        tok(images=image, audio=np.zeros((2, 0), np.float32), return_context_ids=True)
    with pytest.raises(ValueError, match="empty"):
        tok_mono(audio=np.zeros(0, np.float32), return_context_ids=True)
