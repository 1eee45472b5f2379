"""What a job supervisor needs without importing torch: the trainer's argv, exit codes, checkpoints."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from training.trainers.config import TrainerConfig

# The CLI's exit codes (python -m training.trainers.run).
EXIT_OK = 0
EXIT_ERROR = 1  # anything unexpected; the last progress record is {"event": "error", "message": ...}
EXIT_INVALID = 2  # invalid config or data (ValueError): retrying will not help
EXIT_CANCELLED = 3  # the cancel file appeared: checkpoint saved, stopped
EXIT_INTERRUPTED = 4  # SIGTERM: checkpoint saved, stopped; the same command resumes

_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


def find_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """The newest complete checkpoint (its trainer_state.json, written last, exists), or None.

    A trainer killed while saving leaves a checkpoint without that file: it is skipped, not resumed.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir() and (child / "trainer_state.json").is_file():
            found.append((int(match.group(1)), child))
    return str(max(found)[1]) if found else None


def cancel_file_probe(path: str | os.PathLike[str]) -> Callable[[], bool]:
    """A should_stop() that says yes once `path` exists: the job system creates it to cancel."""
    path = os.fspath(path)
    return lambda: os.path.exists(path)


def launch_command(
    config: TrainerConfig,
    *,
    config_path: str,
    train_files: Sequence[str],
    test_files: Sequence[str] = (),
    progress_file: str | None = None,
    cancel_file: str | None = None,
    result_file: str | None = None,
    eval_prompt_files: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The argv that runs this training as a subprocess: plain Python, or `accelerate launch` for several GPUs."""
    if config.num_gpus > 1:
        # One torch.distributed process per GPU; DeepSpeed or FSDP, when configured, is set up inside
        # each process by the Trainer from TrainingArguments, so the launcher needs no config file.
        argv = [
            python,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(config.num_gpus),
        ]
        argv += ["--num_machines", "1", "-m", "training.trainers.run"]
    else:
        argv = [python, "-m", "training.trainers.run"]
    argv += ["--config", config_path]
    for path in train_files:
        argv += ["--train", path]
    for path in test_files:
        argv += ["--test", path]
    for path in eval_prompt_files:
        argv += ["--eval-prompts", path]
    if progress_file:
        argv += ["--progress-file", progress_file]
    if cancel_file:
        argv += ["--cancel-file", cancel_file]
    if result_file:
        argv += ["--result-file", result_file]
    return argv
