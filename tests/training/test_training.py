"""Tiny models really learn the synthetic truth; cancel, resume, artifacts, the CLI.

The synthetic set (tests/training/helpers.py): helpfulness = how often a response says "certainly",
harm = how often it says "weapon"; unsafe iff harm >= 1. A chance-level model scores 0.5 pairwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.training.helpers import HARM_WORD, HELP_WORD
from training.trainers import Scorer, TrainerConfig, train
from training.trainers.run import find_checkpoint, launch_command

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def config(base: Path, out: Path, **changes) -> TrainerConfig:
    defaults = {
        "kind": "reward",
        "base_model": str(base),
        "output_dir": str(out),
        "max_length": 64,
        "epochs": 3,
        "per_device_batch_size": 16,
        "learning_rate": 4e-3,
        "weight_decay": 0.0,
        "warmup_ratio": 0.0,
        "logging_steps": 6,
        "save_steps": 1000,
    }
    return TrainerConfig.from_dict(defaults | changes)


def losses(history):
    return [r["loss"] for r in history if "loss" in r]


def test_reward_model_learns_helpfulness(tmp_path, tiny_bert, synthetic_files):
    records = []
    progress_file = tmp_path / "progress.jsonl"
    cfg = config(tiny_bert, tmp_path / "job", eval_steps=36)
    result = train(
        cfg,
        train_files=[synthetic_files["train"]],
        test_files=[synthetic_files["test"]],
        progress=records.append,
        progress_file=progress_file,
    )
    assert result.status == "succeeded"
    assert result.global_step == result.max_steps == 72  # 384 pairs / 16 per step * 3 epochs
    curve = losses(result.history)
    assert curve[0] > 0.65  # about log 2 at the start
    assert curve[-1] < 0.5 * curve[0]
    assert result.eval["metrics"]["accuracy"] >= 0.9
    assert result.eval["metrics"]["pairs"] == 96

    # Progress: the callable and the JSON-lines file see the same records.
    lines = [json.loads(line) for line in progress_file.read_text().splitlines()]
    assert lines == records
    events = [r["event"] for r in lines]
    assert events[0] == "train_begin" and "train_end" in events
    logs = [r for r in lines if r["event"] == "log"]
    assert {"step", "max_steps", "epoch", "loss", "learning_rate", "accuracy", "progress"} <= set(logs[0])
    assert logs[-1]["step"] == 72 and logs[-1]["progress"] == 1.0
    # eval_steps: the test split is also scored during training, for the job page's accuracy chart.
    during = [r for r in lines if r["event"] == "eval" and not r.get("final")]
    assert [r["step"] for r in during] == [36, 72]
    assert {"eval_loss", "eval_accuracy", "eval_mean_margin"} <= set(during[0])
    final = [r for r in lines if r["event"] == "eval" and r.get("final")]
    assert final and final[0]["test_accuracy"] == result.eval["metrics"]["accuracy"]

    # Evaluation artifacts: eval JSON with histogram data, a real PNG.
    assert result.eval_path and json.loads(Path(result.eval_path).read_text())["histogram"]["safe_n"] > 0
    assert len(result.images) == 1
    assert Path(result.images[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The artifact is a standard checkpoint: from_pretrained loads it and it ranks as trained.
    assert result.artifact_path is not None
    model = AutoModelForSequenceClassification.from_pretrained(result.artifact_path)
    tokenizer = AutoTokenizer.from_pretrained(result.artifact_path)
    assert model.config.num_labels == 1
    texts = [
        cfg.format_text("question", f"you can {HELP_WORD} do it {HELP_WORD} here"),
        cfg.format_text("question", "you can do it here"),
    ]
    with torch.no_grad():
        scores = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.squeeze(-1)
    assert scores[0] > scores[1]
    scorer = Scorer(result.artifact_path, device="cpu")
    assert scorer.kind == "reward" and scorer.template == cfg.template
    assert scorer.score(
        ["question"] * 2, [texts[0].split("ASSISTANT:")[1], "you can do it here"]
    ) == pytest.approx(scores.tolist(), abs=1e-5)


def test_cost_model_learns_harm_and_its_sign(tmp_path, tiny_bert, synthetic_files):
    cfg = config(tiny_bert, tmp_path / "job", kind="cost", epochs=4, learning_rate=6e-3, warmup_ratio=0.1)
    result = train(cfg, train_files=[synthetic_files["train"]], test_files=[synthetic_files["test"]])
    assert result.status == "succeeded"
    curve = losses(result.history)
    assert curve[-1] < 0.6 * curve[0]
    metrics = result.eval["metrics"]
    # Pairs of two unsafe responses (harm 1 vs 2) are the hard third: 0.80-0.93 over init seeds.
    assert metrics["accuracy"] >= 0.75
    assert metrics["sign_accuracy"] >= 0.95
    assert metrics["unsafe_recall"] >= 0.9 and metrics["safe_recall"] >= 0.9
    hist = result.eval["histogram"]
    assert hist["unsafe_mean"] > 0 > hist["safe_mean"]
    # cost > 0 means unsafe, for new text scored by the saved model.
    scorer = Scorer(result.artifact_path, device="cpu")
    safe, unsafe = scorer.score(["q", "q"], ["the people will go there", f"the {HARM_WORD} will go there"])
    assert unsafe > 0 > safe


def test_decoder_scores_at_the_last_real_token_and_learns(tmp_path, tiny_gpt2, synthetic_files):
    # GPT-2 has no pad token: the trainer sets one, and config.pad_token_id with it.
    cfg = config(tiny_gpt2, tmp_path / "job", epochs=4, learning_rate=3e-3)
    result = train(cfg, train_files=[synthetic_files["train"]], test_files=[synthetic_files["test"]])
    curve = losses(result.history)
    assert curve[-1] < 0.7 * curve[0]
    # A 32-wide causal model overfits 384 pairs more than the encoder does (0.71-0.82 over init seeds):
    # the bar here is "clearly learned", the encoder tests hold the high bar.
    assert result.eval["metrics"]["accuracy"] >= 0.65
    model = AutoModelForSequenceClassification.from_pretrained(result.artifact_path).eval()
    tokenizer = AutoTokenizer.from_pretrained(result.artifact_path)
    assert tokenizer.pad_token is not None
    assert model.config.pad_token_id == tokenizer.pad_token_id
    # Padding must not change a score: the head reads the last non-padding position.
    short = cfg.format_text("q", f"{HELP_WORD} yes")
    long = cfg.format_text("q", "a much longer answer with many more words in it than the other")
    with torch.no_grad():
        alone = model(**tokenizer([short], return_tensors="pt")).logits.squeeze()
        batch = model(**tokenizer([short, long], padding=True, return_tensors="pt")).logits.squeeze(-1)
    assert batch[0].item() == pytest.approx(alone.item(), abs=1e-4)


def test_cancel_saves_a_checkpoint_and_resume_continues(tmp_path, tiny_bert, synthetic_files):
    out = tmp_path / "job"
    cfg = config(tiny_bert, out, max_steps=8, logging_steps=1, eval_split=0.2)
    asked = {"n": 0}

    def should_stop() -> bool:
        asked["n"] += 1
        return asked["n"] >= 3  # asked after every step: stop after step 3

    first = train(cfg, train_files=[synthetic_files["small"]], should_stop=should_stop)
    assert first.status == "cancelled"
    assert first.global_step == 3
    assert first.artifact_path is None and first.eval == {}
    assert first.checkpoint == str(out / "checkpoint-3")
    assert (out / "checkpoint-3" / "trainer_state.json").is_file()
    assert find_checkpoint(out) == first.checkpoint

    records = []
    second = train(cfg, train_files=[synthetic_files["small"]], progress=records.append)
    assert second.status == "succeeded"
    assert second.resumed_from == first.checkpoint
    assert second.global_step == 8
    # No test files: a fifth of the prompts were held out, and the final evaluation used them.
    assert second.test_pairs > 0 and second.train_pairs + second.test_pairs == 64
    assert second.eval["metrics"]["pairs"] == second.test_pairs
    begin = records[0]
    assert begin["event"] == "train_begin" and begin["resumed_from"] == first.checkpoint
    steps = [r["step"] for r in records if r["event"] == "log"]
    assert steps[0] == 4 and steps[-1] == 8  # continues at 4, not from 0
    assert (out / "model" / "config.json").is_file()

    # A different recipe must not resume these checkpoints.
    with pytest.raises(ValueError, match=r"different config \(changed: learning_rate\)"):
        train(cfg.replace(learning_rate=1e-3), train_files=[synthetic_files["small"]])
    # No full checkpoint after the last step (the model is saved instead), and an incomplete
    # checkpoint (a trainer killed while saving) is skipped.
    assert not (out / "checkpoint-8").exists()
    (out / "checkpoint-99").mkdir()
    assert find_checkpoint(out) == first.checkpoint


def test_cli_cancel_then_resume(tmp_path, tiny_bert, synthetic_files):
    out = tmp_path / "job"
    cfg = config(tiny_bert, out, max_steps=4, logging_steps=1, eval_split=0.0)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg.to_dict()))
    cancel = tmp_path / "CANCEL"
    cancel.touch()  # cancelled before the first step ends: stops after step 1
    progress, result_file = tmp_path / "progress.jsonl", tmp_path / "result.json"
    argv = launch_command(
        cfg,
        config_path=str(cfg_path),
        train_files=[str(synthetic_files["small"])],
        progress_file=str(progress),
        cancel_file=str(cancel),
        result_file=str(result_file),
    )
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 3, done.stderr[-3000:]
    payload = json.loads(result_file.read_text())
    assert payload["status"] == "cancelled" and payload["global_step"] == 1
    assert "stop_requested" in [json.loads(x)["event"] for x in progress.read_text().splitlines()]

    cancel.unlink()
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads(result_file.read_text())
    assert payload["status"] == "succeeded" and payload["global_step"] == 4
    assert payload["resumed_from"] == str(out / "checkpoint-1")
    assert json.loads(done.stdout.strip().splitlines()[-1])["artifact_path"] == str(out / "model")


def test_cli_reports_an_invalid_config(tmp_path):
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps({"kind": "policy", "base_model": "/m"}))
    progress = tmp_path / "progress.jsonl"
    argv = [sys.executable, "-m", "training.trainers.run", "--config", str(cfg_path), "--train", "x.jsonl"]
    done = subprocess.run(
        [*argv, "--progress-file", str(progress)], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    record = json.loads(progress.read_text().splitlines()[-1])
    assert record["event"] == "error" and "kind: must be one of reward, cost" in record["message"]


def test_launch_command_uses_accelerate_for_several_gpus():
    one = TrainerConfig(kind="reward", base_model="/m", output_dir="/o")
    argv = launch_command(one, config_path="c.json", train_files=["t.jsonl"], python="py")
    assert argv[:3] == ["py", "-m", "training.trainers.run"]
    four = one.replace(num_gpus=4, deepspeed="/cfg/zero2.json")
    argv = launch_command(
        four, config_path="c.json", train_files=["t.jsonl"], test_files=["v.jsonl"], python="py"
    )
    assert argv[:6] == ["py", "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4"]
    assert argv[argv.index("-m", 2) + 1] == "training.trainers.run"
    assert argv[-6:] == ["--config", "c.json", "--train", "t.jsonl", "--test", "v.jsonl"]
