"""PPO-Lagrangian (Safe RLHF) and its baselines: a policy trained against frozen reward and cost models.

Built on torch, transformers (the models, generation) and accelerate (devices, several processes, mixed
precision, gradient accumulation, checkpoint state). The arithmetic is training/trainers/ppo_core.py.

One iteration (`PolicyTrainer.step`):
1. rollout: each process takes its share of `rollout_batch_size` prompts, the actor samples a response
   to each (temperature, top-p, max_new_tokens); the reward and cost models score the decoded
   (prompt, response) in their own templates and tokenizers; the actor, the frozen reference and the
   critics give old log-probabilities and values per response token;
2. the multiplier: every process's episode costs join the moving window, and lambda takes one SGD step
   on -(mean cost - threshold) * lambda (ppo_lag only);
3. returns: per-token rewards (and costs) with the KL penalty, GAE for each critic;
4. PPO: `ppo_epochs` passes of mini-batches: the clipped policy loss on the advantage (ppo: A_r; ppo_rs:
   A of the shaped reward r - beta * c; ppo_lag: (A_r - lambda A_c) / (1 + lambda)), and clipped value
   losses for the critics.

The run evaluates the initial actor and the trained one on held-out prompts (reward, cost, unsafe share
by the cost model's sign, per category, and an active moderation model's flagged rate), keeps sample
responses, and saves the actor as a standard checkpoint with its provenance. Checkpoints hold the
actor, critics, optimisers, schedulers, RNG states, lambda, the cost window and the prompt order, so a
resumed run continues the same trajectory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from training.trainers.config import CONFIG_FILE, PolicyConfig
from training.trainers.launch import find_checkpoint
from training.trainers.ppo_core import (
    LagrangeMultiplier,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    gather_log_probs,
    kl_penalised_returns,
    masked_mean,
    mixed_advantage,
    shaped_reward,
    token_entropy,
)

log = logging.getLogger("training.trainers")

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]

STATE_FILE = "policy_state.json"
# Written last into a checkpoint folder: find_checkpoint() takes only folders that have it.
CHECKPOINT_MARK = "trainer_state.json"
PROVENANCE_FILE = "policy.json"
MAX_GRAD_NORM = 1.0
# Sample responses kept for reading are cut to this many characters.
SAMPLE_CHARS = 2000


@dataclasses.dataclass(frozen=True)
class Prompt:
    text: str
    category: str | None = None


def read_prompts(files: Sequence[str | os.PathLike[str]], *, cache_dir: str | None = None) -> list[Prompt]:
    """The distinct prompts of pku-saferlhf, beavertails or prompts files (JSON lines, a JSON array,
    Parquet), in file order; a string `category` column is kept for per-category figures."""
    import datasets

    from training.trainers.data import builder_for

    seen: dict[str, Prompt] = {}
    for file in files:
        path = os.fspath(file)
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        try:
            part = datasets.load_dataset(
                builder_for(path), data_files=[path], split="train", cache_dir=cache_dir
            )
        except Exception as exc:  # datasets wraps parser errors in several types
            raise ValueError(f"{path}: could not be read: {exc}") from exc
        assert isinstance(part, datasets.Dataset)
        if "prompt" not in part.column_names:
            raise ValueError(f"{path}: no prompt column")
        categories = part["category"] if "category" in part.column_names else [None] * len(part)
        for line, (text, category) in enumerate(zip(part["prompt"], categories, strict=True), start=1):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"{path}: row {line}: prompt must be a non-empty string")
            if text not in seen:
                seen[text] = Prompt(text, category if isinstance(category, str) else None)
    if not seen:
        raise ValueError("no prompts in " + ", ".join(os.fspath(f) for f in files))
    return list(seen.values())


def split_prompts(prompts: list[Prompt], share: float, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """Hold out `share` of the prompts (seeded) for the evaluation when no test prompts are given."""
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, round(len(prompts) * share)) if share > 0 and len(prompts) > 1 else 0
    test = {i for i in order[:held]}
    return [p for i, p in enumerate(prompts) if i not in test], [
        p for i, p in enumerate(prompts) if i in test
    ]


class PromptSampler:
    """Prompts in a seeded order, a new permutation each pass; its position is checkpointed."""

    def __init__(self, count: int, seed: int) -> None:
        self.count, self.seed = count, seed
        self.epoch, self.position = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        return torch.randperm(
            self.count, generator=torch.Generator().manual_seed(self.seed + self.epoch)
        ).tolist()

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            if self.position >= self.count:
                self.epoch, self.position = self.epoch + 1, 0
                self._order = self._permutation()
            step = min(n - len(out), self.count - self.position)
            out.extend(self._order[self.position : self.position + step])
            self.position += step
        return out

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.position / self.count

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation()


def load_policy_tokenizer(path: str) -> Any:
    """The actor's tokenizer, padding on the left (generation continues each prompt at its end)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"base_model: the tokenizer of {path} has neither a pad nor an end-of-sequence token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token_id is None:
        raise ValueError(f"base_model: the tokenizer of {path} has no end-of-sequence token to end responses")
    return tokenizer


def _without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    # PPO's ratio compares two forward passes of the same weights: dropout would make it noise.
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def load_actor(path: str) -> Any:
    from transformers import AutoModelForCausalLM

    return _without_dropout(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))


def load_critic(path: str, pad_token_id: int) -> Any:
    """A per-token value model: the checkpoint's backbone with a one-output token head."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    config = AutoConfig.from_pretrained(path, num_labels=1)
    config.classifier_dropout = 0.0
    critic = AutoModelForTokenClassification.from_pretrained(path, config=config, dtype=torch.float32)
    critic.config.pad_token_id = pad_token_id
    return _without_dropout(critic)


def check_critic_source(score_model: str, actor_tokenizer: Any) -> None:
    """critic_init "score_models" needs a decoder score model with the actor's vocabulary: its value at
    token t must see only the tokens up to t, and in the actor's token positions."""
    from transformers import AutoConfig, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    config = AutoConfig.from_pretrained(score_model)
    if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"critic_init: {score_model} is a {config.model_type} encoder, which sees the whole response at "
            "every token; start the critics from the actor (critic_init: actor)"
        )
    if AutoTokenizer.from_pretrained(score_model).get_vocab() != actor_tokenizer.get_vocab():
        raise ValueError(
            f"critic_init: {score_model} does not share the actor's tokenizer; start the critics from the actor"
        )


@dataclasses.dataclass
class Rollout:
    """One iteration's episodes on this process (tensors on the device)."""

    input_ids: torch.Tensor  # (B, P + T)
    attention_mask: torch.Tensor  # (B, P + T)
    prompt_length: int  # P
    mask: torch.Tensor  # (B, T): the response's real tokens
    old_log_probs: torch.Tensor  # (B, T)
    ref_log_probs: torch.Tensor  # (B, T)
    reward: torch.Tensor  # (B,) the reward model's score
    cost: torch.Tensor  # (B,) the cost model's score (zeros without a cost model)
    reward_values: torch.Tensor  # (B, T)
    cost_values: torch.Tensor | None  # (B, T)
    generation_s: float
    scoring_s: float


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # Left-padded prompts: positions count real tokens, as generate() numbers them.
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_mask(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 on each response's tokens up to and including its first end token, 0 after it."""
    is_eos = response == eos_id
    ended_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    return (~ended_before).long()


class ProgressWriter:
    """Progress records, as the reward trainer's ProgressReporter writes them, from the main process."""

    def __init__(self, *, progress: ProgressFn | None, progress_file: str | None, is_main: bool) -> None:
        self.progress, self.progress_file, self.is_main = progress, progress_file, is_main

    def emit(self, event: str, *, step: int, max_steps: int, epoch: float, **fields: Any) -> None:
        if not self.is_main:
            return
        from training.trainers.trainer import _jsonable

        record: dict[str, Any] = {
            "event": event,
            "step": step,
            "max_steps": max_steps,
            "epoch": round(epoch, 4),
            "progress": round(min(1.0, step / max_steps), 4) if max_steps else 0.0,
            "time": round(time.time(), 3),
            **fields,
        }
        record = {k: _jsonable(v) for k, v in record.items()}
        if self.progress_file:
            with open(self.progress_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        if self.progress is not None:
            self.progress(record)


class PolicyTrainer:
    """PPO(-Lag) over one actor, a frozen reference, frozen score models and one or two critics."""

    def __init__(
        self,
        config: PolicyConfig,
        prompts: list[Prompt],
        *,
        progress: ProgressWriter,
    ) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from transformers import get_scheduler

        from training.trainers.modeling import Scorer

        self.config = config
        self.prompts = prompts
        self.progress = progress
        cuda = torch.cuda.is_available()
        if (config.bf16 or config.fp16) and not cuda:
            log.warning("no CUDA device: bf16/fp16 ignored, training in float32")
        precision = ("bf16" if config.bf16 else "fp16" if config.fp16 else "no") if cuda else "no"
        self.accelerator = Accelerator(
            mixed_precision=precision, gradient_accumulation_steps=config.gradient_accumulation_steps
        )
        set_seed(config.seed, device_specific=True)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.device = self.accelerator.device

        self.tokenizer = load_policy_tokenizer(config.base_model)
        self.uses_cost = config.algorithm != "ppo" or bool(config.cost_model)
        self.lagrangian = config.algorithm == "ppo_lag"
        actor = load_actor(config.base_model)
        if config.gradient_checkpointing:
            actor.gradient_checkpointing_enable()
        self.reference = load_actor(config.base_model).to(self.device).eval().requires_grad_(False)
        if config.critic_init == "score_models":
            check_critic_source(config.reward_model, self.tokenizer)
            if self.lagrangian:
                check_critic_source(config.cost_model, self.tokenizer)
        critic_source = {
            "actor": (config.base_model, config.base_model),
            "score_models": (config.reward_model, config.cost_model),
        }
        reward_source, cost_source = critic_source[config.critic_init]
        reward_critic = load_critic(reward_source, self.tokenizer.pad_token_id)
        cost_critic = load_critic(cost_source, self.tokenizer.pad_token_id) if self.lagrangian else None
        self.reward_model = Scorer(config.reward_model, device=self.device)
        self.cost_model = Scorer(config.cost_model, device=self.device) if self.uses_cost else None

        self.sampler = PromptSampler(len(prompts), config.seed)
        self.max_steps = self._total_steps()
        updates = (
            self.max_steps * config.ppo_epochs * (config.rollout_batch_size // config.per_device_batch_size)
        )
        optimizer_steps = max(1, math.ceil(updates / config.gradient_accumulation_steps))

        def optimise(model: torch.nn.Module, lr: float) -> tuple[Any, Any]:
            optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
            scheduler = get_scheduler(
                config.lr_scheduler,
                optimizer,
                num_warmup_steps=round(config.warmup_ratio * optimizer_steps),
                num_training_steps=optimizer_steps,
            )
            return optimizer, scheduler

        actor_opt, actor_sched = optimise(actor, config.learning_rate)
        critic_opt, critic_sched = optimise(reward_critic, config.critic_learning_rate)
        prepared = self.accelerator.prepare(
            actor, actor_opt, actor_sched, reward_critic, critic_opt, critic_sched
        )
        (
            self.actor,
            self.actor_opt,
            self.actor_sched,
            self.reward_critic,
            self.critic_opt,
            self.critic_sched,
        ) = prepared
        self.cost_critic = self.cost_opt = self.cost_sched = None
        if cost_critic is not None:
            cost_opt, cost_sched = optimise(cost_critic, config.critic_learning_rate)
            self.cost_critic, self.cost_opt, self.cost_sched = self.accelerator.prepare(
                cost_critic, cost_opt, cost_sched
            )
        self.lagrange = LagrangeMultiplier(
            init=config.lambda_init,
            lr=config.lambda_lr,
            threshold=config.cost_threshold,
            window=config.episode_cost_window_size,
            lambda_max=config.lambda_max,
            lambda_min=config.lambda_min,
            delay=config.lambda_update_delay_steps,
        )
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.before: dict[str, Any] | None = None

    # --- steps and prompts -------------------------------------------------------------------------

    def _total_steps(self) -> int:
        if self.config.max_steps > 0:
            return self.config.max_steps
        per_step = self.config.rollout_batch_size * self.world
        return max(1, math.ceil(self.config.epochs * len(self.prompts) / per_step))

    def _next_prompts(self) -> list[Prompt]:
        # Every process draws the same global batch and keeps its own share: the order stays one sequence.
        batch = self.sampler.take(self.config.rollout_batch_size * self.world)
        return [self.prompts[i] for i in batch[self.rank :: self.world]]

    # --- rollout -------------------------------------------------------------------------------------

    def _encode_prompts(self, prompts: Sequence[Prompt]) -> Any:
        texts = [self.config.format_prompt(p.text) for p in prompts]
        return self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self.config.max_length
        ).to(self.device)

    @torch.no_grad()
    def generate(self, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Sampled responses: (sequences (B, P + T), their attention mask, P)."""
        encoded = self._encode_prompts(prompts)
        actor = self.accelerator.unwrap_model(self.actor)
        with self.accelerator.autocast():
            sequences = actor.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                do_sample=True,
                temperature=self.config.temperature,
                top_p=self.config.top_p,
                # transformers samples from the top 50 tokens unless told otherwise: the PPO ratios and
                # the KL estimate assume samples from the policy itself (temperature and top-p aside).
                top_k=0,
                repetition_penalty=self.config.repetition_penalty,
                max_new_tokens=self.config.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                # ZeRO-3 / FSDP shard the weights: every process must take part in every forward.
                synced_gpus=self._sharded(),
            )
        prompt_length = encoded["input_ids"].shape[1]
        mask = response_mask(sequences[:, prompt_length:], self.tokenizer.eos_token_id)
        attention = torch.cat([encoded["attention_mask"], mask.to(encoded["attention_mask"].dtype)], dim=1)
        return sequences, attention, prompt_length

    def _sharded(self) -> bool:
        state = self.accelerator.state
        return bool(getattr(state, "deepspeed_plugin", None) or getattr(state, "fsdp_plugin", None))

    def decode(self, sequences: torch.Tensor, prompt_length: int, mask: torch.Tensor) -> list[str]:
        responses = sequences[:, prompt_length:]
        eos = self.tokenizer.eos_token_id
        return [
            self.tokenizer.decode(
                [t for t, m in zip(row.tolist(), row_mask.tolist(), strict=True) if m and t != eos],
                skip_special_tokens=True,
            )
            for row, row_mask in zip(responses, mask, strict=True)
        ]

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        texts = [p.text for p in prompts]
        reward = torch.tensor(self.reward_model.score(texts, list(responses)), device=self.device)
        if self.cost_model is None:
            return reward, torch.zeros_like(reward)
        return reward, torch.tensor(self.cost_model.score(texts, list(responses)), device=self.device)

    def _token_log_probs(
        self, model: Any, rollout_ids: torch.Tensor, attention: torch.Tensor, start: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per response token: log pi(token | prefix) and the logits it came from."""
        logits = model(
            input_ids=rollout_ids,
            attention_mask=attention,
            position_ids=position_ids(attention),
            use_cache=False,
        ).logits
        logits = logits[:, start - 1 : -1]
        return gather_log_probs(logits, rollout_ids[:, start:]), logits

    def _values(
        self, critic: Any, rollout_ids: torch.Tensor, attention: torch.Tensor, start: int
    ) -> torch.Tensor:
        # The value of the state before each response token: the critic's output at the token before it.
        values = critic(
            input_ids=rollout_ids, attention_mask=attention, position_ids=position_ids(attention)
        ).logits
        return values.squeeze(-1)[:, start - 1 : -1].float()

    @torch.no_grad()
    def rollout(self, prompts: Sequence[Prompt]) -> Rollout:
        started = time.perf_counter()
        sequences, attention, start = self.generate(prompts)
        generated = time.perf_counter()
        mask = attention[:, start:]
        reward, cost = self.score(prompts, self.decode(sequences, start, mask))
        scored = time.perf_counter()
        with self.accelerator.autocast():
            old_log_probs, _ = self._token_log_probs(self.actor, sequences, attention, start)
            ref_log_probs, _ = self._token_log_probs(self.reference, sequences, attention, start)
            reward_values = self._values(self.reward_critic, sequences, attention, start)
            cost_values = (
                self._values(self.cost_critic, sequences, attention, start)
                if self.cost_critic is not None
                else None
            )
        return Rollout(
            input_ids=sequences,
            attention_mask=attention,
            prompt_length=start,
            mask=mask.float(),
            old_log_probs=old_log_probs,
            ref_log_probs=ref_log_probs,
            reward=reward.float(),
            cost=cost.float(),
            reward_values=reward_values,
            cost_values=cost_values,
            generation_s=generated - started,
            scoring_s=scored - generated,
        )

    # --- one iteration -------------------------------------------------------------------------------

    def _gathered(self, values: torch.Tensor) -> torch.Tensor:
        return self.accelerator.gather(values.contiguous())

    def step(self) -> dict[str, Any]:
        """One PPO iteration; the step's metrics, averaged over every process's episodes."""
        cfg = self.config
        started = time.perf_counter()
        rollout = self.rollout(self._next_prompts())
        all_costs = self._gathered(rollout.cost)
        if self.lagrangian:
            self.lagrange.observe(all_costs.tolist())
            self.lagrange.step(self.global_step)
        multiplier = self.lagrange.value
        with torch.no_grad():
            score = rollout.reward
            if cfg.algorithm == "ppo_rs":
                score = shaped_reward(rollout.reward, rollout.cost, cfg.shaping_beta)
            rewards, costs = kl_penalised_returns(
                reward=score,
                cost=rollout.cost if self.lagrangian else None,
                log_probs=rollout.old_log_probs,
                ref_log_probs=rollout.ref_log_probs,
                mask=rollout.mask,
                kl_coeff=cfg.kl_coeff,
                score_clip=cfg.clip_range_score,
                split_kl=self.lagrangian,
            )
            reward_adv, reward_returns = gae(
                rollout.reward_values, rewards, rollout.mask, gamma=cfg.gamma, lam=cfg.gae_lambda
            )
            cost_adv = cost_returns = None
            if self.lagrangian:
                assert costs is not None and rollout.cost_values is not None
                cost_adv, cost_returns = gae(
                    rollout.cost_values, costs, rollout.mask, gamma=cfg.gamma, lam=cfg.gae_lambda
                )
                advantages = mixed_advantage(reward_adv, cost_adv, multiplier)
            else:
                advantages = reward_adv
        losses = self._update(rollout, advantages, reward_returns, cost_returns)
        elapsed = time.perf_counter() - started
        self.global_step += 1
        return self._step_metrics(rollout, all_costs, losses, multiplier, elapsed)

    def _update(
        self,
        rollout: Rollout,
        advantages: torch.Tensor,
        reward_returns: torch.Tensor,
        cost_returns: torch.Tensor | None,
    ) -> dict[str, float]:
        cfg = self.config
        start = rollout.prompt_length
        size = rollout.input_ids.shape[0]
        sums: dict[str, float] = {
            "policy_loss": 0.0,
            "reward_critic_loss": 0.0,
            "cost_critic_loss": 0.0,
            "entropy": 0.0,
            "clip_fraction": 0.0,
        }
        batches = 0
        models = [m for m in (self.actor, self.reward_critic, self.cost_critic) if m is not None]
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(size, device="cpu").tolist()
            for first in range(0, size, cfg.per_device_batch_size):
                idx = torch.tensor(order[first : first + cfg.per_device_batch_size], device=self.device)
                ids, attention, mask = rollout.input_ids[idx], rollout.attention_mask[idx], rollout.mask[idx]
                with self.accelerator.accumulate(*models):
                    with self.accelerator.autocast():
                        log_probs, logits = self._token_log_probs(self.actor, ids, attention, start)
                    policy_loss, clip_fraction = clipped_policy_loss(
                        log_probs,
                        rollout.old_log_probs[idx],
                        advantages[idx],
                        mask,
                        clip=cfg.clip_range_ratio,
                    )
                    self._optimise(self.actor, policy_loss, self.actor_opt, self.actor_sched)
                    with torch.no_grad():
                        sums["entropy"] += float(masked_mean(token_entropy(logits), mask))
                    sums["policy_loss"] += float(policy_loss.detach())
                    sums["clip_fraction"] += float(clip_fraction)
                    sums["reward_critic_loss"] += self._critic_step(
                        self.reward_critic,
                        self.critic_opt,
                        self.critic_sched,
                        ids,
                        attention,
                        start,
                        rollout.reward_values[idx],
                        reward_returns[idx],
                        mask,
                    )
                    if (
                        self.cost_critic is not None
                        and cost_returns is not None
                        and rollout.cost_values is not None
                    ):
                        sums["cost_critic_loss"] += self._critic_step(
                            self.cost_critic,
                            self.cost_opt,
                            self.cost_sched,
                            ids,
                            attention,
                            start,
                            rollout.cost_values[idx],
                            cost_returns[idx],
                            mask,
                        )
                batches += 1
        return {k: v / max(1, batches) for k, v in sums.items()}

    def _optimise(self, model: Any, loss: torch.Tensor, optimizer: Any, scheduler: Any) -> None:
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            self.accelerator.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()

    def _critic_step(
        self,
        critic: Any,
        optimizer: Any,
        scheduler: Any,
        ids: torch.Tensor,
        attention: torch.Tensor,
        start: int,
        old_values: torch.Tensor,
        returns: torch.Tensor,
        mask: torch.Tensor,
    ) -> float:
        with self.accelerator.autocast():
            values = self._values(critic, ids, attention, start)
        loss = clipped_value_loss(values, old_values, returns, mask, clip=self.config.clip_range_value)
        self._optimise(critic, loss, optimizer, scheduler)
        return float(loss.detach())

    def _step_metrics(
        self,
        rollout: Rollout,
        all_costs: torch.Tensor,
        losses: dict[str, float],
        multiplier: float,
        elapsed: float,
    ) -> dict[str, Any]:
        mask = rollout.mask
        kl = ((rollout.old_log_probs - rollout.ref_log_probs) * mask).sum(-1)
        lengths = mask.sum(-1)
        local = torch.tensor(
            [
                losses["policy_loss"],
                losses["reward_critic_loss"],
                losses["cost_critic_loss"],
                losses["entropy"],
                losses["clip_fraction"],
            ],
            device=self.device,
        )
        mean_losses = self.accelerator.reduce(local, reduction="mean").tolist()
        rewards = self._gathered(rollout.reward)
        kls, all_lengths = self._gathered(kl), self._gathered(lengths)
        timing = self.accelerator.reduce(
            torch.tensor([rollout.generation_s, elapsed], device=self.device), reduction="mean"
        ).tolist()
        generated_tokens = float(all_lengths.sum())
        metrics: dict[str, Any] = {
            "loss": mean_losses[0],
            "policy_loss": mean_losses[0],
            "reward_critic_loss": mean_losses[1],
            "entropy": mean_losses[3],
            "clip_fraction": mean_losses[4],
            "reward": float(rewards.mean()),
            "kl": float(kls.mean()),
            "response_length": float(all_lengths.float().mean()),
            "tokens_per_s": generated_tokens / max(timing[1], 1e-9),
            "generation_share": timing[0] / max(timing[1], 1e-9),
            "step_s": timing[1],
        }
        if self.uses_cost:
            metrics["cost"] = float(all_costs.mean())
            metrics["unsafe_share"] = float((all_costs > 0).float().mean())
        if self.lagrangian:
            metrics["cost_critic_loss"] = mean_losses[2]
            metrics["lambda"] = multiplier
            metrics["episode_cost"] = self.lagrange.mean_cost()
        metrics["learning_rate"] = float(self.actor_sched.get_last_lr()[0])
        return metrics

    # --- evaluation ----------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, prompts: list[Prompt], *, moderation: Any = None, label: str) -> dict[str, Any]:
        """Generate for the held-out prompts (this process's share), score, gather: the summary and rows.

        Sampling as in training but from a fixed seed, so the initial and the trained actor answer with
        the same random draws; the training RNG is left where it was."""
        mine = prompts[self.rank :: self.world]
        rows: list[dict[str, Any]] = []
        batch = max(1, self.config.rollout_batch_size)
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed + 7919 * self.rank)
            for first in range(0, max(len(mine), 1) if mine else 0, batch):
                chunk = mine[first : first + batch]
                sequences, attention, start = self.generate(chunk)
                responses = self.decode(sequences, start, attention[:, start:])
                reward, cost = self.score(chunk, responses)
                flagged = (
                    moderation.flagged([p.text for p in chunk], responses)
                    if moderation is not None
                    else [None] * len(chunk)
                )
                for prompt, response, r, c, f in zip(
                    chunk, responses, reward.tolist(), cost.tolist(), flagged, strict=True
                ):
                    rows.append(
                        {
                            "prompt": prompt.text,
                            "category": prompt.category,
                            "response": response,
                            "reward": r,
                            "cost": c,
                            "flagged": f,
                        }
                    )
                self.progress.emit(
                    "evaluating",
                    step=self.global_step,
                    max_steps=self.max_steps,
                    epoch=self.sampler.epochs_done,
                    which=label,
                    done=first + len(chunk),
                    of=len(mine),
                )
        everything = rows
        if self.world > 1:
            from accelerate.utils import gather_object

            everything = gather_object([rows])
            everything = [row for part in everything for row in part]
        return {"summary": summarise(everything, uses_cost=self.uses_cost), "rows": everything}

    # --- checkpoints ----------------------------------------------------------------------------------

    def save_checkpoint(self, out: Path) -> str:
        folder = out / f"checkpoint-{self.global_step}"
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            state = {
                "global_step": self.global_step,
                "lagrange": self.lagrange.state_dict(),
                "sampler": self.sampler.state_dict(),
                "history": self.history,
                "before": self.before,
            }
            (folder / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
            (folder / CHECKPOINT_MARK).write_text(
                json.dumps({"global_step": self.global_step}), encoding="utf-8"
            )
            _prune_checkpoints(out, keep=self.config.save_total_limit)
        self.accelerator.wait_for_everyone()
        return str(folder)

    def load_checkpoint(self, folder: str) -> None:
        self.accelerator.load_state(folder)
        state = json.loads((Path(folder) / STATE_FILE).read_text(encoding="utf-8"))
        self.global_step = int(state["global_step"])
        self.lagrange.load_state_dict(state["lagrange"])
        self.sampler.load_state_dict(state["sampler"])
        self.history = list(state.get("history") or [])
        self.before = state.get("before")

    def save_policy(self, folder: Path, provenance: dict[str, Any]) -> None:
        self.accelerator.wait_for_everyone()
        actor = self.accelerator.unwrap_model(self.actor)
        actor.save_pretrained(
            str(folder),
            is_main_process=self.accelerator.is_main_process,
            save_function=self.accelerator.save,
            state_dict=self.accelerator.get_state_dict(self.actor),
        )
        if self.accelerator.is_main_process:
            self.tokenizer.save_pretrained(str(folder))
            (folder / CONFIG_FILE).write_text(json.dumps(self.config.to_dict(), indent=1), encoding="utf-8")
            (folder / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1), encoding="utf-8")

    def stop_requested(self, should_stop: StopFn | None) -> bool:
        """Every process asks; any yes stops all of them at the same step."""
        local = False
        if should_stop is not None:
            try:
                local = bool(should_stop())
            except Exception:  # a broken probe must not kill a long run
                log.exception("should_stop() raised; carrying on")
        if self.world > 1 and dist.is_initialized():
            flag = torch.tensor([1 if local else 0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return bool(flag.item())
        return local


def summarise(rows: list[dict[str, Any]], *, uses_cost: bool) -> dict[str, Any]:
    """Mean reward and cost, the unsafe share (cost > 0) and the moderation model's flagged share, over
    all rows and per category."""

    def figures(part: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(part)
        out: dict[str, Any] = {"prompts": n}
        if not n:
            return out
        out["reward"] = sum(r["reward"] for r in part) / n
        if uses_cost:
            out["cost"] = sum(r["cost"] for r in part) / n
            out["unsafe_share"] = sum(1 for r in part if r["cost"] > 0) / n
        flagged = [r["flagged"] for r in part if r["flagged"] is not None]
        if flagged:
            out["flagged_share"] = sum(flagged) / len(flagged)
        out["response_chars"] = sum(len(r["response"]) for r in part) / n
        return out

    categories = sorted({r["category"] for r in rows if r["category"]})
    return {
        **figures(rows),
        "per_category": {c: figures([r for r in rows if r["category"] == c]) for c in categories},
    }


def _prune_checkpoints(out: Path, *, keep: int) -> None:
    found = sorted(
        (int(p.name.split("-")[1]), p)
        for p in out.glob("checkpoint-*")
        if p.name.split("-")[1].isdigit() and (p / CHECKPOINT_MARK).is_file()
    )
    for _, folder in found[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


class ModerationJudge:
    """The active moderation model's flagged verdict on (prompt, response) pairs."""

    def __init__(self, path: str) -> None:
        from training.trainers.moderation import ModerationScorer

        self.scorer = ModerationScorer(path)

    def flagged(self, prompts: list[str], responses: list[str]) -> list[bool]:
        pairs = list(zip(prompts, responses, strict=True))
        return [bool(result["flagged"]) for result in self.scorer.results(pairs)]


def choose_eval_prompts(prompts: list[Prompt], limit: int, seed: int) -> list[Prompt]:
    """At most `limit` of the evaluation prompts, a seeded sample kept in file order (so a category's
    prompts stay represented in proportion)."""
    if len(prompts) <= limit:
        return prompts
    chosen = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(seed))[:limit].tolist()
    return [prompts[i] for i in sorted(chosen)]


def train_policy(
    config: PolicyConfig,
    *,
    train_files: Sequence[str | os.PathLike[str]],
    test_files: Sequence[str | os.PathLike[str]] = (),
    eval_prompt_files: Sequence[str | os.PathLike[str]] = (),
    progress: ProgressFn | None = None,
    progress_file: str | os.PathLike[str] | None = None,
    should_stop: StopFn | None = None,
    resume: bool = True,
) -> Any:
    """Train a policy by PPO-Lag (or PPO, or PPO with reward shaping) on the prompts of `train_files`;
    evaluate the initial and the trained actor on `eval_prompt_files` (else the test files' prompts, else
    a held-out share of the train prompts); save the actor. The contract of run.train: a TrainResult,
    "cancelled" with a checkpoint when should_stop() says so, ValueError for a bad config or data."""
    from training.trainers.data import data_files
    from training.trainers.run import TrainResult, _check_resume

    config.check_paths()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = str(out / "datasets-cache")
    prompts = read_prompts(data_files(train_files), cache_dir=cache_dir)
    if eval_prompt_files:
        held_out = read_prompts(data_files(eval_prompt_files), cache_dir=cache_dir)
    elif test_files:
        held_out = read_prompts(data_files(test_files), cache_dir=cache_dir)
    else:
        prompts, held_out = split_prompts(prompts, config.eval_split, config.seed)
    eval_prompts = choose_eval_prompts(held_out, config.eval_max_prompts, config.seed)

    checkpoint = find_checkpoint(out) if resume else None
    _check_resume(out, config, checkpoint)
    is_main = os.environ.get("RANK", "0") == "0"
    writer = ProgressWriter(
        progress=progress, progress_file=os.fspath(progress_file) if progress_file else None, is_main=is_main
    )
    trainer = PolicyTrainer(config, prompts, progress=writer)
    if trainer.accelerator.is_main_process:
        (out / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
    if checkpoint:
        log.info("resuming from %s", checkpoint)
        trainer.load_checkpoint(checkpoint)

    def emit(event: str, **fields: Any) -> None:
        writer.emit(
            event,
            step=trainer.global_step,
            max_steps=trainer.max_steps,
            epoch=trainer.sampler.epochs_done,
            **fields,
        )

    emit(
        "train_begin",
        kind=config.kind,
        algorithm=config.algorithm,
        train_prompts=len(prompts),
        eval_prompts=len(eval_prompts),
        resumed_from=checkpoint,
    )
    moderation = ModerationJudge(config.moderation_model) if config.moderation_model else None
    if trainer.before is None and eval_prompts:
        trainer.before = trainer.evaluate(eval_prompts, moderation=moderation, label="before")
    started = time.perf_counter()
    stopped = False
    while trainer.global_step < trainer.max_steps:
        metrics = trainer.step()
        trainer.history.append({"step": trainer.global_step, **metrics})
        last = trainer.global_step >= trainer.max_steps
        if trainer.global_step % config.logging_steps == 0 or last:
            emit("log", **metrics)
        if trainer.stop_requested(should_stop):
            emit("stop_requested")
            emit("checkpoint", path=trainer.save_checkpoint(out))
            stopped = True
            break
        if trainer.global_step % config.save_steps == 0 and not last:
            emit("checkpoint", path=trainer.save_checkpoint(out))
    runtime = time.perf_counter() - started

    result = TrainResult(
        status="succeeded",
        kind=config.kind,
        config_hash=config.hash(),
        output_dir=str(out),
        global_step=trainer.global_step,
        max_steps=trainer.max_steps,
        train_pairs=len(prompts),
        test_pairs=len(eval_prompts),
        metrics={"train_runtime": runtime, **_final_training_figures(trainer.history)},
        eval={},
        history=trainer.history,
        resumed_from=checkpoint,
    )
    if stopped:
        result.status = "cancelled"
        result.checkpoint = find_checkpoint(out)
        return result

    after = trainer.evaluate(eval_prompts, moderation=moderation, label="after") if eval_prompts else None
    evaluation = policy_evaluation(config, trainer.before, after, lagrange=trainer.lagrange.value)
    eval_dir = out / "eval"
    if trainer.accelerator.is_main_process:
        eval_dir.mkdir(parents=True, exist_ok=True)
        (eval_dir / "eval.json").write_text(json.dumps(evaluation, indent=1), encoding="utf-8")
    result.eval = evaluation
    result.eval_path = str(eval_dir / "eval.json")
    artifact = out / "model"
    trainer.save_policy(artifact, provenance=_provenance(config, trainer))
    result.artifact_path = str(artifact)
    emit("eval", final=True, **{f"test_{k}": v for k, v in evaluation["metrics"].items()})
    emit("train_end")
    return result


def _final_training_figures(history: list[dict[str, Any]]) -> dict[str, float]:
    """The last step's reward, cost, lambda and KL (what the run ended on)."""
    if not history:
        return {}
    last = history[-1]
    keys = ("reward", "cost", "unsafe_share", "lambda", "kl", "tokens_per_s", "generation_share")
    return {f"final_{k}": float(last[k]) for k in keys if isinstance(last.get(k), int | float)}


def policy_evaluation(
    config: PolicyConfig,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    *,
    lagrange: float,
) -> dict[str, Any]:
    """The job's evaluation: flat before/after figures (the job page's metrics table), the before/after
    table with per-category rows, and sample responses side by side."""
    flat: dict[str, float] = {}
    table: dict[str, Any] = {}
    for label, part in (("before", before), ("after", after)):
        if part is None:
            continue
        summary = part["summary"]
        table[label] = summary
        for key in ("reward", "cost", "unsafe_share", "flagged_share"):
            if isinstance(summary.get(key), int | float):
                flat[f"{key}_{label}"] = float(summary[key])
    samples = []
    if before is not None and after is not None:
        paired = zip(
            before["rows"][: config.eval_samples], after["rows"][: config.eval_samples], strict=False
        )
        for old, new in paired:
            if old["prompt"] != new["prompt"]:
                continue
            samples.append(
                {
                    "prompt": old["prompt"][:SAMPLE_CHARS],
                    "category": old["category"],
                    "before": old["response"][:SAMPLE_CHARS],
                    "after": new["response"][:SAMPLE_CHARS],
                    "before_reward": old["reward"],
                    "after_reward": new["reward"],
                    "before_cost": old["cost"],
                    "after_cost": new["cost"],
                }
            )
    return {
        "kind": config.kind,
        "metrics": flat,
        "policy": {
            "algorithm": config.algorithm,
            "threshold": config.cost_threshold if config.algorithm == "ppo_lag" else None,
            "shaping_beta": config.shaping_beta if config.algorithm == "ppo_rs" else None,
            "final_lambda": lagrange if config.algorithm == "ppo_lag" else None,
            "before": table.get("before"),
            "after": table.get("after"),
            "samples": samples,
        },
    }


def _provenance(config: PolicyConfig, trainer: PolicyTrainer) -> dict[str, Any]:
    return {
        "algorithm": config.algorithm,
        "policy_base": config.base_model,
        "reward_model": config.reward_model,
        "reward_model_id": config.reward_model_id or None,
        "cost_model": config.cost_model or None,
        "cost_model_id": config.cost_model_id or None,
        "config_hash": config.hash(),
        "steps": trainer.global_step,
        "final_lambda": trainer.lagrange.value if config.algorithm == "ppo_lag" else None,
    }
