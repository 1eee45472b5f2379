"""The trainers on two CPU processes (accelerate's MULTI_CPU on gloo, started by `accelerate launch
--multi_gpu --num_processes 2` with ACCELERATE_USE_CPU=true): the reward, moderation and policy CLIs run
to the end, write one result and one model, and evaluate like one process does. Each test checks that two
processes really shared the work (the same number of global steps at half the per-process batch, or every
process's episodes in one window), not one process running alone.

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
        # `accelerate launch --cpu` starts one process whatever --num_processes says (several need MPI);
        # --multi_gpu starts them through torch.distributed.run, and ACCELERATE_USE_CPU (below) makes each
        # an accelerate MULTI_CPU rank on gloo.
        launcher = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(processes),
        ]
        argv = [*launcher, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *cli]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    if processes > 1:
        env |= {"ACCELERATE_USE_CPU": "true"}
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
    # Half the batch on each of two processes: the same optimiser steps as one process with the whole batch.
    assert one["global_step"] == two["global_step"]
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
    assert one["global_step"] == two["global_step"]
    a, b = one["eval"]["metrics"], two["eval"]["metrics"]
    assert a["pairs"] == b["pairs"] == 96
    # Tolerance: test pairwise accuracy within 0.1 of the one-process run.
    assert abs(a["accuracy"] - b["accuracy"]) <= 0.1, (a, b)
    assert b["accuracy"] > 0.8


def test_a_ppo_lag_step_on_two_processes(tmp_path):
    """Two processes share each iteration's global batch (2 prompts each against 4 in one), pool their
    episode costs into one window, move lambda alike, and evaluate each held-out prompt once."""
    from tests.training.policy_helpers import tiny_config, tiny_world

    world = tiny_world(tmp_path / "world")
    config = tiny_config(world, tmp_path / "unused", max_steps=3, save_steps=2).to_dict()
    del config["output_dir"]
    two = run_cli(config | {"rollout_batch_size": 2, "per_device_batch_size": 1}, tmp_path / "ppo-2",
                  train=world["train"], test=world["test"], processes=2)  # fmt: skip
    assert two["global_step"] == 3
    history = two["history"]
    assert len(history) == 3 and all(h["lambda"] > 0 for h in history)
    checkpoint = tmp_path / "ppo-2" / "out" / "checkpoint-2"
    state = json.loads((checkpoint / "policy_state.json").read_text())
    # Every process's episodes, 2 x 2 per iteration, in the one window.
    assert len(state["lagrange"]["window"]) == 8
    assert {p.name for p in checkpoint.glob("random_states_*.pkl")} == {
        "random_states_0.pkl",
        "random_states_1.pkl",
    }
    policy = two["eval"]["policy"]
    assert policy["before"]["prompts"] == policy["after"]["prompts"] == 2
    assert Path(two["artifact_path"], "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("name", "kind"), [("accelerate_zero3.yaml", "DEEPSPEED"), ("accelerate_fsdp.yaml", "FSDP")]
)
def test_the_shipped_large_policy_configs_are_valid_accelerate_configs(name, kind):
    """The ZeRO-3 and FSDP launch configs docs/ppo-lag.md points to load as accelerate reads them (they are
    not run here: no GPU), with bf16 and eight processes as documented."""
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(REPO / "training" / "configs" / name))
    assert config.distributed_type.value == kind
    assert (config.num_processes, config.mixed_precision, config.use_cpu) == (8, "bf16", False)
