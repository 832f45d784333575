"""The CUDA-graph token step (graphs_pixelbytes): on a GPU, greedy generation with the captured step equals the
eager cached path and full recompute, with left padding and beams; a weight update recaptures. Skipped without
CUDA (CI has none; run on a GPU machine, see benchmarks/bench_gpu.py)."""

from __future__ import annotations

import pytest
import torch

from pixelbytes.graphs_pixelbytes import CapturedTokenStep, graph_step_supported
from tiny_models import tiny_model

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_graph_step_covers_the_common_models_only():
    assert graph_step_supported(tiny_model())
    assert graph_step_supported(tiny_model(objective="context"))
    for overrides in ({"backbone": "attention", "num_attention_heads": 2}, {"embedding": "center"},
                      {"grid_position_size": 4}, {"caption_memory_buckets": 16}, {"bidirectional": True}):  # fmt: skip
        assert not graph_step_supported(tiny_model(**overrides)), overrides
    with pytest.raises(ValueError, match="CUDA"):
        CapturedTokenStep(tiny_model(), 1)


def _generate(model, batch, **kwargs):
    with torch.no_grad():
        return model.generate(**batch, max_new_tokens=40, do_sample=False, **kwargs)


@CUDA
@pytest.mark.parametrize("objective", ["next_token", "context"])
def test_graph_generation_equals_eager_and_recompute(tok, objective):
    model = tiny_model(seed=6, objective=objective).cuda()
    batch = tok(["a red heart", "hi"], padding=True, padding_side="left", return_tensors="pt").to("cuda")
    graph = _generate(model, batch)
    assert model._captured_steps  # the graph path ran
    model.use_cuda_graphs = False
    assert torch.equal(graph, _generate(model, batch))
    assert torch.equal(graph, _generate(model, batch, use_cache=False))
    model.use_cuda_graphs = True
    beams = _generate(model, batch, num_beams=3)
    model.use_cuda_graphs = False
    assert torch.equal(beams, _generate(model, batch, num_beams=3))


@CUDA
def test_a_weight_update_recaptures(tok):
    model = tiny_model(seed=6).cuda()
    batch = tok("a red heart", return_tensors="pt").to("cuda")
    _generate(model, batch)
    first = model._captured_steps[1]
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)
    after = _generate(model, batch)
    assert model._captured_steps[1] is not first
    model.use_cuda_graphs = False
    assert torch.equal(after, _generate(model, batch))
