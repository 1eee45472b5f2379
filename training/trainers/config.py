"""The trainer configuration: one dataclass that the web side validates and the trainer runs.

`TrainerConfig.from_dict` checks types, ranges and cross-field rules and raises `ValueError` with
every problem found, so the Django form/API and the trainer reject the same configs with the same
messages. Paths (the base model, DeepSpeed/FSDP files) are only checked by `check_paths()`, which
the trainer calls on the machine that trains: the web server need not see the GPU machine's disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import string
from dataclasses import dataclass
from typing import Any, ClassVar

KINDS = ("reward", "cost")
MODERATION = "moderation"
POLICY = "ppo_lag"
# The policy trainer's algorithms: PPO-Lagrangian (Safe RLHF), and the paper's two baselines, PPO on the
# reward alone and PPO on the shaped reward r - beta * c.
ALGORITHMS = ("ppo_lag", "ppo", "ppo_rs")
# Where a value network starts: a copy of the actor with a fresh value head, or the reward (cost) model
# itself (a decoder that shares the actor's tokenizer), as safe-rlhf starts its critics.
CRITIC_INITS = ("actor", "score_models")
# Which prompts the end-of-run evaluation generates for: the snapshot's test split, or BeaverTails-
# Evaluation's 700 prompts (50 per harm category), which the job system finds in the shared data.
EVAL_PROMPT_SOURCES = ("test", "beavertails_evaluation")
# How several labels of one QA pair become its training target: the per-category majority (a tie is
# "not in the category", as GuardBench reads BeaverTails' repeated rows), or the share of labels.
TARGET_MODES = ("consensus", "soft")
# How each category's decision threshold is chosen on the validation slice.
THRESHOLD_STRATEGIES = ("f1", "recall", "fixed")
DEFAULT_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"
LR_SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup")
# The config as JSON, written beside the checkpoints (to refuse resuming another recipe's) and into the
# saved model (so a scorer knows its template, max_length and kind).
CONFIG_FILE = "trainer_config.json"

# Fields that say where a run writes, not what it trains: left out of the config hash so that the
# same training recipe hashes the same whichever job folder it ran in.
_UNHASHED_FIELDS = frozenset({"output_dir", "logging_steps", "save_steps", "save_total_limit"})


@dataclass
class TrainerConfig:
    """A reward or cost model recipe (ModerationConfig below adds the classifier's own settings)."""

    kinds: ClassVar[tuple[str, ...]] = KINDS

    kind: str
    base_model: str
    output_dir: str = ""
    max_length: int = 512
    epochs: float = 2.0
    # -1: run `epochs` epochs; a positive value caps the run at that many optimiser steps.
    max_steps: int = -1
    # Pairs per device per forward pass; each pair is two sequences.
    per_device_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-5
    weight_decay: float = 0.1
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    seed: int = 42
    # Coefficient of the L2 penalty on the scores (keeps them near zero, Safe RLHF's 0.001).
    l2_coeff: float = 0.001
    template: str = DEFAULT_TEMPLATE
    # Share of the training prompts held out for evaluation when no test files are given (0: none).
    eval_split: float = 0.1
    # Evaluate on the test split every this many steps as well as at the end (0: at the end only).
    eval_steps: int = 0
    # Sort each mega-batch by length so a batch pads little (transformers' group_by_length sampler).
    group_by_length: bool = True
    gradient_checkpointing: bool = False
    # Mixed precision; both are ignored (with a log line) where no CUDA device is present.
    bf16: bool = False
    fp16: bool = False
    # Several GPUs: the job system starts `accelerate launch --num_processes num_gpus`.
    num_gpus: int = 1
    deepspeed: str | None = None
    # FSDP options as transformers takes them ("full_shard auto_wrap"), with an optional JSON config.
    fsdp: str = ""
    fsdp_config: str | None = None
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    dataloader_num_workers: int = 0

    def __post_init__(self) -> None:
        errors = self.validation_errors()
        if errors:
            raise ValueError("invalid trainer config: " + "; ".join(errors))

    def validation_errors(self) -> list[str]:
        return _validate(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainerConfig:
        """Build and validate a config from plain JSON-like data; unknown keys are an error."""
        if not isinstance(data, dict):
            raise ValueError(f"invalid trainer config: expected an object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in data
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        errors = [f"unknown field {name!r}" for name in unknown]
        errors += [f"{name}: this field is required" for name in missing]
        if errors:
            raise ValueError("invalid trainer config: " + "; ".join(errors))
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> TrainerConfig:
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid trainer config: {path} is not JSON ({exc})") from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainerConfig:
        return dataclasses.replace(self, **changes)

    def hash(self) -> str:
        """SHA-256 (64 hex characters) of the training recipe: stable across runs and key order."""
        data = {k: v for k, v in self.to_dict().items() if k not in _UNHASHED_FIELDS}
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def check_paths(self) -> None:
        """Check the paths the trainer will read; call on the machine that trains."""
        errors = []
        if not os.path.isdir(self.base_model):
            errors.append(f"base_model: {self.base_model!r} is not a local directory")
        elif not os.path.isfile(os.path.join(self.base_model, "config.json")):
            errors.append(
                f"base_model: {self.base_model!r} has no config.json (not a Hugging Face checkpoint)"
            )
        for name in ("deepspeed", "fsdp_config"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                errors.append(f"{name}: {path!r} is not a file")
        if not self.output_dir:
            errors.append("output_dir: required to train")
        if errors:
            raise ValueError("invalid trainer config: " + "; ".join(errors))

    def format_text(self, prompt: str, response: str) -> str:
        return self.template.format(prompt=prompt, response=response)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _validate(cfg: TrainerConfig) -> list[str]:
    errors: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            errors.append(message)

    need(cfg.kind in cfg.kinds, f"kind: must be one of {', '.join(cfg.kinds)}, got {cfg.kind!r}")
    need(
        isinstance(cfg.base_model, str) and cfg.base_model.strip() != "",
        "base_model: a local checkpoint path is required",
    )
    need(isinstance(cfg.output_dir, str), "output_dir: must be a string")

    def int_field(name: str, low: int, high: int | None = None) -> None:
        value = getattr(cfg, name)
        if not _is_int(value):
            errors.append(f"{name}: must be an integer, got {value!r}")
        elif value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            errors.append(f"{name}: must be {bound}, got {value}")

    def float_field(
        name: str, low: float, high: float, *, low_open: bool = False, high_open: bool = False
    ) -> None:
        value = getattr(cfg, name)
        if not _is_number(value):
            errors.append(f"{name}: must be a number, got {value!r}")
            return
        too_low = value <= low if low_open else value < low
        too_high = value >= high if high_open else value > high
        if too_low or too_high:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            errors.append(f"{name}: must be in {left}{low}, {high}{right}, got {value}")

    int_field("max_length", 8, 32768)
    float_field("epochs", 0, 1000, low_open=True)
    if _is_int(cfg.max_steps):
        need(
            cfg.max_steps == -1 or cfg.max_steps > 0,
            f"max_steps: must be -1 or positive, got {cfg.max_steps}",
        )
    else:
        errors.append(f"max_steps: must be an integer, got {cfg.max_steps!r}")
    int_field("per_device_batch_size", 1, 4096)
    int_field("gradient_accumulation_steps", 1, 4096)
    float_field("learning_rate", 0, 1, low_open=True)
    float_field("weight_decay", 0, 1)
    float_field("warmup_ratio", 0, 1, high_open=True)
    need(
        cfg.lr_scheduler in LR_SCHEDULERS,
        f"lr_scheduler: must be one of {', '.join(LR_SCHEDULERS)}, got {cfg.lr_scheduler!r}",
    )
    int_field("seed", 0, 2**32 - 1)
    float_field("l2_coeff", 0, 10)
    float_field("eval_split", 0, 1, high_open=True)
    int_field("eval_steps", 0)
    int_field("num_gpus", 0, 1024)
    int_field("logging_steps", 1)
    int_field("save_steps", 1)
    int_field("save_total_limit", 1)
    int_field("dataloader_num_workers", 0, 64)
    for name in ("group_by_length", "gradient_checkpointing", "bf16", "fp16"):
        need(
            isinstance(getattr(cfg, name), bool), f"{name}: must be true or false, got {getattr(cfg, name)!r}"
        )
    need(not (cfg.bf16 is True and cfg.fp16 is True), "bf16, fp16: choose at most one mixed precision")

    errors.extend(_template_errors(cfg.template))

    for name in ("deepspeed", "fsdp_config"):
        value = getattr(cfg, name)
        need(value is None or (isinstance(value, str) and value != ""), f"{name}: must be a path or null")
    need(isinstance(cfg.fsdp, str), f"fsdp: must be a string of FSDP options, got {cfg.fsdp!r}")
    if cfg.deepspeed and cfg.fsdp:
        errors.append("deepspeed, fsdp: choose one of DeepSpeed and FSDP")
    if cfg.fsdp_config and not cfg.fsdp:
        errors.append("fsdp_config: needs fsdp options (e.g. 'full_shard auto_wrap')")
    if cfg.fsdp and _is_int(cfg.num_gpus) and cfg.num_gpus < 2:
        # DeepSpeed on one GPU still makes sense (ZeRO offload); FSDP on one process shards nothing.
        errors.append("fsdp: needs num_gpus of 2 or more")
    return errors


def _template_errors(template: Any) -> list[str]:
    if not isinstance(template, str) or not template:
        return ["template: must be a non-empty string"]
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"template: not a valid format string ({exc}); write literal braces as {{{{ and }}}}"]
    errors = []
    for name in sorted(set(fields) - {"prompt", "response"}):
        errors.append(
            f"template: unknown placeholder {{{name}}}; only {{prompt}} and {{response}} are allowed"
        )
    for name in ("prompt", "response"):
        if fields.count(name) != 1:
            errors.append(f"template: must contain {{{name}}} exactly once")
    return errors


@dataclass
class ModerationConfig(TrainerConfig):
    """The QA-moderation classifier: 14 harm categories, multi-label, on `beavertails` rows.

    The defaults suit the offline MiniLM encoder on CPU: 256 tokens (what downstream papers judge with),
    a larger batch and learning rate than a pairwise scorer needs.
    """

    kinds: ClassVar[tuple[str, ...]] = (MODERATION,)

    max_length: int = 256
    epochs: float = 3.0
    per_device_batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    l2_coeff: float = 0.0
    # Several labels of one QA pair (a raw export, BeaverTails' 330k split): train on their consensus,
    # or on soft targets (the share of labels that marked each category).
    targets: str = "consensus"
    # Per-category weight of the positive examples in the loss: "balanced" (negatives / positives in
    # the training targets, at most pos_weight_max), "none", or {category key: weight}.
    pos_weight: Any = "balanced"
    pos_weight_max: float = 10.0
    # Thresholds, one per category, chosen on a validation slice of the train split (by prompt):
    # "f1" maximises each category's F1, "recall" takes the highest threshold that reaches target_recall,
    # "fixed" keeps 0.5. The model always carries 0.5 as the plain default too.
    threshold_strategy: str = "f1"
    target_recall: float = 0.9
    validation_split: float = 0.1

    def validation_errors(self) -> list[str]:
        errors = _validate(self)
        if self.targets not in TARGET_MODES:
            errors.append(f"targets: must be one of {', '.join(TARGET_MODES)}, got {self.targets!r}")
        if self.threshold_strategy not in THRESHOLD_STRATEGIES:
            errors.append(
                f"threshold_strategy: must be one of {', '.join(THRESHOLD_STRATEGIES)}, got {self.threshold_strategy!r}"
            )
        if not _is_number(self.target_recall) or not 0 < self.target_recall <= 1:
            errors.append(f"target_recall: must be in (0, 1], got {self.target_recall!r}")
        if not _is_number(self.validation_split) or not 0 <= self.validation_split < 1:
            errors.append(f"validation_split: must be in [0, 1), got {self.validation_split!r}")
        if not _is_number(self.pos_weight_max) or self.pos_weight_max < 1:
            errors.append(f"pos_weight_max: must be at least 1, got {self.pos_weight_max!r}")
        errors.extend(_pos_weight_errors(self.pos_weight))
        return errors


def _pos_weight_errors(value: Any) -> list[str]:
    from annotate.categories import CATEGORY_KEYS

    if value in ("balanced", "none"):
        return []
    if not isinstance(value, dict):
        return [f'pos_weight: "balanced", "none" or an object of category weights, got {value!r}']
    errors = [f"pos_weight: unknown category {key!r}" for key in value if key not in CATEGORY_KEYS]
    errors += [
        f"pos_weight: the weight of {key} must be a positive number, got {weight!r}"
        for key, weight in value.items()
        if key in CATEGORY_KEYS and (not _is_number(weight) or weight <= 0)
    ]
    return errors


# The actor's input: the prompt in the reward and cost models' default template, up to the response.
POLICY_PROMPT_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:"


@dataclass
class PolicyConfig(TrainerConfig):
    """A policy trained by PPO-Lagrangian (or a baseline) against a frozen reward and cost model.

    Inherited fields keep their meaning for the actor: base_model is the actor's causal-LM checkpoint,
    learning_rate its learning rate, per_device_batch_size the PPO mini-batch (episodes per process),
    max_steps the number of PPO iterations (rollout then update; -1: `epochs` passes over the prompts),
    max_length the prompt's token budget, save_steps and logging_steps count iterations. Defaults are
    safe-rlhf's scripts/ppo-lag.sh where it has one (docs/ppo-lag.md lists each with its source).
    """

    kinds: ClassVar[tuple[str, ...]] = (POLICY,)

    algorithm: str = "ppo_lag"
    # The API's name for the actor checkpoint: the job system keeps it equal to base_model.
    policy_model: str = ""
    # The frozen score models (our reward/cost job artifacts, or any one-score sequence classifier).
    reward_model: str = ""
    cost_model: str = ""
    # The registry ids the job system resolved those paths from (provenance only; 0: not from the registry).
    reward_model_id: int = 0
    cost_model_id: int = 0
    # With a moderation model, the evaluation also reports its flagged rate on the responses.
    moderation_model: str = ""
    prompt_template: str = POLICY_PROMPT_TEMPLATE
    max_length: int = 256
    epochs: float = 1.0
    max_steps: int = 100
    learning_rate: float = 1e-5
    critic_learning_rate: float = 5e-6
    weight_decay: float = 0.01
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    l2_coeff: float = 0.0
    # Prompts each process rolls out per iteration; PPO then takes `ppo_epochs` passes over them in
    # mini-batches of per_device_batch_size.
    rollout_batch_size: int = 16
    per_device_batch_size: int = 8
    ppo_epochs: int = 1
    # Sampling.
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    # PPO.
    kl_coeff: float = 0.01
    clip_range_ratio: float = 0.2
    clip_range_value: float = 5.0
    clip_range_score: float = 50.0
    gamma: float = 1.0
    gae_lambda: float = 0.95
    critic_init: str = "actor"
    # The Lagrange multiplier (ppo_lag): the cost threshold d in E[cost] <= d, in the cost model's units
    # (0: as many responses judged safe as unsafe on the model's sign), and SGD on log(lambda).
    cost_threshold: float = 0.0
    lambda_init: float = 1.0
    lambda_lr: float = 0.1
    lambda_max: float = 5.0
    lambda_min: float = 0.0
    lambda_update_delay_steps: int = 0
    episode_cost_window_size: int = 128
    # Reward shaping (ppo_rs): the policy maximises r - beta * c.
    shaping_beta: float = 1.0
    eval_prompts: str = "test"
    eval_max_prompts: int = 256
    eval_samples: int = 24
    logging_steps: int = 1
    save_steps: int = 50

    def validation_errors(self) -> list[str]:
        errors = _validate(self)

        def choice(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                errors.append(f"{name}: must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

        def number(name: str, low: float, high: float, *, low_open: bool = False) -> None:
            value = getattr(self, name)
            if not _is_number(value) or (value <= low if low_open else value < low) or value > high:
                bound = f"({low}, {high}]" if low_open else f"[{low}, {high}]"
                errors.append(f"{name}: must be in {bound}, got {value!r}")

        def integer(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if not _is_int(value) or not low <= value <= high:
                errors.append(f"{name}: must be an integer between {low} and {high}, got {value!r}")

        choice("algorithm", ALGORITHMS)
        choice("critic_init", CRITIC_INITS)
        choice("eval_prompts", EVAL_PROMPT_SOURCES)
        for name in ("reward_model", "cost_model", "moderation_model"):
            if not isinstance(getattr(self, name), str):
                errors.append(f"{name}: must be a path")
        if not self.reward_model:
            errors.append("reward_model: a trained reward model is required")
        if self.algorithm != "ppo" and not self.cost_model:
            errors.append(f"cost_model: {self.algorithm} needs a trained cost model")
        for name in ("reward_model_id", "cost_model_id"):
            integer(name, 0, 2**63 - 1)
        errors.extend(_prompt_template_errors(self.prompt_template))
        integer("rollout_batch_size", 1, 65536)
        integer("ppo_epochs", 1, 100)
        integer("max_new_tokens", 1, 32768)
        integer("episode_cost_window_size", 1, 10**7)
        integer("lambda_update_delay_steps", 0, 10**9)
        integer("eval_max_prompts", 0, 100_000)
        integer("eval_samples", 0, 1000)
        number("critic_learning_rate", 0, 1, low_open=True)
        number("temperature", 0, 100, low_open=True)
        number("top_p", 0, 1, low_open=True)
        number("repetition_penalty", 0, 100, low_open=True)
        number("kl_coeff", 0, 100)
        number("clip_range_ratio", 0, 10, low_open=True)
        number("clip_range_value", 0, 1e6, low_open=True)
        number("clip_range_score", 0, 1e6, low_open=True)
        number("gamma", 0, 1)
        number("gae_lambda", 0, 1)
        number("cost_threshold", -1e6, 1e6)
        number("lambda_init", 0, 1e6, low_open=True)
        number("lambda_lr", 0, 100)
        number("lambda_max", 0, 1e9, low_open=True)
        number("lambda_min", 0, 1e9)
        number("shaping_beta", 0, 1e6)
        if _is_number(self.lambda_min) and _is_number(self.lambda_max) and self.lambda_min > self.lambda_max:
            errors.append("lambda_min: must not exceed lambda_max")
        if (
            _is_number(self.lambda_init)
            and _is_number(self.lambda_max)
            and self.lambda_init > self.lambda_max
        ):
            errors.append("lambda_init: must not exceed lambda_max")
        if self.deepspeed or self.fsdp:
            # The policy trainer runs on accelerate directly: sharding comes from the launch config.
            errors.append(
                "deepspeed, fsdp: a policy shards through an accelerate launch config "
                "(training/configs/accelerate_zero3.yaml or accelerate_fsdp.yaml; docs/ppo-lag.md)"
            )
        if self.policy_model and self.policy_model != self.base_model:
            errors.append("policy_model: names the actor, as base_model does; give one, or the same path")
        batches_are_ints = _is_int(self.per_device_batch_size) and _is_int(self.rollout_batch_size)
        if batches_are_ints and self.rollout_batch_size % self.per_device_batch_size:
            errors.append(
                "rollout_batch_size: must be a multiple of per_device_batch_size (the PPO mini-batch)"
            )
        return errors

    def check_paths(self) -> None:
        super().check_paths()
        errors = []
        for name in ("reward_model", "cost_model", "moderation_model"):
            path = getattr(self, name)
            if path and not os.path.isfile(os.path.join(path, "config.json")):
                errors.append(f"{name}: {path!r} is not a local model folder")
        if errors:
            raise ValueError("invalid trainer config: " + "; ".join(errors))

    def format_prompt(self, prompt: str) -> str:
        return self.prompt_template.format(prompt=prompt)


def _prompt_template_errors(template: Any) -> list[str]:
    if not isinstance(template, str) or not template:
        return ["prompt_template: must be a non-empty string"]
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return [f"prompt_template: not a valid format string ({exc})"]
    if fields != ["prompt"]:
        return ["prompt_template: must contain {prompt} exactly once and no other placeholder"]
    return []


CONFIG_CLASSES: dict[str, type[TrainerConfig]] = {
    **dict.fromkeys(KINDS, TrainerConfig),
    MODERATION: ModerationConfig,
    POLICY: PolicyConfig,
}


def config_from_dict(data: dict[str, Any]) -> TrainerConfig:
    """The recipe of whatever kind `data` names (a reward or cost TrainerConfig, or a ModerationConfig)."""
    if not isinstance(data, dict):
        raise ValueError(f"invalid trainer config: expected an object, got {type(data).__name__}")
    return CONFIG_CLASSES.get(str(data.get("kind")), TrainerConfig).from_dict(data)


def config_from_json_file(path: str | os.PathLike[str]) -> TrainerConfig:
    with open(path, encoding="utf-8") as fh:
        try:
            data = json.load(fh)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid trainer config: {path} is not JSON ({exc})") from exc
    return config_from_dict(data)
