"""Training objectives of PixelBytes models: one small module per objective (DESIGN §6).

Each objective IS the model's output head (an ``nn.Linear(hidden_size, V or 6·V)`` kept under the model's
``lm_head``, so checkpoints keep their parameter names) and holds the rest of what the objective means:

* :meth:`PxByObjective.prepare`: what the embedder reads (the contexts; diffusion objectives hide tokens);
* :meth:`PxByObjective.perturb`: what happens to the input vectors (embedding noise only);
* :meth:`PxByObjective.scores`: ``logits (B, L, V)`` and, for 6-slot heads, ``context_logits (B, L, 6, V)``;
* :meth:`PxByObjective.loss`: the loss and its metrics.

Objectives: :class:`NextTokenObjective` (``"next_token"``), :class:`ContextObjective` (``"context"``, 6-slot
prediction), :class:`MaskedDiffusionObjective` and :class:`EmbeddingNoiseObjective` (``"diffusion"`` with
``diffusion_scheme="masked"`` / ``"embedding_noise"``).

Loss normalisation. Every loss is ``Σ_r s_r · ℓ_r / D`` where ``ℓ_r`` is row r's loss (its mean over its own
items, or for token losses the sum over its targets with ``s_r · ℓ_r`` = that sum), ``s_r`` the number of row r's
labels the ``Trainer`` counts (``labels[:, 1:] != -100``, as for ``loss_type="ForCausalLM"``), and ``D`` the
``num_items_in_batch`` the Trainer passes (its count over all accumulated batches), else the batch's own
``Σ_r s_r``. The Trainer sums the losses of accumulated batches without dividing, so the sum equals the loss
of the whole batch: gradient accumulation gives the same gradients as one large batch, padded rows included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .configuration_pixelbytes import NUM_CONTEXT_SLOTS, PxByConfig
from .vocabulary import BYTE, COLOUR, token_classes_for_sizes

if TYPE_CHECKING:
    from .embeddings_pixelbytes import PxByInputEmbedder

__all__ = [
    "ContextObjective",
    "EmbeddingNoiseObjective",
    "MaskedDiffusionObjective",
    "NextTokenObjective",
    "ObjectiveInputs",
    "PxByObjective",
    "build_objective",
    "content_positions",
    "trainer_item_counts",
]


def trainer_item_counts(labels: torch.LongTensor) -> torch.LongTensor:
    """``(B,)`` labels per row that the ``Trainer`` counts into ``num_items_in_batch`` (shifted, as causal LM)."""
    return (labels[:, 1:] != -100).sum(1)


def _denominator(labels: torch.LongTensor, num_items_in_batch: Any, device: torch.device) -> torch.Tensor:
    if num_items_in_batch is None:
        return trainer_item_counts(labels).sum().clamp(min=1).to(device)
    return torch.as_tensor(num_items_in_batch, device=device)


def content_positions(
    token_classes: np.ndarray, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``(B, L)`` True where a token may be hidden or filled: bytes, colours and levels (never PAD/ROW/SEP or
    padding)."""
    classes = torch.as_tensor(token_classes, device=input_ids.device)[input_ids]
    content = classes >= BYTE
    return content if attention_mask is None else content & attention_mask.bool()


@dataclass
class ObjectiveInputs:
    """What :meth:`PxByObjective.prepare` decided: the contexts to embed (None = derive them), and for diffusion
    objectives the hidden tokens (``masked (B, L)``) or noised context slots (``slots (B, L, 6)``) at noise level
    ``step``, drawn with ``generator``."""

    context_ids: torch.LongTensor | None
    masked: torch.Tensor | None = None
    slots: torch.Tensor | None = None
    step: Any = None
    generator: torch.Generator | None = None


class PxByObjective(nn.Linear):
    """Base objective: the output head plus the loss (see the module docstring)."""

    #: whether :meth:`loss` reads the 6-slot contexts (the model derives them for other embeddings)
    needs_contexts = False

    def __init__(self, config: PxByConfig) -> None:
        super().__init__(config.hidden_size, config.output_size)
        self.vocab_size = config.vocab_size
        self.causal = config.is_causal
        self.token_classes = token_classes_for_sizes(config.num_bytes, config.num_colors, config.num_levels)

    def prepare(
        self,
        embedder: PxByInputEmbedder,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        diffusion_mask: torch.Tensor | None,
        options: dict[str, Any],
    ) -> ObjectiveInputs:
        """The contexts to embed; objectives without diffusion refuse diffusion options."""
        if diffusion_mask is not None or options:
            raise ValueError("diffusion_mask / diffusion_step / diffusion_generator are only for objective='diffusion'")
        return ObjectiveInputs(context_ids)

    def perturb(self, x: torch.Tensor, inputs: ObjectiveInputs) -> torch.Tensor:
        """The input vectors ``x (B, L, E)`` as the backbone reads them (unchanged but for embedding noise)."""
        return x

    def scores(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``logits (B, L, V)`` and ``context_logits (B, L, 6, V)`` (6-slot heads) or None."""
        return self.split(super().forward(hidden))

    def split(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's raw output ``(…, V or 6V)`` → ``logits (…, V)`` and ``context_logits (…, 6, V)`` or None."""
        if self.out_features == self.vocab_size:
            return out, None
        context_logits = out.view(*out.shape[:-1], NUM_CONTEXT_SLOTS, self.vocab_size)  # (B, L, 6, V)
        return context_logits[..., NUM_CONTEXT_SLOTS - 1, :], context_logits

    def loss(
        self,
        logits: torch.Tensor,
        context_logits: torch.Tensor | None,
        context_ids: torch.LongTensor,
        labels: torch.LongTensor,
        inputs: ObjectiveInputs,
        num_items_in_batch: Any = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss, metrics)``: metrics are ``next_token_accuracy`` and, for 6-slot heads, ``context_accuracy``."""
        raise NotImplementedError


class NextTokenObjective(PxByObjective):
    """``logits[:, k]`` predicts token ``k + 1``; cross-entropy on the labelled targets.

    ``change_token_weight`` / ``novel_pixel_weight`` weight targets that differ from the token before them / colour
    targets equal to none of their six context slots. Window encoders (bidirectional): only the last input
    position predicts, the last label (the backbone reads ``input_ids[:, :-1]``)."""

    def __init__(self, config: PxByConfig) -> None:
        super().__init__(config)
        self.change_token_weight = float(config.change_token_weight)
        self.novel_pixel_weight = float(config.novel_pixel_weight)
        self._is_colour = torch.from_numpy(self.token_classes == COLOUR)  # (V,) bool
        self.needs_contexts = self.out_features != self.vocab_size or self.novel_pixel_weight != 1.0

    def target_weights(self, labels: torch.LongTensor, context_ids: torch.LongTensor) -> torch.Tensor | None:
        """``(B, L-1)`` weight of target ``k + 1`` (None when every weight is 1)."""
        change, novel = self.change_token_weight, self.novel_pixel_weight
        if change == 1.0 and novel == 1.0:
            return None
        target = labels[:, 1:]
        weight = torch.ones_like(target, dtype=torch.float32)
        if change != 1.0:
            previous = labels[:, :-1].masked_fill(labels[:, :-1] == -100, -1)
            weight = weight.masked_fill(target != previous, change)
        if novel != 1.0:
            weight = weight * torch.where(self.novel_pixels(target, context_ids), novel, 1.0)
        return weight

    def novel_pixels(self, target_next: torch.LongTensor, context_ids: torch.LongTensor) -> torch.Tensor:
        """``(B, L-1)`` True where target ``k+1`` is a colour equal to none of the six context slots of its
        position (HF-aligned row ``k`` of ``context_ids``: the cells above, the previous frame, the token before)."""
        is_colour = self._is_colour.to(target_next.device)[target_next.clamp(min=0)]  # (B, L-1)
        seen = (context_ids[:, :-1] == target_next.unsqueeze(-1)).any(-1)  # (B, L-1)
        return is_colour & ~seen & (target_next != -100)

    def _targets(self, labels: torch.LongTensor, context_ids: torch.LongTensor) -> torch.LongTensor:
        """``(B, L-1, S)`` targets of every position k (token k + 1; 6-slot heads add the context of k + 1)."""
        target = labels[:, 1:].unsqueeze(-1)  # (B, L-1, 1)
        if self.out_features == self.vocab_size:
            return target
        valid = target != -100
        slots = torch.cat((context_ids[:, 1:, : NUM_CONTEXT_SLOTS - 1], target.clamp(min=0)), dim=-1)  # (B, L-1, 6)
        return slots.masked_fill(~valid, -100)

    def loss(
        self,
        logits: torch.Tensor,
        context_logits: torch.Tensor | None,
        context_ids: torch.LongTensor,
        labels: torch.LongTensor,
        inputs: ObjectiveInputs,
        num_items_in_batch: Any = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scores = (logits.unsqueeze(-2) if context_logits is None else context_logits)[:, :-1]  # (B, L-1, S, V)
        targets = self._targets(labels, context_ids)  # (B, L-1, S)
        per_slot = nn.functional.cross_entropy(
            scores.float().reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=-100, reduction="none"
        ).view(targets.shape)  # (B, L-1, S)
        per_target = per_slot.mean(-1)  # (B, L-1): the slots' mean (one slot for next_token)
        weight = self.target_weights(labels, context_ids)
        if weight is not None:
            per_target = per_target * weight
        valid = targets[..., -1] != -100  # (B, L-1)
        if not self.causal:
            # window encoder: the last position's target is the row's only loss, weighted like the row's labels
            valid = torch.zeros_like(valid)
            valid[:, -1] = targets[:, -1, -1] != -100
            row_loss = per_target[:, -1] * trainer_item_counts(labels)  # (B,)
        else:
            row_loss = per_target.sum(1)
        loss = row_loss.sum() / _denominator(labels, num_items_in_batch, logits.device)
        with torch.no_grad():
            predicted = scores.argmax(-1)  # (B, L-1, S)
            metrics = {"next_token_accuracy": _mean(predicted[..., -1] == targets[..., -1], valid, logits)}
            if context_logits is not None:
                metrics["context_accuracy"] = _mean(
                    predicted == targets, valid.unsqueeze(-1).expand_as(targets), logits
                )
        return loss, metrics


class ContextObjective(NextTokenObjective):
    """6-slot prediction (the original "autoregressive"): row k predicts slots 0-4 of ``context_ids[k + 1]`` (the
    neighbourhood of position k + 2) and token k + 1 in slot 5; the loss is the mean over the 6 slots;
    ``logits`` = the slot-5 head (the next-token distribution)."""


def _mean(hits: torch.Tensor, valid: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return hits[valid].float().mean() if bool(valid.any()) else like.new_zeros(())


class _DiffusionObjective(PxByObjective):
    """Shared by the diffusion objectives: ``logits[:, k]`` scores token k itself (no shift)."""

    #: Generator of training-time masks and noise (on the inputs' device); ``None`` = torch's global RNG, which
    #: the ``Trainer`` seeds and restores when resuming. In eval mode draws come from a generator seeded by the
    #: batch itself, so every evaluation of a batch masks and noises it the same way (comparable ``eval_loss``).
    generator: torch.Generator | None = None

    def __init__(self, config: PxByConfig) -> None:
        super().__init__(config)
        self.num_diffusion_steps = config.num_diffusion_steps
        # every content id → another id of its class (same layout, other value)
        classes = self.token_classes
        other = np.arange(len(classes))
        for cls in np.unique(classes[classes >= BYTE]):
            members = np.flatnonzero(classes == cls)
            if len(members) > 1:
                other[members] = np.roll(members, -1)
        self._same_class_other = torch.from_numpy(other)

    def rng(self, input_ids: torch.LongTensor) -> torch.Generator | None:
        """The generator of random masks / noise: :attr:`generator` (or the global RNG) when training, one
        seeded by the batch's ids in eval mode."""
        if self.training:
            generator = self.generator
            if generator is not None and generator.device.type != input_ids.device.type:
                raise ValueError(
                    f"diffusion_generator is on {generator.device}, the inputs on {input_ids.device}: "
                    "create it on the model's device"
                )
            return generator
        L = input_ids.shape[1]
        weights = torch.arange(1, L + 1, device=input_ids.device, dtype=torch.long)
        seed = int((input_ids.long() * weights).sum()) % (2**31 - 1) + L
        return torch.Generator(device=input_ids.device).manual_seed(seed)

    def slots_referring_to(
        self,
        embedder: PxByInputEmbedder,
        input_ids: torch.LongTensor,
        masked: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.LongTensor, torch.Tensor]:
        """The clean derived contexts and, per context value, whether it refers to a ``masked`` token. The layout
        depends on token classes only: swap each masked token for another of its class, and every context value
        that changes is one that refers to a masked token."""
        clean = embedder.derive_context_ids(input_ids, attention_mask)
        other = self._same_class_other.to(input_ids.device)[input_ids]
        swapped = embedder.derive_context_ids(torch.where(masked, other, input_ids), attention_mask)
        return clean, clean != swapped

    def _check_token_mask(
        self, mask: torch.Tensor, input_ids: torch.LongTensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        masked = mask.bool().to(input_ids.device)
        if masked.shape != input_ids.shape:
            raise ValueError(f"diffusion_mask must have shape {tuple(input_ids.shape)}, got {tuple(mask.shape)}")
        if bool((masked & ~content_positions(self.token_classes, input_ids, attention_mask)).any()):
            raise ValueError("only content tokens (bytes, colours, levels) can be hidden; never PAD/ROW/SEP")
        return masked


class MaskedDiffusionObjective(_DiffusionObjective):
    """Absorbing-state masked diffusion: the mask id is ``vocab_size``; only content tokens are masked; the layout
    comes from the clean structure and every context value that refers to a masked token is the mask id. With
    ``labels`` and no ``diffusion_mask`` a rate t ~ U(0, 1) is drawn per row and each content token is masked with
    probability t (at least one per row with content). Row loss: the mean cross-entropy over its masked tokens."""

    def masked_context_ids(
        self,
        embedder: PxByInputEmbedder,
        input_ids: torch.LongTensor,
        masked: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.LongTensor:
        """Contexts of the stream whose ``masked`` positions are hidden (see the class docstring)."""
        if not bool(masked.any()):
            return embedder.derive_context_ids(input_ids, attention_mask)
        if embedder.kind == "center":
            clean = embedder.derive_context_ids(input_ids, attention_mask)
            return clean.masked_fill(masked.unsqueeze(-1), self.vocab_size)
        clean, refers = self.slots_referring_to(embedder, input_ids, masked, attention_mask)
        return clean.masked_fill(refers, self.vocab_size)

    def prepare(
        self,
        embedder: PxByInputEmbedder,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        diffusion_mask: torch.Tensor | None,
        options: dict[str, Any],
    ) -> ObjectiveInputs:
        if options.get("diffusion_step") is not None:
            raise ValueError("diffusion_step (a noise level) is only for diffusion_scheme='embedding_noise'")
        if context_ids is not None:
            raise ValueError("diffusion models derive their contexts from input_ids and the masking: omit context_ids")
        content = content_positions(self.token_classes, input_ids, attention_mask)
        if diffusion_mask is not None:
            masked = self._check_token_mask(diffusion_mask, input_ids, attention_mask)
        elif labels is not None:
            generator = options.get("diffusion_generator") or self.rng(input_ids)
            device = input_ids.device
            rate = torch.rand(input_ids.shape[0], 1, device=device, generator=generator)
            masked = (torch.rand(input_ids.shape, device=device, generator=generator) < rate) & content
            empty = ~masked.any(1) & content.any(1)
            if bool(empty.any()):
                pick = torch.multinomial(content[empty].float(), 1, generator=generator)
                masked[empty] = masked[empty].scatter(1, pick, True)
        else:
            masked = torch.zeros_like(content)
        return ObjectiveInputs(self.masked_context_ids(embedder, input_ids, masked, attention_mask), masked=masked)

    def loss(
        self,
        logits: torch.Tensor,
        context_logits: torch.Tensor | None,
        context_ids: torch.LongTensor,
        labels: torch.LongTensor,
        inputs: ObjectiveInputs,
        num_items_in_batch: Any = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        targets = labels.masked_fill(~inputs.masked, -100)
        valid = targets != -100  # (B, L)
        per_token = nn.functional.cross_entropy(
            logits.float().reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=-100, reduction="none"
        ).view(targets.shape)
        row_mean = per_token.sum(1) / valid.sum(1).clamp(min=1)  # (B,)
        loss = (row_mean * trainer_item_counts(labels)).sum() / _denominator(labels, num_items_in_batch, logits.device)
        with torch.no_grad():
            accuracy = _mean(logits.argmax(-1) == targets, valid, logits)
        return loss, {"next_token_accuracy": accuracy}


class EmbeddingNoiseObjective(_DiffusionObjective):
    """The original aPxBy diffusion (reference inventory §3.5), pxby6 only: Gaussian noise on the embeddings of
    chosen context slots, ``x = (1 - α)·N(0, 1) + α·x`` with ``α = 1 - t / num_diffusion_steps``; a 6·V head
    reconstructs every slot of ``context_ids`` (no shift), ``logits`` = slot 5 = token k itself. Row loss: the
    mean cross-entropy over the 6 slots of its labelled positions, noised or not (as the original).

    Which slots are noised: ``diffusion_mask`` ``(B, L)`` = content tokens to hide (:meth:`noise_slots`) or
    ``(B, L, 6)`` = the slots themselves; with ``labels`` and no mask, the original's random training pattern;
    otherwise none (the clean forward of converted checkpoints). ``diffusion_step`` t ∈ [0, n] (a number or a
    ``(B,)`` tensor): default n (pure noise) with a mask, t ~ U{n-1, n} (the original's draw) with labels."""

    def noise_slots(
        self,
        embedder: PxByInputEmbedder,
        input_ids: torch.LongTensor,
        masked: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, L, 6)`` context slots to noise so that the ``masked`` tokens are hidden: every slot whose value is
        a masked token (slot 5 of its own row, the row below, the next frame…) plus the original's pattern — the
        whole row of a masked token and slots 0-4 of the row after it."""
        masked = masked.bool()
        _, slots = self.slots_referring_to(embedder, input_ids, masked, attention_mask)
        slots = slots | masked.unsqueeze(-1)
        following = torch.zeros_like(masked)
        following[:, 1:] = masked[:, :-1]
        if attention_mask is not None:
            following &= attention_mask.bool()
        slots[..., : NUM_CONTEXT_SLOTS - 1] |= following.unsqueeze(-1)
        return slots

    def training_slots(
        self, attention_mask: torch.Tensor | None, shape: tuple[int, int], generator: torch.Generator | None,
        device: torch.device,
    ) -> torch.Tensor:  # fmt: skip
        """The original's training noise pattern, per row: ⌊3n/4⌋ positions drawn with replacement among the n
        real ones (≈ 53 % distinct); each drawn row is noised in all 6 slots, the row after it in slots 0-4."""
        B, L = shape
        real = torch.ones(B, L, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
        n = real.sum(1)  # (B,)
        draws = (3 * L) // 4
        picked = torch.zeros(B, L, dtype=torch.bool, device=device)
        if draws:
            index = (torch.rand(B, draws, device=device, generator=generator) * n.unsqueeze(1)).long()
            keep = torch.arange(draws, device=device) < (3 * n // 4).unsqueeze(1)
            order = torch.argsort((~real).to(torch.int8), dim=1, stable=True)  # real positions first, in order
            columns = order.gather(1, index.clamp(max=L - 1))
            counts = torch.zeros(B, L, dtype=torch.long, device=device).scatter_add(1, columns, keep.long())
            picked = (counts > 0) & real
        slots = picked.unsqueeze(-1).expand(B, L, NUM_CONTEXT_SLOTS).clone()
        following = torch.zeros_like(picked)
        following[:, 1:] = picked[:, :-1]
        slots[..., : NUM_CONTEXT_SLOTS - 1] |= (following & real).unsqueeze(-1)
        return slots

    def prepare(
        self,
        embedder: PxByInputEmbedder,
        input_ids: torch.LongTensor,
        context_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.LongTensor | None,
        diffusion_mask: torch.Tensor | None,
        options: dict[str, Any],
    ) -> ObjectiveInputs:
        B, L = input_ids.shape
        device = input_ids.device
        n = self.num_diffusion_steps
        step = options.get("diffusion_step")
        generator = options.get("diffusion_generator")
        if context_ids is None:
            context_ids = embedder.derive_context_ids(input_ids, attention_mask)
        slots = None
        if diffusion_mask is not None:
            mask = diffusion_mask.bool().to(device)
            if mask.shape == (B, L):
                hidden = self._check_token_mask(mask, input_ids, attention_mask)
                slots = self.noise_slots(embedder, input_ids, hidden, attention_mask)
            elif mask.shape == (B, L, NUM_CONTEXT_SLOTS):
                slots = mask
            else:
                raise ValueError(
                    f"diffusion_mask must have shape {(B, L)} (tokens to hide) or {(B, L, NUM_CONTEXT_SLOTS)} "
                    f"(context slots to noise), got {tuple(mask.shape)}"
                )
        elif labels is not None:
            generator = generator if generator is not None else self.rng(input_ids)
            slots = self.training_slots(attention_mask, (B, L), generator, device)
            if step is None:
                step = torch.randint(n - 1, n + 1, (B,), device=device, generator=generator)
        elif step is not None:
            raise ValueError("diffusion_step needs a diffusion_mask (what to noise) or labels (the training noise)")
        if slots is not None and bool(slots.any()):
            step = torch.as_tensor(n if step is None else step, dtype=torch.float32, device=device)
            if step.dim() > 1 or (step.dim() == 1 and step.shape[0] != B):
                raise ValueError(f"diffusion_step must be a number or a ({B},) tensor, got shape {tuple(step.shape)}")
            if bool((step < 0).any()) or bool((step > n).any()):
                raise ValueError(f"diffusion_step must be in [0, num_diffusion_steps={n}]")
            if generator is None:
                generator = self.rng(input_ids)
        else:
            slots = None
        return ObjectiveInputs(context_ids, slots=slots, step=step, generator=generator)

    def perturb(self, x: torch.Tensor, inputs: ObjectiveInputs) -> torch.Tensor:
        if inputs.slots is None:
            return x
        B, L, _ = x.shape
        alpha = (1.0 - inputs.step / self.num_diffusion_steps).to(x.dtype).reshape(-1, 1, 1, 1)  # (B or 1, 1, 1, 1)
        per_slot = x.view(B, L, NUM_CONTEXT_SLOTS, -1)  # (B, L, 6, e)
        noise = torch.randn(per_slot.shape, device=x.device, dtype=x.dtype, generator=inputs.generator)
        noisy = (1.0 - alpha) * noise + alpha * per_slot
        return torch.where(inputs.slots.unsqueeze(-1), noisy, per_slot).reshape(B, L, -1)

    def loss(
        self,
        logits: torch.Tensor,
        context_logits: torch.Tensor | None,
        context_ids: torch.LongTensor,
        labels: torch.LongTensor,
        inputs: ObjectiveInputs,
        num_items_in_batch: Any = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rows = labels != -100  # (B, L)
        targets = context_ids.masked_fill(~rows.unsqueeze(-1), -100)  # (B, L, 6)
        per_slot = nn.functional.cross_entropy(
            context_logits.float().reshape(-1, self.vocab_size), targets.reshape(-1), ignore_index=-100,
            reduction="none",
        ).view(targets.shape)  # fmt: skip
        row_mean = per_slot.sum((1, 2)) / (rows.sum(1) * NUM_CONTEXT_SLOTS).clamp(min=1)  # (B,)
        loss = (row_mean * trainer_item_counts(labels)).sum() / _denominator(labels, num_items_in_batch, logits.device)
        with torch.no_grad():
            predicted = context_logits.argmax(-1)
            metrics = {
                "context_accuracy": _mean(predicted == context_ids, rows.unsqueeze(-1).expand_as(targets), logits),
                "next_token_accuracy": _mean(predicted[..., -1] == context_ids[..., -1], rows, logits),
            }
        return loss, metrics


def build_objective(config: PxByConfig) -> PxByObjective:
    """The objective ``config`` asks for."""
    if config.objective == "next_token":
        return NextTokenObjective(config)
    if config.objective == "context":
        return ContextObjective(config)
    if config.diffusion_scheme == "embedding_noise":
        return EmbeddingNoiseObjective(config)
    return MaskedDiffusionObjective(config)
