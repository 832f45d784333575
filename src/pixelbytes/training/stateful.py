"""The ``Trainer`` of stateful training windows: truncated BPTT over lanes of consecutive windows (issue #13).

:class:`PxByStatefulTrainer` trains on :class:`~pixelbytes.data.stateful.PxByStatefulWindowDataset` (the layout is
described there): its dataloader yields batch k = window k of every lane, in order, never shuffled. For every batch
the backbone starts from the state the previous batch of the same lanes ended with (``initial_state`` of
``PxBySequenceModel.forward``), DETACHED (gradients stop at the window boundary: truncated BPTT), with the rows
whose ``reset_state`` flag is set (a sample starts there) zeroed. Gradient accumulation keeps working: the
micro-batches of one optimizer step are consecutive windows, each fed the state of the one before.

* Evaluation on a stateful dataset carries its own state the same way (without gradients), from zero at the
  start of every evaluation; the training state is left untouched by it. A plain window dataset is evaluated as
  the ``Trainer`` does.
* Epochs: the first batch of an epoch starts a new sample in every lane (all flags set), so no state crosses an
  epoch. Resuming mid-epoch from a checkpoint starts the resumed lanes from a zero state (the state is not saved).
* Several processes (``torchrun`` / ``accelerate launch``): each process runs its own lanes (the sampler's
  ``rank`` share, see :class:`~pixelbytes.data.stateful.StatefulLaneSampler`), every process the same number of
  batches.
* Backbones: causal LSTM and Mamba (state = per-layer h/c, or conv + ssm). Attention backbones, bidirectional
  and diffusion models are refused (:func:`check_stateful_model`). The caption memory needs no state: each window
  carries its ``caption_prefix_ids``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from transformers import Trainer

from ..data.stateful import PxByStatefulWindowDataset, StatefulLaneSampler

logger = logging.getLogger(__name__)

__all__ = ["PxByStatefulTrainer", "carry_state", "check_stateful_model"]

States = dict[str, list[torch.Tensor]]


def check_stateful_model(model: nn.Module) -> None:
    """``ValueError`` (one line) unless ``model`` has a causal recurrent backbone (LSTM or Mamba)."""
    config = model.config
    if config.objective == "diffusion" or config.bidirectional:
        kind = "a diffusion objective" if config.objective == "diffusion" else f"bidirectional={config.bidirectional!r}"
        raise ValueError(f"stateful windows need a causal recurrent backbone (lstm or mamba); this model has {kind}")
    if config.backbone not in ("lstm", "mamba"):
        raise ValueError(
            f"stateful windows need a causal recurrent backbone (lstm or mamba), got backbone={config.backbone!r}"
        )


def carry_state(state: States | None, reset: torch.Tensor) -> States:
    """The initial state of the next window: ``state`` detached (truncated BPTT), rows with ``reset (B,)`` zeroed.

    ``{}`` (= zeros, the model's convention) when there is no state yet, every row resets, or the batch size
    changed (logged); every state tensor has the batch first (the backbone contract)."""
    if not state or bool(reset.all()):
        return {}
    B = reset.shape[0]
    first = next(t for tensors in state.values() for t in tensors)
    if first.shape[0] != B:
        logger.info("stateful windows: batch of %d rows after a state of %d: starting from zeros", B, first.shape[0])
        return {}
    out: States = {}
    for key, tensors in state.items():
        out[key] = [
            t.detach().masked_fill(reset.to(t.device).view(B, *(1,) * (t.dim() - 1)), 0.0) for t in tensors
        ]  # (B, …) each
    return out


class PxByStatefulTrainer(Trainer):
    """``transformers.Trainer`` for stateful windows (see the module docstring). Build it as a ``Trainer`` with a
    :class:`~pixelbytes.data.stateful.PxByStatefulWindowDataset` as ``train_dataset`` and the
    :class:`~pixelbytes.data.stateful.PxByStatefulCollator`; the lane order is drawn from ``args.data_seed``
    (``args.seed`` when unset)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_stateful_model(self.model)
        if not isinstance(self.train_dataset, PxByStatefulWindowDataset | None):
            raise TypeError(
                f"PxByStatefulTrainer trains on a PxByStatefulWindowDataset, got {type(self.train_dataset).__name__}"
            )
        #: the state each mode's lanes ended with ("train" / "eval"), detached
        self._carried: dict[str, States | None] = {"train": None, "eval": None}

    # ------------------------------------------------------------------------------------------ data
    def _lane_loader(self, dataset: PxByStatefulWindowDataset, batch_size: int, training: bool) -> DataLoader:
        """The lane-ordered dataloader of ``dataset``: this process's lanes, batches in order."""
        args = self.args
        seed = args.data_seed if args.data_seed is not None else args.seed
        sampler = StatefulLaneSampler(dataset, batch_size, shuffle=training, seed=seed,
                                      num_replicas=args.world_size, rank=args.process_index)  # fmt: skip
        loader = DataLoader(
            dataset, batch_sampler=sampler, collate_fn=self.data_collator, num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
        )  # fmt: skip
        prepared = self.accelerator.prepare(loader)
        # the sampler already holds this process's lanes: the sharding wrapper accelerate adds with several
        # processes would split the batches again, so it is made a pass-through (as transformers does for its
        # rank-aware BatchRebalanceSampler)
        wrapper = getattr(prepared, "batch_sampler", None)
        if wrapper is not None and getattr(wrapper, "batch_sampler", None) is sampler:
            wrapper.num_processes, wrapper.process_index = 1, 0
        return prepared

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("PxByStatefulTrainer: training requires a train_dataset")
        return self._lane_loader(self.train_dataset, self._train_batch_size, training=True)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        if not isinstance(dataset, PxByStatefulWindowDataset):
            return super().get_eval_dataloader(eval_dataset)
        return self._lane_loader(dataset, self.args.eval_batch_size, training=False)

    # ------------------------------------------------------------------------------------------ loop
    def train(self, *args: Any, **kwargs: Any) -> Any:
        self._carried["train"] = None
        return super().train(*args, **kwargs)

    def evaluation_loop(self, *args: Any, **kwargs: Any) -> Any:
        self._carried["eval"] = None
        try:
            return super().evaluation_loop(*args, **kwargs)
        finally:
            self._carried["eval"] = None

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        """The ``Trainer``'s loss, each lane starting from its carried state; the new state is kept detached."""
        reset = inputs.pop("reset_state", None)
        if reset is None:  # a plain window batch (e.g. a plain evaluation dataset)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if model.training else "eval"
        inputs = {**inputs, "initial_state": carry_state(self._carried[mode], reset)}
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        state = outputs["state"]
        self._carried[mode] = {key: [t.detach() for t in tensors] for key, tensors in state.items()}
        if not return_outputs:
            return loss
        # the state is no prediction: the evaluation loop must not gather it
        return loss, type(outputs)(**{key: value for key, value in outputs.items() if key != "state"})
