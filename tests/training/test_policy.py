"""The policy trainer (training/trainers/policy.py) on a tiny world: a 2-layer Llama actor, tiny reward
and cost models, a handful of prompts. Checks that a step trains, that each algorithm runs on what it
needs, that a stopped and resumed run continues the same trajectory, and the evaluation it saves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.training.policy_helpers import tiny_config, tiny_world
from training.trainers.config import PolicyConfig
from training.trainers.launch import find_checkpoint
from training.trainers.policy import read_prompts
from training.trainers.run import train


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return tiny_world(tmp_path_factory.mktemp("policy-world"))


def run(world, out, *, should_stop=None, **changes):
    records = []
    result = train(
        tiny_config(world, out, **changes),
        train_files=[world["train"]],
        test_files=[world["test"]],
        progress=records.append,
        should_stop=should_stop,
    )
    return result, records


def weights(folder):
    return load_file(str(Path(folder) / "model.safetensors"))


def test_a_ppo_lag_run_trains_the_actor_and_reports_each_step(world, tmp_path):
    result, records = run(world, tmp_path / "job")
    assert result.status == "succeeded" and result.global_step == 3
    before, after = weights(world["actor"]), weights(result.artifact_path)
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed, "the actor's weights did not move"
    logs = [r for r in records if r["event"] == "log"]
    assert [r["step"] for r in logs] == [1, 2, 3]
    for key in (
        "reward",
        "cost",
        "unsafe_share",
        "lambda",
        "kl",
        "entropy",
        "policy_loss",
        "reward_critic_loss",
        "cost_critic_loss",
        "clip_fraction",
        "response_length",
        "tokens_per_s",
        "generation_share",
    ):
        assert isinstance(logs[-1][key], float), key
    assert 0 <= logs[-1]["generation_share"] <= 1 and logs[-1]["progress"] == 1.0
    # lambda followed the window's mean cost: below the threshold 0 it fell, above it rose.
    first = logs[0]
    assert (first["lambda"] < 1.0) == (first["episode_cost"] < 0.0)
    provenance = json.loads((Path(result.artifact_path) / "policy.json").read_text())
    assert provenance["algorithm"] == "ppo_lag" and provenance["reward_model"] == str(world["reward"])
    assert (Path(result.artifact_path) / "tokenizer.json").is_file()


def test_the_evaluation_compares_the_initial_and_the_trained_actor(world, tmp_path):
    result, records = run(world, tmp_path / "job")
    policy = result.eval["policy"]
    assert policy["before"]["prompts"] == policy["after"]["prompts"] == 2
    assert set(policy["after"]["per_category"]) == {"animal_abuse", "self_harm"}
    assert 0 <= policy["after"]["unsafe_share"] <= 1
    assert {"reward_before", "reward_after", "cost_before", "cost_after"} <= set(result.eval["metrics"])
    sample = policy["samples"][0]
    assert sample["prompt"] in {"q6 q7", "q7 q0"} and isinstance(sample["after"], str)
    saved = json.loads(Path(result.eval_path).read_text())
    assert saved["policy"]["before"] == policy["before"]
    assert any(r["event"] == "evaluating" and r["which"] == "before" for r in records)


def test_ppo_needs_no_cost_model_and_learns_no_lambda(world, tmp_path):
    result, records = run(world, tmp_path / "job", algorithm="ppo", cost_model="", max_steps=2)
    assert result.status == "succeeded"
    log = [r for r in records if r["event"] == "log"][-1]
    assert "lambda" not in log and "cost" not in log and "cost_critic_loss" not in log
    assert result.eval["policy"]["final_lambda"] is None
    with pytest.raises(ValueError, match="cost_model: ppo_rs needs a trained cost model"):
        tiny_config(world, tmp_path, algorithm="ppo_rs", cost_model="")


def test_reward_shaping_reports_cost_and_keeps_lambda_out(world, tmp_path):
    result, records = run(world, tmp_path / "job", algorithm="ppo_rs", shaping_beta=2.0, max_steps=2)
    log = [r for r in records if r["event"] == "log"][-1]
    assert "cost" in log and "lambda" not in log
    assert result.eval["policy"]["shaping_beta"] == 2.0


def test_a_stopped_run_resumes_on_the_same_trajectory(world, tmp_path):
    straight, _ = run(world, tmp_path / "straight", max_steps=4, save_steps=2)
    asked = {"n": 0}

    def stop_after_two():
        asked["n"] += 1
        return asked["n"] == 2

    stopped, _ = run(world, tmp_path / "resumed", max_steps=4, save_steps=2, should_stop=stop_after_two)
    assert stopped.status == "cancelled" and stopped.global_step == 2
    checkpoint = find_checkpoint(tmp_path / "resumed")
    assert checkpoint and checkpoint.endswith("checkpoint-2")
    saved = json.loads((Path(checkpoint) / "policy_state.json").read_text())
    assert len(saved["lagrange"]["window"]) == 8  # 2 steps x 4 episodes
    resumed, records = run(world, tmp_path / "resumed", max_steps=4, save_steps=2)
    assert records[0]["event"] == "train_begin" and records[0]["resumed_from"] == checkpoint
    assert resumed.status == "succeeded" and resumed.global_step == 4
    assert [h["lambda"] for h in resumed.history] == pytest.approx([h["lambda"] for h in straight.history])
    assert [h["reward"] for h in resumed.history] == pytest.approx([h["reward"] for h in straight.history])
    a, b = weights(straight.artifact_path), weights(resumed.artifact_path)
    assert all(torch.allclose(a[name], b[name], atol=1e-6) for name in a)
    # The evaluation of the initial actor is the one from before the stop, not a second one.
    assert resumed.eval["policy"]["before"] == straight.eval["policy"]["before"]


def test_a_different_recipe_will_not_resume_anothers_checkpoint(world, tmp_path):
    stopped, _ = run(world, tmp_path / "job", max_steps=3, should_stop=lambda: True)
    assert stopped.status == "cancelled"
    with pytest.raises(ValueError, match="different config"):
        run(world, tmp_path / "job", max_steps=3, kl_coeff=0.5)


def test_prompts_are_read_once_each_with_their_category(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [{"prompt": "a", "category": "self_harm"}, {"prompt": "b"}, {"prompt": "a", "category": "x"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = read_prompts([path])
    assert [(p.text, p.category) for p in prompts] == [("a", "self_harm"), ("b", None)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "a"}) + "\n")
    with pytest.raises(ValueError, match="no prompt column"):
        read_prompts([bad])


def test_the_config_explains_what_is_wrong(tmp_path):
    with pytest.raises(ValueError) as caught:
        PolicyConfig.from_dict(
            {
                "kind": "ppo_lag",
                "base_model": "/m",
                "reward_model": "",
                "cost_model": "/c",
                "algorithm": "trpo",
                "rollout_batch_size": 6,
                "per_device_batch_size": 4,
                "lambda_init": 9.0,
                "prompt_template": "{x}",
                "deepspeed": "/m/zero3.json",
                "policy_model": "/other",
            }
        )
    message = str(caught.value)
    for part in (
        "algorithm: must be one of ppo_lag, ppo, ppo_rs",
        "reward_model: a trained reward model is required",
        "rollout_batch_size: must be a multiple",
        "lambda_init: must not exceed lambda_max",
        "prompt_template: must contain {prompt}",
        # The Trainer's sharding fields would be ignored by the policy trainer: refused, not dropped.
        "deepspeed, fsdp: a policy shards through an accelerate launch config",
        "policy_model: names the actor, as base_model does",
    ):
        assert part in message


def test_critics_from_an_encoder_score_model_are_refused(world, tmp_path):
    from training.services import default_base_model

    encoder = default_base_model()
    if not encoder:
        pytest.skip("the bundled MiniLM encoder is not installed")
    with pytest.raises(ValueError, match="encoder, which sees the whole response"):
        run(world, tmp_path / "job", critic_init="score_models", reward_model=encoder)


def test_answers_are_sampled_from_the_whole_policy_not_its_top_50(world, tmp_path):
    """transformers' generate keeps only the 50 likeliest tokens unless told otherwise; the PPO ratios and
    the KL estimate assume samples from the policy itself. A near-uniform actor over 200 words must
    start its answers with more than 50 different words."""
    from tests.training.policy_helpers import WORDS
    from training.trainers.policy import PolicyTrainer, ProgressWriter, read_prompts
    from training.trainers.tiny import save_causal_lm, word_tokenizer

    vocabulary = [*WORDS, *(f"w{i}" for i in range(200))]
    actor = save_causal_lm(
        tmp_path / "wide", word_tokenizer(vocabulary), seed=0, hidden=16, layers=1, heads=1
    )
    config = tiny_config(
        world, tmp_path / "out", base_model=str(actor), max_new_tokens=1, rollout_batch_size=8
    )
    trainer = PolicyTrainer(
        config,
        read_prompts([world["train"]]),
        progress=ProgressWriter(progress=None, progress_file=None, is_main=True),
    )
    torch.manual_seed(0)
    # One prompt, so one next-token distribution: its top 50 would allow at most 50 first words.
    prompts = read_prompts([world["train"]])[:1] * 400
    sequences, _, start = trainer.generate(prompts)
    first_words = set(sequences[:, start].tolist())
    assert len(first_words) > 50, len(first_words)
