"""Tiny worlds for the policy trainer's tests: a word tokenizer, a 2-layer Llama actor, and reward and
cost models (one-score Llama classifiers with a trainer_config.json, as our reward and cost jobs save
them), all built on the spot in a temporary folder, plus prompts files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.trainers.config import PolicyConfig
from training.trainers.tiny import save_causal_lm, word_tokenizer

WORDS = [
    "BEGINNING",
    "OF",
    "CONVERSATION:",
    "USER:",
    "ASSISTANT:",
    *[f"q{i}" for i in range(8)],
    "good",
    "fine",
    "bad",
    "worse",
    "meh",
    "ok",
]
SCORE_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT: {response}"


def save_score_model(folder: Path, tokenizer: Any, *, kind: str, seed: int) -> Path:
    import torch
    from transformers import LlamaForSequenceClassification

    from training.trainers.tiny import llama_config

    torch.manual_seed(seed)
    config = llama_config(tokenizer, hidden=32, layers=1, heads=2)
    config.num_labels = 1
    model = LlamaForSequenceClassification(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "trainer_config.json").write_text(
        json.dumps({"kind": kind, "template": SCORE_TEMPLATE, "max_length": 64}), encoding="utf-8"
    )
    return folder


def tiny_world(root: Path) -> dict[str, Path]:
    """Actor, reward and cost models, and train/test prompts files under `root` (built once per root)."""
    paths = {
        "actor": root / "actor",
        "reward": root / "reward",
        "cost": root / "cost",
        "train": root / "train.jsonl",
        "test": root / "test.jsonl",
    }
    if (paths["actor"] / "config.json").is_file():
        return paths
    tokenizer = word_tokenizer(WORDS)
    save_causal_lm(paths["actor"], tokenizer, seed=1, hidden=32, layers=2, heads=2)
    save_score_model(paths["reward"], tokenizer, kind="reward", seed=2)
    save_score_model(paths["cost"], tokenizer, kind="cost", seed=3)
    rows = [
        {"prompt": f"q{i} q{(i + 1) % 8}", "category": "animal_abuse" if i % 2 else "self_harm"}
        for i in range(8)
    ]
    paths["train"].write_text("".join(json.dumps(r) + "\n" for r in rows[:6]), encoding="utf-8")
    paths["test"].write_text("".join(json.dumps(r) + "\n" for r in rows[6:]), encoding="utf-8")
    return paths


def tiny_config(world: dict[str, Path], out: Path, **changes: Any) -> PolicyConfig:
    defaults: dict[str, Any] = {
        "kind": "ppo_lag",
        "base_model": str(world["actor"]),
        "reward_model": str(world["reward"]),
        "cost_model": str(world["cost"]),
        "output_dir": str(out),
        "max_steps": 3,
        "rollout_batch_size": 4,
        "per_device_batch_size": 2,
        "max_new_tokens": 6,
        "max_length": 32,
        "learning_rate": 1e-3,
        "critic_learning_rate": 1e-3,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "eval_max_prompts": 4,
        "eval_samples": 2,
        "save_steps": 100,
        "prompt_template": "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:",
    }
    return PolicyConfig.from_dict({**defaults, **changes})
