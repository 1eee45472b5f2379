"""The trainers under `accelerate launch --num_processes 2 --cpu` (two processes, gloo): the reward and
moderation CLIs run to the end, write one result and one model, and evaluate like one process does.

Two processes see the same global batch (8 per process against 16 in one), but a different order of the
data, so the figures agree within a tolerance, not exactly: the tolerance is stated with each test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.training.helpers import (
    MODERATION_WORDS,
    build_tiny_bert,
    moderation_rows,
    synthetic_rows,
    write_jsonl,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_cli(
    config: dict[str, Any], folder: Path, *, train: Path, test: Path, processes: int
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config | {"output_dir": str(folder / "out")}))
    result = folder / "result.json"
    cli = [
        "-m",
        "training.trainers.run",
        "--config",
        str(config_path),
        "--train",
        str(train),
        "--test",
        str(test),
    ]
    cli += ["--result-file", str(result), "--progress-file", str(folder / "progress.jsonl")]
    if processes == 1:
        argv = [sys.executable, *cli]
    else:
        launcher = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--cpu",
            "--num_processes",
            str(processes),
        ]
        argv = [*launcher, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *cli]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    payload = json.loads(result.read_text())
    assert payload["status"] == "succeeded"
    # One process (rank 0) writes the progress records and the model's metadata.
    records = [json.loads(line) for line in (folder / "progress.jsonl").read_text().splitlines()]
    assert sum(1 for r in records if r["event"] == "train_begin") == 1
    return payload


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("multiprocess")
    return {
        "root": root,
        "bert": build_tiny_bert(root / "bert", hidden_size=64, extra_words=MODERATION_WORDS),
        "mod_train": write_jsonl(moderation_rows(1000, seed=11), root / "mod_train.jsonl"),
        "mod_test": write_jsonl(moderation_rows(200, seed=12), root / "mod_test.jsonl"),
        "pairs_train": write_jsonl(synthetic_rows(384, seed=1), root / "pairs_train.jsonl"),
        "pairs_test": write_jsonl(synthetic_rows(96, seed=2), root / "pairs_test.jsonl"),
    }


def test_the_moderation_trainer_on_two_processes_evaluates_like_one(data):
    config = {
        "kind": "moderation", "base_model": str(data["bert"]), "max_length": 64, "epochs": 30,
        "learning_rate": 2e-3, "warmup_ratio": 0.0, "weight_decay": 0.0, "logging_steps": 50,
        "save_steps": 100000,
    }  # fmt: skip
    one = run_cli(config | {"per_device_batch_size": 16}, data["root"] / "mod-1", train=data["mod_train"],
                  test=data["mod_test"], processes=1)  # fmt: skip
    two = run_cli(config | {"per_device_batch_size": 8}, data["root"] / "mod-2", train=data["mod_train"],
                  test=data["mod_test"], processes=2)  # fmt: skip
    a, b = one["eval"]["moderation"], two["eval"]["moderation"]
    # Every test pair evaluated once on two processes too (no duplicates from padding the shards).
    assert a["examples"] == b["examples"] == 200
    assert a["flagged"]["support"] == b["flagged"]["support"]
    # Tolerance: flagged F1 within 0.05 and macro F1 within 0.15 of the one-process run.
    assert abs(a["flagged"]["f1"] - b["flagged"]["f1"]) <= 0.05, (a["flagged"], b["flagged"])
    assert abs(a["macro_f1"] - b["macro_f1"]) <= 0.15, (a["macro_f1"], b["macro_f1"])
    assert b["flagged"]["f1"] > 0.9
    assert Path(two["artifact_path"], "moderation.json").is_file()


def test_the_reward_trainer_on_two_processes_evaluates_like_one(data):
    config = {
        "kind": "reward", "base_model": str(data["bert"]), "max_length": 64, "epochs": 3,
        "learning_rate": 4e-3, "warmup_ratio": 0.0, "weight_decay": 0.0, "logging_steps": 6,
        "save_steps": 1000,
    }  # fmt: skip
    one = run_cli(config | {"per_device_batch_size": 16}, data["root"] / "rw-1", train=data["pairs_train"],
                  test=data["pairs_test"], processes=1)  # fmt: skip
    two = run_cli(config | {"per_device_batch_size": 8}, data["root"] / "rw-2", train=data["pairs_train"],
                  test=data["pairs_test"], processes=2)  # fmt: skip
    a, b = one["eval"]["metrics"], two["eval"]["metrics"]
    assert a["pairs"] == b["pairs"] == 96
    # Tolerance: test pairwise accuracy within 0.1 of the one-process run.
    assert abs(a["accuracy"] - b["accuracy"]) <= 0.1, (a, b)
    assert b["accuracy"] > 0.8
