"""CUDA-graph replay of one generated token (DESIGN §7): the GPU path of the cached one-token step.

On a GPU, one generated token of the paper LSTM is a few dozen tiny kernels (embedding, two fused cell updates,
the head), each costing more to launch than to run: eager generation is bound by the Python per-kernel launch
cost. :class:`CapturedTokenStep` records that whole step ONCE as a CUDA graph on static buffers and replays it
for every token: one launch per token. What stays on the host per token is the layout tracker (the next
position's context, a few Python integers) and one small host-to-device copy of it.

It applies to causal LSTM models with the pxby6 embedding and neither grid positions nor a caption memory
(:func:`graph_step_supported`); the model uses it automatically for cached steps on CUDA without autograd
(``PxBySequenceModel.use_cuda_graphs``, True by default). The recurrent state lives in two sets of static
buffers used in turn (ping-pong): the graph reads one set and writes the other, so no state is copied between
tokens; a state that comes from elsewhere (the prompt, beam-search reordering) is copied in first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .configuration_pixelbytes import NUM_CONTEXT_SLOTS

__all__ = ["CapturedTokenStep", "graph_step_supported"]


def graph_step_supported(model: Any) -> bool:
    """Whether :class:`CapturedTokenStep` covers ``model`` (pxby6, causal LSTM, no grid or caption memory)."""
    config = model.config
    return (
        config.backbone == "lstm"
        and config.is_causal
        and config.embedding == "pxby6"
        and not config.grid_position_size
        and not config.caption_memory_buckets
    )


class CapturedTokenStep:
    """One token per row (embedding → fused LSTM cells → head) captured as two CUDA graphs (ping-pong states).

    Args:
        model: a :class:`~pixelbytes.modeling_pixelbytes.PxBySequenceModel` on a CUDA device, in eval mode.
        batch_size: rows per step (a new batch size needs a new capture).
    """

    def __init__(self, model: Any, batch_size: int) -> None:
        if not graph_step_supported(model):
            raise ValueError("CapturedTokenStep covers causal pxby6 LSTM models without grid positions or memory")
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CapturedTokenStep needs a CUDA model, got one on {device}")
        self.model, self.batch_size = model, batch_size
        backbone = model.backbone
        self.weights_key = self._weights_key()
        B, H, L = batch_size, backbone.lstms[0].hidden_size, backbone.lstms[0].num_layers
        dtype = next(model.parameters()).dtype
        self.host_context = torch.zeros(B, NUM_CONTEXT_SLOTS, dtype=torch.long).pin_memory()
        self.context = torch.zeros(B, NUM_CONTEXT_SLOTS, dtype=torch.long, device=device)
        self.h = [[torch.zeros(B, H, device=device, dtype=dtype) for _ in range(L)] for _ in range(2)]
        self.c = [[torch.zeros(B, H, device=device, dtype=dtype) for _ in range(L)] for _ in range(2)]
        self.outputs: list[torch.Tensor] = []
        self.graphs: list[torch.cuda.CUDAGraph] = []
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(3):  # warm-up (kernel selection, workspaces) outside the capture, as CUDA graphs need
                self._compute(0)
        torch.cuda.current_stream(device).wait_stream(side)
        for parity in (0, 1):
            graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(graph):
                self.outputs.append(self._compute(parity))
            self.graphs.append(graph)
        for buffers in (*self.h, *self.c):
            for t in buffers:
                t.zero_()
        self.parity = 0  # which buffer set holds the current state

    def _weights_key(self) -> tuple:
        return tuple((p.data_ptr(), p._version) for p in self.model.parameters())

    def _compute(self, parity: int) -> torch.Tensor:
        """The captured work: reads state set ``parity``, writes set ``1 - parity``; returns the head's output."""
        model = self.model
        weight = model.embeddings.tokens.slot_embedding.weight
        x = nn.functional.embedding(self.context, weight).flatten(1)  # (B, E)
        top, state = model.backbone.fused_update(x, self.h[parity], self.c[parity])
        for layer in range(len(state["h"])):
            self.h[1 - parity][layer].copy_(state["h"][layer])
            self.c[1 - parity][layer].copy_(state["c"][layer])
        return nn.functional.linear(top, model.lm_head.weight, model.lm_head.bias)  # (B, V or 6V)

    def is_current(self) -> bool:
        """False once the model's weights changed (an optimiser step, ``load_state_dict``, ``.to()``)."""
        return self._weights_key() == self.weights_key

    def __call__(self, contexts: list[list[int]], state: dict[str, list[torch.Tensor]]) -> tuple[torch.Tensor, dict]:
        """Replay one step for ``contexts`` (B lists of 6 ids: the tracker's next contexts) from ``state``
        (``h`` / ``c`` lists); returns the head's output ``(B, V or 6V)`` (a fresh tensor) and the new state."""
        self.host_context.numpy()[:] = np.asarray(contexts, dtype=np.int64)
        self.context.copy_(self.host_context, non_blocking=True)
        p = self.parity
        for key, buffers in (("h", self.h[p]), ("c", self.c[p])):
            for layer, t in enumerate(state[key]):
                if t is not buffers[layer]:
                    buffers[layer].copy_(t)  # a state from the prompt or from beam reordering
        self.graphs[p].replay()
        self.parity = 1 - p
        return self.outputs[p].clone(), {"h": list(self.h[1 - p]), "c": list(self.c[1 - p])}
