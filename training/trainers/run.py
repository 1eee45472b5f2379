"""Entry point: train a reward or cost model from pku-saferlhf files, evaluate it, save it.

In Python (a Celery worker's subprocess, a notebook, a script under `accelerate launch`)::

    from training.trainers import TrainerConfig, train
    result = train(TrainerConfig(kind="reward", base_model="/models/minilm", output_dir="/jobs/7"),
                   train_files=["train.jsonl"], test_files=["test.jsonl"],
                   progress=print, should_stop=lambda: False)

From the command line (one process, or every process of `accelerate launch -m ...`)::

    python -m training.trainers.run --config cfg.json --train train.jsonl --test test.jsonl \
        --progress-file progress.jsonl --cancel-file CANCEL --result-file result.json

Exit codes: 0 succeeded, 3 cancelled (cancel file; checkpoint saved), 4 interrupted by SIGTERM
(checkpoint saved; the same command resumes), 2 invalid config or data, 1 anything else.
`launch_command()` builds the argv (plain or `accelerate launch`) for the job system to supervise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from training.trainers.config import (
    CONFIG_FILE,
    MODERATION,
    POLICY,
    ModerationConfig,
    PolicyConfig,
    TrainerConfig,
    config_from_dict,
    config_from_json_file,
)
from training.trainers.launch import (
    EXIT_CANCELLED,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    cancel_file_probe,
    find_checkpoint,
    launch_command,
)

if TYPE_CHECKING:
    from transformers import TrainingArguments

# torch, transformers and datasets load inside train(): the CLI rejects a bad config in a blink, and
# `launch_command` / `find_checkpoint` (re-exported here) stay importable without them.
__all__ = [
    "TrainResult",
    "cancel_file_probe",
    "find_checkpoint",
    "launch_command",
    "main",
    "train",
    "training_arguments",
]

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]

log = logging.getLogger("training.trainers")

Status = Literal["succeeded", "cancelled"]


@dataclasses.dataclass
class TrainResult:
    status: Status
    kind: str
    config_hash: str
    output_dir: str
    global_step: int
    max_steps: int
    train_pairs: int
    test_pairs: int
    # transformers' train metrics (train_loss, train_runtime, train_samples_per_second: pairs/s, ...).
    metrics: dict[str, Any]
    # Test-split evaluation: {"kind", "metrics": {accuracy, sign_accuracy, ...}, "histogram": {...}}.
    eval: dict[str, Any]
    # Every log record of the run (loss, learning rate, accuracy per logging step; evaluations).
    history: list[dict[str, Any]]
    artifact_path: str | None = None
    images: list[str] = dataclasses.field(default_factory=list)
    eval_path: str | None = None
    checkpoint: str | None = None
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def training_arguments(config: TrainerConfig, *, has_eval: bool) -> TrainingArguments:
    """transformers' TrainingArguments for this config: the library runs the loop, precision, devices."""
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    if (config.bf16 or config.fp16) and not cuda:
        log.warning("no CUDA device: bf16/fp16 ignored, training in float32")
    bf16 = config.bf16 and cuda
    fp16 = config.fp16 and cuda
    evaluate_during = has_eval and config.eval_steps > 0
    return TrainingArguments(
        output_dir=config.output_dir,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_batch_size,
        # Evaluation keeps no activations for backward, so twice the pairs fit.
        per_device_eval_batch_size=config.per_device_batch_size * 2,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        # transformers 5 reads a warmup_steps below 1 as a share of the total steps.
        warmup_steps=config.warmup_ratio,
        lr_scheduler_type=config.lr_scheduler,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        fp16=fp16,
        activation_checkpointing=config.gradient_checkpointing,
        logging_strategy="steps",
        logging_steps=config.logging_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        eval_strategy="steps" if evaluate_during else "no",
        eval_steps=config.eval_steps if evaluate_during else None,
        # Our batches carry their own columns (two sides, signs): keep them all.
        remove_unused_columns=False,
        label_names=["signs"],
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        dataloader_num_workers=config.dataloader_num_workers,
        dataloader_pin_memory=cuda,
        # Every parameter of a sequence scorer takes part in each step; searching for unused ones
        # costs a graph walk per step under DDP.
        ddp_find_unused_parameters=False,
        deepspeed=config.deepspeed,
        fsdp=config.fsdp or None,
        fsdp_config=config.fsdp_config,
        report_to="none",
        disable_tqdm=True,
    )


def train(
    config: TrainerConfig,
    *,
    train_files: Sequence[str | os.PathLike[str]],
    test_files: Sequence[str | os.PathLike[str]] = (),
    progress: ProgressFn | None = None,
    progress_file: str | os.PathLike[str] | None = None,
    should_stop: StopFn | None = None,
    resume: bool = True,
    eval_prompt_files: Sequence[str | os.PathLike[str]] = (),
) -> TrainResult:
    """Train, evaluate on the test split and save a reward or cost model.

    - progress: called with each progress record (see ProgressReporter); progress_file: the same
      records appended as JSON lines.
    - should_stop: asked after every optimiser step; True saves a checkpoint and returns a result with
      status "cancelled" (no evaluation, no artifact).
    - resume: continue from the newest complete checkpoint in config.output_dir, if any.

    The artifact, out_dir/model, is a standard checkpoint (`from_pretrained` loads it) with its
    tokenizer and trainer_config.json; evaluation goes to out_dir/eval/ (eval.json and PNG histogram).
    Raises ValueError for an invalid config or data. A moderation config trains the QA-moderation
    classifier instead (training.trainers.moderation), and a policy config a policy by PPO-Lag or a
    baseline (training.trainers.policy; eval_prompt_files: its held-out prompts), under the same contract.
    """
    if config.kind == POLICY:
        from training.trainers.policy import train_policy

        assert isinstance(config, PolicyConfig)
        result: TrainResult = train_policy(
            config,
            train_files=train_files,
            test_files=test_files,
            eval_prompt_files=eval_prompt_files,
            progress=progress,
            progress_file=progress_file,
            should_stop=should_stop,
            resume=resume,
        )
        return result
    if config.kind == MODERATION:
        from training.trainers.moderation import train_moderation

        assert isinstance(config, ModerationConfig)
        return train_moderation(
            config,
            train_files=train_files,
            test_files=test_files,
            progress=progress,
            progress_file=progress_file,
            should_stop=should_stop,
            resume=resume,
        )
    import numpy as np
    from transformers import set_seed

    from training.trainers.data import (
        PairwiseCollator,
        data_files,
        load_rows,
        split_by_prompt,
        to_pairs,
        tokenize_pairs,
    )
    from training.trainers.evaluation import write_evaluation
    from training.trainers.modeling import load_model, load_tokenizer
    from training.trainers.trainer import (
        NoFinalCheckpoint,
        PairwiseTrainer,
        ProgressReporter,
        StopOnRequest,
        make_compute_metrics,
    )

    config.check_paths()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)

    checkpoint = find_checkpoint(out) if resume else None
    _check_resume(out, config, checkpoint)

    train_paths = data_files(train_files)
    test_paths = data_files(test_files) if test_files else []
    tokenizer = load_tokenizer(config.base_model)
    has_eval = bool(test_paths) or config.eval_split > 0
    args = training_arguments(config, has_eval=has_eval)
    if args.should_save:
        (out / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")

    cache_dir = str(out / "datasets-cache")
    # The main process builds the tokenised dataset cache first; the others then read it.
    with args.main_process_first(desc="prepare data"):
        pairs = to_pairs(load_rows(train_paths, cache_dir=cache_dir), config.kind)
        if test_paths:
            test_pairs = to_pairs(load_rows(test_paths, cache_dir=cache_dir), config.kind)
        else:
            pairs, test_pairs = split_by_prompt(pairs, config.eval_split, config.seed)
        train_ds = tokenize_pairs(pairs, tokenizer, template=config.template, max_length=config.max_length)
        test_ds = None
        if test_pairs is not None:
            test_ds = tokenize_pairs(
                test_pairs, tokenizer, template=config.template, max_length=config.max_length
            )

    model = load_model(config.base_model, tokenizer)
    reporter = ProgressReporter(
        progress=progress, progress_file=os.fspath(progress_file) if progress_file else None
    )
    reporter.extra = {
        "kind": config.kind,
        "train_pairs": len(train_ds),
        "test_pairs": len(test_ds) if test_ds is not None else 0,
        "resumed_from": checkpoint,
    }
    callbacks: list[Any] = [NoFinalCheckpoint(), reporter]
    stopper = StopOnRequest(should_stop, reporter) if should_stop is not None else None
    if stopper is not None:
        callbacks.append(stopper)
    pad_multiple = 8 if (args.bf16 or args.fp16) else None
    trainer = PairwiseTrainer(
        model=model,
        args=args,
        data_collator=PairwiseCollator(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=pad_multiple),
        train_dataset=train_ds,
        eval_dataset=test_ds,
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(config.kind),
        callbacks=callbacks,
        kind=config.kind,
        l2_coeff=config.l2_coeff,
    )
    if checkpoint:
        log.info("resuming from %s", checkpoint)
    output = trainer.train(resume_from_checkpoint=checkpoint)
    state = trainer.state
    result = TrainResult(
        status="succeeded",
        kind=config.kind,
        config_hash=config.hash(),
        output_dir=str(out),
        global_step=int(state.global_step),
        max_steps=int(state.max_steps),
        train_pairs=len(train_ds),
        test_pairs=len(test_ds) if test_ds is not None else 0,
        metrics=dict(output.metrics),
        eval={},
        history=list(state.log_history),
        resumed_from=checkpoint,
    )

    if stopper is not None and stopper.stopped_at is not None:
        result.status = "cancelled"
        result.checkpoint = find_checkpoint(out)
        return result

    if test_ds is not None and len(test_ds):
        prediction = trainer.predict(test_ds, metric_key_prefix="test")
        if trainer.is_world_process_zero():
            scores, signs = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
            evaluation, images, eval_path = write_evaluation(config.kind, scores, signs, out / "eval")
            result.eval, result.images, result.eval_path = evaluation, images, eval_path
            reporter.emit(
                state, "eval", final=True, **{f"test_{k}": v for k, v in evaluation["metrics"].items()}
            )

    artifact = out / "model"
    trainer.save_model(str(artifact))
    if trainer.is_world_process_zero():
        (artifact / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    result.artifact_path = str(artifact)
    return result


def _check_resume(out: Path, config: TrainerConfig, checkpoint: str | None) -> None:
    """Refuse to resume a checkpoint that another recipe wrote: its optimiser state would not fit."""
    saved = out / CONFIG_FILE
    if checkpoint is None or not saved.is_file():
        return
    try:
        previous = config_from_dict(json.loads(saved.read_text(encoding="utf-8")))
    except (ValueError, json.JSONDecodeError):
        return
    if previous.hash() != config.hash():
        changed = sorted(k for k, v in config.to_dict().items() if previous.to_dict().get(k) != v)
        raise ValueError(
            f"{out} holds checkpoints of a different config (changed: {', '.join(changed)}); "
            "use a new output_dir or resume=False"
        )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.trainers.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", required=True, help="TrainerConfig as a JSON file")
    parser.add_argument(
        "--train",
        action="append",
        required=True,
        help="pku-saferlhf (reward, cost) or beavertails (moderation) file or folder (repeat)",
    )
    parser.add_argument("--test", action="append", default=[], help="test split file or folder (repeat)")
    parser.add_argument(
        "--eval-prompts", action="append", default=[], help="a policy's evaluation prompts file (repeat)"
    )
    parser.add_argument("--output-dir", help="overrides the config's output_dir")
    parser.add_argument("--progress-file", help="append progress records here as JSON lines")
    parser.add_argument("--cancel-file", help="stop (checkpoint saved) once this file exists")
    parser.add_argument("--result-file", help="write the TrainResult here as JSON")
    parser.add_argument("--no-resume", action="store_true", help="start over even if checkpoints exist")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ns = _parse_args(argv)
    progress_file = ns.progress_file

    def fail(event: str, message: str, code: int) -> int:
        log.error("%s", message)
        record = {"event": event, "message": message, "time": round(time.time(), 3)}
        if progress_file and _is_main_process():
            with open(progress_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        return code

    try:
        config = config_from_json_file(ns.config)
        if ns.output_dir:
            config = config.replace(output_dir=ns.output_dir)
    except (OSError, ValueError) as exc:
        return fail("error", str(exc), EXIT_INVALID)

    # Progress goes to the progress file; bars would only flood the log tail the job page shows.
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()

    # SIGTERM (a worker shutting down) stops at the next step with a checkpoint, like a cancel.
    terminated = {"flag": False}

    def on_sigterm(signum: int, frame: Any) -> None:
        terminated["flag"] = True

    signal.signal(signal.SIGTERM, on_sigterm)
    probes: list[Callable[[], bool]] = [lambda: terminated["flag"]]
    if ns.cancel_file:
        probes.append(cancel_file_probe(ns.cancel_file))

    try:
        result = train(
            config,
            train_files=ns.train,
            test_files=ns.test,
            eval_prompt_files=ns.eval_prompts,
            progress_file=progress_file,
            should_stop=lambda: any(probe() for probe in probes),
            resume=not ns.no_resume,
        )
    except ValueError as exc:
        return fail("error", str(exc), EXIT_INVALID)
    except Exception as exc:
        log.exception("training failed")
        return fail("error", f"{type(exc).__name__}: {exc}", EXIT_ERROR)

    payload = result.to_dict()
    code = EXIT_OK
    if result.status == "cancelled":
        code = EXIT_CANCELLED
        if terminated["flag"] and not (ns.cancel_file and os.path.exists(ns.cancel_file)):
            payload["status"], code = "interrupted", EXIT_INTERRUPTED
    if _is_main_process():
        if ns.result_file:
            Path(ns.result_file).write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
        summary = {k: payload[k] for k in ("status", "global_step", "artifact_path", "checkpoint")}
        summary["eval"] = payload["eval"].get("metrics", {})
        print(json.dumps(summary, default=str), flush=True)
    _leave_process_group()
    return code


def _leave_process_group() -> None:
    """Under several processes, leave the process group together before exiting: a rank that exits
    with gloo's threads still running can die in teardown (SIGABRT, "terminate called without an
    active exception") after a run that succeeded, and the launcher then reports the whole run failed."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
