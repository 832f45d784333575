"""v1 Table 1 metrics (evaluation.similarity) against scipy / nltk, and their `evaluate` modules."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nltk.translate.bleu_score import sentence_bleu as nltk_sentence_bleu
from scipy.spatial import distance

from pixelbytes.evaluation import metric_path
from pixelbytes.evaluation.metrics.units import bits_per_unit
from pixelbytes.evaluation.similarity import (
    V1_WINDOW_KEEP,
    cosine_similarity,
    hamming,
    sentence_bleu,
    sequence_similarity,
    summarize,
)


def _nltk_bleu(target, generated, max_order: int = 4) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns about every zero n-gram precision
        return nltk_sentence_bleu(
            [list(map(str, target))], list(map(str, generated)), weights=(1 / max_order,) * max_order
        )


def _scipy_cosine(generated, target) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 0 / 0 for an all-zero vector
        return 1 - distance.cosine(generated, target)


def _same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


ids = st.lists(st.integers(0, 5), min_size=1, max_size=40)


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(*[st.lists(st.integers(0, 4), min_size=n, max_size=n)] * 2)))
def test_hamming_and_cosine_equal_scipy(pair):
    generated, target = (np.asarray(x, dtype=np.int64) for x in pair)
    assert hamming(generated, target) == distance.hamming(generated, target)
    assert _same(cosine_similarity(generated, target), _scipy_cosine(generated, target))


@given(ids, ids, st.integers(1, 5))
def test_bleu_equals_nltk(target, generated, max_order):
    assert sentence_bleu(target, generated, max_order) == _nltk_bleu(target, generated, max_order)


def test_seeded_protocol_shaped_segments_equal_scipy_and_nltk():
    rng = np.random.default_rng(13)
    for _ in range(200):
        vocab = int(rng.choice([3, 20, 150]))
        target = rng.integers(0, vocab, (16, 9))
        generated = np.where(rng.random((16, 9)) < rng.random(), target, rng.integers(0, vocab, (16, 9)))
        target[:, 5:] = 0  # the structurally constant cells of v1 windows
        generated[:, 5:] = 0
        g, t = generated.reshape(-1), target.reshape(-1)
        row = sequence_similarity(generated, target)
        assert row["hamming"] == distance.hamming(g, t)
        assert _same(row["cosine"], _scipy_cosine(g, t))
        assert row["bleu"] == _nltk_bleu(t, g)


EDGE_CASES = {
    "identical": ([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]),
    "disjoint": ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]),
    "one token": ([3], [3]),
    "two tokens": ([3, 4], [3, 4]),
    "three tokens": ([3, 4, 5], [5, 4, 3]),
    "all zeros": ([0, 0, 0, 0, 0], [0, 0, 0, 0, 0]),
    "one all zeros": ([0, 0, 0, 0], [1, 2, 1, 2]),
    "repeated tokens": ([7, 7, 7, 7, 7, 7, 7], [7, 7, 1, 7, 7, 7, 7]),
    "repeated hypothesis": ([2, 2, 2, 2, 2, 2], [2, 5, 6, 7, 8, 9]),
    "unigram only": ([1, 3, 5, 7], [7, 5, 3, 1]),
    "no trigram": ([1, 2, 9, 3, 4, 9, 5, 6], [1, 2, 8, 3, 4, 8, 5, 6]),
    "large ids": ([10**4, 3, 10**4], [10**4, 10**4, 3]),
}


@pytest.mark.parametrize("pair", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_equal_scipy_and_nltk(pair):
    generated, target = (np.asarray(x, dtype=np.int64) for x in pair)
    assert hamming(generated, target) == distance.hamming(generated, target)
    assert _same(cosine_similarity(generated, target), _scipy_cosine(generated, target))
    assert sentence_bleu(target, generated) == _nltk_bleu(target, generated)
    assert sentence_bleu(generated, target) == _nltk_bleu(generated, target)


def test_known_values():
    assert hamming([1, 2, 3, 4], [1, 2, 3, 4]) == 0.0
    assert hamming([1, 2, 3, 4], [4, 3, 2, 1]) == 1.0
    assert cosine_similarity([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert math.isnan(cosine_similarity([0, 0], [0, 0]))
    assert sentence_bleu([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    assert sentence_bleu([1, 2, 3], [4, 5, 6]) == 0.0
    # unigram matches but no bigram: nltk's sys.float_info.min, not 0
    assert 0.0 < sentence_bleu([1, 2, 3, 4], [4, 3, 2, 1]) < 1e-100
    # the brevity penalty of a hypothesis shorter than its reference
    assert sentence_bleu([1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4]) == pytest.approx(math.exp(1 - 8 / 4))


def test_float_ids_and_bools_follow_scipy():
    g, t = np.array([0.5, 1.5, 2.0]), np.array([1.0, 1.5, 3.0])
    assert cosine_similarity(g, t) == _scipy_cosine(g, t)
    assert hamming([True, False], [True, True]) == 0.5


def test_narrow_dtypes_and_huge_ids_do_not_wrap():
    g = np.array([200, 150, 0, 90], dtype=np.uint8)
    t = np.array([180, 160, 10, 0], dtype=np.uint8)
    assert cosine_similarity(g, t) == _scipy_cosine(g.astype(np.int64), t.astype(np.int64))
    # |u|^2 |v|^2 overflows int64 in scipy here; the exact products give the true cosine
    g, t = np.array([10**6, 3, 10**6]), np.array([10**6, 10**6, 3])
    assert cosine_similarity(g, t) == pytest.approx(_scipy_cosine(g.astype(np.float64), t.astype(np.float64)))
    assert cosine_similarity(g, t) == pytest.approx(0.5, abs=1e-5)


def test_keep_mask_scores_only_the_kept_cells():
    rng = np.random.default_rng(2)
    target = rng.integers(0, 6, (16, 9))
    generated = rng.integers(0, 6, (16, 9))
    corrected = sequence_similarity(generated, target, keep=V1_WINDOW_KEEP)
    assert corrected == sequence_similarity(generated[:, :5], target[:, :5])
    assert corrected == sequence_similarity(generated.reshape(-1), target.reshape(-1), keep=np.tile(V1_WINDOW_KEEP, 16))
    assert set(corrected) == {"hamming", "cosine", "bleu"}


def test_keep_mask_removes_the_constant_zero_inflation():
    target = np.zeros((16, 9), dtype=np.int64)
    target[:, :5] = np.arange(1, 81).reshape(16, 5)
    generated = np.where(target > 0, target + 100, 0)  # every informative cell wrong
    assert sequence_similarity(generated, target)["hamming"] == pytest.approx(80 / 144)
    assert sequence_similarity(generated, target, keep=V1_WINDOW_KEEP)["hamming"] == 1.0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: hamming([1, 2, 3], [1, 2]), "differ in shape"),
        (lambda: cosine_similarity([[1, 2]], [1, 2]), "differ in shape"),
        (lambda: sequence_similarity(np.zeros((2, 9)), np.zeros((2, 8))), "differ in shape"),
        (lambda: hamming([], []), "generated is empty"),
        (lambda: cosine_similarity([1], []), "target is empty"),
        (lambda: sentence_bleu([], [1, 2]), "target is empty"),
        (lambda: hamming([1.0, np.nan], [1.0, 2.0]), "NaN"),
        (lambda: sequence_similarity([1, 2], [1, 2], keep=[True, False, True]), "does not broadcast"),
        (lambda: sequence_similarity([1, 2], [1, 2], keep=[False, False]), "drops every cell"),
        (lambda: sentence_bleu([1, 2], [1, 2], max_order=0), "max_order"),
    ],
)
def test_clear_value_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_type_errors():
    with pytest.raises(TypeError, match="real numbers"):
        hamming(["a", "b"], ["a", "b"])
    with pytest.raises(TypeError, match="boolean mask"):
        sequence_similarity([1, 2], [1, 2], keep=[1, 0])


def test_empty_hypothesis_scores_zero_like_nltk():
    assert sentence_bleu([1, 2, 3], []) == 0.0 == _nltk_bleu([1, 2, 3], [])


def test_summarize_matches_pandas_describe():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(5)
    rows = [sequence_similarity(rng.integers(0, 4, 144), rng.integers(0, 4, 144)) for _ in range(50)]
    rows.append({"hamming": 0.0, "cosine": math.nan, "bleu": 1.0})  # an undefined cosine is skipped
    described = pd.DataFrame(rows).describe()
    summary = summarize(rows)
    assert list(summary) == ["hamming", "cosine", "bleu"]
    for key, (mean, std) in summary.items():
        assert mean == pytest.approx(described.loc["mean", key], rel=1e-12)
        assert std == pytest.approx(described.loc["std", key], rel=1e-12)


def test_summarize_edge_cases():
    mean, std = summarize([{"a": 2.0}])["a"]
    assert mean == 2.0 and math.isnan(std)
    assert summarize([{"a": 1, "b": 5}, {"a": 3, "b": 7}], keys=["a"]) == {"a": (2.0, math.sqrt(2.0))}
    with pytest.raises(ValueError, match="at least one row"):
        summarize([])
    with pytest.raises(ValueError, match="row 1 has no 'a'"):
        summarize([{"a": 1.0}, {"b": 1.0}])
    with pytest.raises(ValueError, match="non-numeric"):
        summarize([{"a": "x"}])


# --- the `evaluate` modules -------------------------------------------------------------------------------


@pytest.fixture
def load_metric(monkeypatch, tmp_path):
    evaluate = pytest.importorskip("evaluate")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")

    def load(name: str):
        return evaluate.load(metric_path(name), cache_dir=str(tmp_path / "cache"))

    return load


def test_metric_path_points_at_module_files():
    assert metric_path("pxby_sequence_similarity").endswith("pxby_sequence_similarity.py")
    with pytest.raises(ValueError, match="unknown metric"):
        metric_path("nope")


def test_sequence_similarity_module_equals_the_functions(load_metric):
    metric = load_metric("pxby_sequence_similarity")
    rng = np.random.default_rng(7)
    targets = [rng.integers(0, 5, 144).tolist() for _ in range(6)]
    predictions = [rng.integers(0, 5, 144).tolist() for _ in range(5)] + [targets[-1]]
    rows = [sequence_similarity(p, t) for p, t in zip(predictions, targets)]
    expected = {key: value for key, value in summarize(rows).items()}
    result = metric.compute(predictions=predictions, references=targets)
    for key, (mean, std) in expected.items():
        assert result[key] == pytest.approx(mean, rel=1e-12)
        assert result[f"{key}_std"] == pytest.approx(std, rel=1e-12)
    assert result["num_sequences"] == 6

    corrected = [
        sequence_similarity(np.reshape(p, (16, 9)), np.reshape(t, (16, 9)), V1_WINDOW_KEEP)
        for p, t in zip(predictions, targets)
    ]
    for p, t in zip(predictions, targets):
        metric.add(prediction=p, reference=t)
    result = metric.compute(keep=V1_WINDOW_KEEP.tolist())
    for key, (mean, _std) in summarize(corrected).items():
        assert result[key] == pytest.approx(mean, rel=1e-12)


def test_sequence_similarity_module_rejects_a_bad_keep(load_metric):
    metric = load_metric("pxby_sequence_similarity")
    with pytest.raises(ValueError, match="keep"):
        metric.compute(predictions=[[1, 2, 3]], references=[[1, 2, 3]], keep=[True, False])


def test_bits_per_unit_module_equals_the_function(load_metric):
    metric = load_metric("pxby_bits_per_unit")
    nll = [[0.5, 1.0, 2.0, 0.25], [3.0, 0.1, 0.2]]
    modality = [["text", "text", "image", "image"], ["audio", "audio", "image"]]
    units = [[1, 1, 1, 0], [1, 1, 1]]
    expected = bits_per_unit(nll, modality, units)
    assert expected["text_bits_per_character"] == pytest.approx(1.5 / math.log(2) / 2)
    assert expected["image_bits_per_pixel"] == pytest.approx(2.45 / math.log(2) / 2)
    assert expected["audio_bits_per_sample"] == pytest.approx(3.1 / math.log(2) / 2)
    assert expected["bits_per_token"] == pytest.approx(7.05 / math.log(2) / 7)
    result = metric.compute(nll=nll, modality=modality, units=units)
    assert result == pytest.approx(expected)


def test_bits_per_unit_errors():
    with pytest.raises(ValueError, match="unknown modality"):
        bits_per_unit([[1.0]], [["video"]], [[1]])
    with pytest.raises(ValueError, match="lengths differ"):
        bits_per_unit([[1.0, 2.0]], [["text"]], [[1, 1]])
    with pytest.raises(ValueError, match="NaN"):
        bits_per_unit([[math.nan]], [["text"]], [[1]])
    with pytest.raises(ValueError, match="empty"):
        bits_per_unit([], [], [])
    with pytest.raises(ValueError, match="negative"):
        bits_per_unit([[1.0]], [["text"]], [[-1]])
    # a modality whose tokens carry no unit gets no bits-per-unit figure
    assert "image_bits_per_pixel" not in bits_per_unit([[1.0]], [["image"]], [[0]])
