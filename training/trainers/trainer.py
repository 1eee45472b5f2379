"""transformers' Trainer for pairwise scoring, and the callbacks the job system watches and steers it by.

Mixed precision, gradient accumulation, checkpoints and resume, and multi-GPU (DDP, DeepSpeed, FSDP
under `accelerate launch`) are the library's; this module adds only the pairwise loss, an evaluation
step that returns both scores of each pair, and two callbacks:

- `ProgressReporter`: each log, evaluation and checkpoint as a dict to a callable and/or as one JSON
  line appended to a progress file (main process only).
- `StopOnRequest`: asks `should_stop()` after every optimiser step; when it says yes, the Trainer saves a
  checkpoint and stops, all processes at the same step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import EvalPrediction

from training.trainers.losses import pairwise_loss

log = logging.getLogger(__name__)

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]


class PairwiseTrainer(Trainer):
    """Trainer whose batches are PairwiseCollator output: rows [0, B) higher side, [B, 2B) lower side."""

    # compute_loss returns a per-batch mean; the Trainer divides it by the accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, kind: str, l2_coeff: float, **kwargs: Any) -> None:
        self.kind = kind
        self.l2_coeff = l2_coeff
        super().__init__(*args, **kwargs)
        # Running training accuracy between two logs, kept on the device to avoid a sync per step.
        self._acc_correct = torch.zeros((), dtype=torch.float64)
        self._acc_sign = torch.zeros((), dtype=torch.float64)
        self._acc_pairs = 0

    def _scores(
        self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
        scores = logits.squeeze(-1).float()
        higher, lower = scores.chunk(2)
        return higher, lower

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        higher, lower = self._scores(model, inputs)
        higher_sign, lower_sign = inputs["signs"].chunk(2)
        loss = pairwise_loss(self.kind, higher, lower, higher_sign, lower_sign, self.l2_coeff)
        if model.training:
            with torch.no_grad():
                if self._acc_correct.device != higher.device:
                    self._acc_correct = self._acc_correct.to(higher.device)
                    self._acc_sign = self._acc_sign.to(higher.device)
                self._acc_correct += (higher > lower).sum()
                if self.kind == "cost":
                    self._acc_sign += ((higher > 0) == (higher_sign > 0)).sum()
                    self._acc_sign += ((lower > 0) == (lower_sign > 0)).sum()
                self._acc_pairs += higher.shape[0]
        if return_outputs:
            return loss, {"scores": torch.stack([higher, lower], dim=1)}
        return loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            higher, lower = self._scores(model, inputs)
            higher_sign, lower_sign = inputs["signs"].chunk(2)
            loss = pairwise_loss(self.kind, higher, lower, higher_sign, lower_sign, self.l2_coeff)
        if prediction_loss_only:
            return loss.detach(), None, None
        # predictions: (B, 2) scores; "labels": (B, 2) safety signs, so metrics can split by safety.
        return (
            loss.detach(),
            torch.stack([higher, lower], dim=1).detach(),
            torch.stack([higher_sign, lower_sign], dim=1),
        )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._acc_pairs:
            logs["accuracy"] = round(float(self._acc_correct.item()) / self._acc_pairs, 4)
            if self.kind == "cost":
                logs["sign_accuracy"] = round(float(self._acc_sign.item()) / (2 * self._acc_pairs), 4)
            self._acc_correct.zero_()
            self._acc_sign.zero_()
            self._acc_pairs = 0
        super().log(logs, start_time)


def pairwise_metrics(kind: str, scores: np.ndarray, signs: np.ndarray) -> dict[str, float]:
    """Pairwise accuracy (higher side scored higher); for cost also sign accuracy (cost > 0 iff unsafe)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 2)
    signs = np.asarray(signs, dtype=np.float64).reshape(-1, 2)
    out: dict[str, float] = {"pairs": float(len(scores))}
    if len(scores) == 0:
        return out
    out["accuracy"] = float(np.mean(scores[:, 0] > scores[:, 1]))
    out["mean_margin"] = float(np.mean(scores[:, 0] - scores[:, 1]))
    out["mean_score"] = float(np.mean(scores))
    if kind == "cost":
        flat_scores, flat_signs = scores.ravel(), signs.ravel()
        out["sign_accuracy"] = float(np.mean((flat_scores > 0) == (flat_signs > 0)))
        unsafe = flat_signs > 0
        # Per-class recall: on a skewed test split, overall sign accuracy alone can hide a constant model.
        if unsafe.any():
            out["unsafe_recall"] = float(np.mean(flat_scores[unsafe] > 0))
        if (~unsafe).any():
            out["safe_recall"] = float(np.mean(flat_scores[~unsafe] <= 0))
    return out


def make_compute_metrics(kind: str) -> Callable[[EvalPrediction], dict[str, float]]:
    def compute_metrics(pred: EvalPrediction) -> dict[str, float]:
        predictions = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        assert pred.label_ids is not None
        labels = pred.label_ids[0] if isinstance(pred.label_ids, tuple) else pred.label_ids
        return pairwise_metrics(kind, np.asarray(predictions), np.asarray(labels))

    return compute_metrics


class ProgressReporter(TrainerCallback):
    """Reports progress to a callable and/or a JSON-lines file; the main process writes, others stay quiet.

    Each record has `event` ("train_begin", "log", "eval", "checkpoint", "stop_requested",
    "train_end"), `step`, `max_steps`, `epoch`, `progress` (0..1) and `time`; "log" records add
    `loss`, `learning_rate`, `grad_norm`, `accuracy` (and `sign_accuracy` for cost), "eval" records
    the `eval_*` metrics, "checkpoint" the checkpoint's `path`.
    """

    def __init__(self, *, progress: ProgressFn | None = None, progress_file: str | None = None) -> None:
        self.progress = progress
        self.progress_file = progress_file
        self.extra: dict[str, Any] = {}

    def emit(self, state: TrainerState, event: str, **fields: Any) -> None:
        if not state.is_world_process_zero:
            return
        max_steps = int(state.max_steps or 0)
        record: dict[str, Any] = {
            "event": event,
            "step": int(state.global_step),
            "max_steps": max_steps,
            "epoch": None if state.epoch is None else round(float(state.epoch), 4),
            "progress": round(min(1.0, state.global_step / max_steps), 4) if max_steps else 0.0,
            "time": round(time.time(), 3),
        }
        record.update(fields)
        record = {k: _jsonable(v) for k, v in record.items()}
        if self.progress_file:
            with open(self.progress_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.progress is not None:
            self.progress(record)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.emit(state, "train_begin", **self.extra)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        logs = dict(logs or {})
        if any(k.startswith("eval_") for k in logs):
            self.emit(state, "eval", **logs)
        elif "train_runtime" in logs:
            self.emit(state, "train_summary", **logs)
        else:
            self.emit(state, "log", **logs)

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        path = os.path.join(args.output_dir or "", f"checkpoint-{state.global_step}")
        self.emit(state, "checkpoint", path=path)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.emit(state, "train_end")


class NoFinalCheckpoint(TrainerCallback):
    """Skips the full checkpoint transformers writes after the last step when it is off the save_steps grid.

    train() saves the trained model itself right after; that checkpoint would add the optimiser state
    (twice the model again: 12 GB for a 1B model) to the run's time and disk, only to resume a run
    that has nothing left to do. A stop request on the last step still saves (StopOnRequest runs later).
    """

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step >= state.max_steps and state.save_steps and state.global_step % state.save_steps:
            control.should_save = False


class StopOnRequest(TrainerCallback):
    """Stops training cleanly, with a checkpoint, at the first step after `should_stop()` says so.

    Under several processes every rank asks and the answers are max-reduced, so all ranks stop at the
    same step (a rank that stopped alone would leave the others waiting in a collective forever).
    """

    def __init__(self, should_stop: StopFn, progress: ProgressReporter | None = None) -> None:
        self.should_stop = should_stop
        self.progress = progress
        self.stopped_at: int | None = None

    def _ask(self, args: TrainingArguments) -> bool:
        try:
            local = bool(self.should_stop())
        except Exception:  # a broken probe must not kill a long run
            log.exception("should_stop() raised; carrying on")
            local = False
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([1 if local else 0], device=args.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return local

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.stopped_at is None and self._ask(args):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
            log.info("stop requested: saving a checkpoint at step %d and stopping", state.global_step)
            if self.progress is not None:
                self.progress.emit(state, "stop_requested")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value
