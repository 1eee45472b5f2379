"""QA moderation: a 14-category multi-label classifier of (question, answer) pairs, as BeaverTails'
Beaver-Dam is, trained on the platform's `beavertails` rows; its thresholds, its evaluation, and
scoring with a trained one. Plain Python + torch + transformers, no Django.

- Data: `beavertails` rows (prompt, response, category: {14 keys: bool}, is_safe), as the platform's
  `beavertails` snapshot, its raw stage-1 export or BeaverTails' own 330k files give them. Rows of one
  QA pair (a raw export or the 330k split repeats a pair once per annotator) become one example: the
  per-category consensus (more than half the labels; a tie is "not in the category", as GuardBench
  reads the 330k split) or, with `targets: soft`, the share of labels that marked each category.
- Model: `AutoModelForSequenceClassification(num_labels=14, problem_type="multi_label_classification")`
  on any local checkpoint; the loss is binary cross-entropy per category with a positive weight per
  category (rare categories would otherwise be learnt as "never").
- Thresholds: one per category, chosen on a validation slice of the train split (by prompt); flagged =
  any category at or over its threshold. They are saved with the model (moderation.json), beside the
  plain 0.5 default.
- Evaluation on the test split: per category precision, recall, F1, AUROC and support; flagged
  accuracy, precision, recall and F1 against is_safe; micro and macro F1; expected calibration error with
  a reliability diagram; the flagged-vs-is_safe confusion.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from annotate.categories import CATEGORY_KEYS
from training.trainers.config import CONFIG_FILE, ModerationConfig

if TYPE_CHECKING:
    import datasets
    import torch
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)

N_CATEGORIES = len(CATEGORY_KEYS)
# Beside the model's weights: what scoring needs (categories in order, template, max length, thresholds).
MODERATION_FILE = "moderation.json"
DEFAULT_THRESHOLD = 0.5
CALIBRATION_BINS = 15
# A category's scores must rank its positives above its negatives at this significance before its F1
# threshold is tuned (choose_thresholds).
SKILL_P_VALUE = 0.05

FloatArray = np.ndarray


# --------------------------------------------------------------------------------------------------
# Data


def _category_targets(category: Any, path: str, line: int) -> list[bool]:
    if not isinstance(category, dict):
        raise ValueError(f"{path}: row {line}: category must be an object of the 14 category keys")
    missing = [key for key in CATEGORY_KEYS if key not in category]
    if missing:
        raise ValueError(f"{path}: row {line}: category lacks {', '.join(missing)}")
    values = [category[key] for key in CATEGORY_KEYS]
    bad = [key for key, value in zip(CATEGORY_KEYS, values, strict=True) if not isinstance(value, bool)]
    if bad:
        raise ValueError(f"{path}: row {line}: category values must be true or false ({', '.join(bad)})")
    return values


def read_labels(
    files: Sequence[str | os.PathLike[str]], *, cache_dir: str | None = None
) -> list[tuple[str, str, list[bool]]]:
    """Every (prompt, response, 14 category flags) row of beavertails-shaped files, checked; raises
    ValueError naming the file and row."""
    import datasets

    from training.trainers.data import builder_for

    if not files:
        raise ValueError("no data files given")
    rows: list[tuple[str, str, list[bool]]] = []
    for file in files:
        path = os.fspath(file)
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        builder = builder_for(path)
        try:
            part = datasets.load_dataset(builder, data_files=[path], split="train", cache_dir=cache_dir)
        except Exception as exc:  # datasets wraps parser errors in several types
            raise ValueError(f"{path}: could not be read as {builder}: {exc}") from exc
        assert isinstance(part, datasets.Dataset)
        missing = [c for c in ("prompt", "response", "category") if c not in part.column_names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (is it a beavertails export?)")
        line = 0
        for batch in part.select_columns(["prompt", "response", "category"]).iter(batch_size=4096):
            for prompt, response, category in zip(
                batch["prompt"], batch["response"], batch["category"], strict=True
            ):
                line += 1
                for name, text in (("prompt", prompt), ("response", response)):
                    if not isinstance(text, str):
                        raise ValueError(f"{path}: row {line}: {name} must be a string, got {text!r}")
                rows.append((prompt, response, _category_targets(category, path, line)))
    if not rows:
        raise ValueError(f"no rows in {', '.join(os.fspath(f) for f in files)}")
    return rows


@dataclass(frozen=True)
class Examples:
    """One row per QA pair: its texts, its 14 targets (0/1, or shares for soft targets), its labels count."""

    prompts: list[str]
    responses: list[str]
    targets: FloatArray  # (n, 14) float32
    n_labels: np.ndarray  # (n,) int

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: Sequence[int]) -> Examples:
        idx = np.asarray(index, dtype=np.int64)
        return Examples(
            [self.prompts[i] for i in idx],
            [self.responses[i] for i in idx],
            self.targets[idx],
            self.n_labels[idx],
        )


def aggregate(rows: Iterable[tuple[str, str, list[bool]]], *, targets: str = "consensus") -> Examples:
    """One example per (prompt, response), first-seen order: the consensus (share > 1/2) or the share."""
    index: dict[tuple[str, str], int] = {}
    sums: list[np.ndarray] = []
    counts: list[int] = []
    for prompt, response, flags in rows:
        key = (prompt, response)
        at = index.get(key)
        if at is None:
            index[key] = at = len(sums)
            sums.append(np.zeros(N_CATEGORIES, dtype=np.float64))
            counts.append(0)
        sums[at] += np.asarray(flags, dtype=np.float64)
        counts[at] += 1
    n = np.asarray(counts, dtype=np.int64)
    shares = np.stack(sums) / n[:, None] if sums else np.zeros((0, N_CATEGORIES))
    values = shares if targets == "soft" else (shares > 0.5).astype(np.float64)
    keys = list(index)
    return Examples([k[0] for k in keys], [k[1] for k in keys], values.astype(np.float32), n)


def split_examples(
    examples: Examples, share: float, seed: int, *, salt: str
) -> tuple[Examples, Examples | None]:
    """Hold out a share of the prompts (all their QA pairs), deterministically by a hash of the prompt."""
    if share <= 0 or len(examples) == 0:
        return examples, None
    import hashlib

    def held_out(prompt: str) -> bool:
        digest = hashlib.sha256(f"{salt}:{seed}:{prompt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < share

    flags = [held_out(p) for p in examples.prompts]
    out = [i for i, f in enumerate(flags) if f]
    keep = [i for i, f in enumerate(flags) if not f]
    if not out or not keep:
        return examples, None
    return examples.subset(keep), examples.subset(out)


def tokenize(examples: Examples, tokenizer: Any, *, template: str, max_length: int) -> datasets.Dataset:
    """input_ids, labels (14 floats) and length per example, as a datasets.Dataset for the Trainer."""
    import datasets

    texts = [
        template.format(prompt=p, response=r)
        for p, r in zip(examples.prompts, examples.responses, strict=True)
    ]
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    return datasets.Dataset.from_dict(
        {"input_ids": ids, "labels": examples.targets.tolist(), "length": [len(x) for x in ids]}
    )


@dataclass
class Collator:
    """Pads a batch of token ids; labels become a float (batch, 14) tensor."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        input_ids = torch.full((len(features), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, feature in enumerate(features):
            seq = feature["input_ids"]
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        labels = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# --------------------------------------------------------------------------------------------------
# Loss and model


def positive_weights(config: ModerationConfig, targets: FloatArray) -> np.ndarray:
    """The loss's weight of each category's positives: negatives / positives in the training targets
    ("balanced", capped at pos_weight_max; a category with no positive gets the cap), 1 ("none"), or
    the configured ones (1 where a category is not named)."""
    if config.pos_weight == "none":
        return np.ones(N_CATEGORIES, dtype=np.float32)
    if isinstance(config.pos_weight, dict):
        return np.asarray([float(config.pos_weight.get(k, 1.0)) for k in CATEGORY_KEYS], dtype=np.float32)
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    ratio = np.divide(negatives, positives, out=np.full(N_CATEGORIES, np.inf), where=positives > 0)
    return np.clip(ratio, 1.0, config.pos_weight_max).astype(np.float32)


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None) -> torch.Tensor:
    """Mean binary cross-entropy over examples and categories, a positive's term weighted per category:
    -[w_c * y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], in the numerically stable form."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pos_weight)


def load_classifier(path: str | os.PathLike[str], tokenizer: Any) -> PreTrainedModel:
    """The base checkpoint with a fresh 14-output head (or a trained classifier's own head)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        os.fspath(path),
        num_labels=N_CATEGORIES,
        problem_type="multi_label_classification",
        id2label=dict(enumerate(CATEGORY_KEYS)),
        label2id={key: i for i, key in enumerate(CATEGORY_KEYS)},
        dtype=torch.float32,
    )
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    text_config = model.config.get_text_config()
    if text_config is not model.config:
        text_config.pad_token_id = tokenizer.pad_token_id
    return model


def _trainer_class() -> type:
    from transformers import Trainer

    class MultiLabelTrainer(Trainer):
        """transformers' Trainer with the per-category positive weights in the loss."""

        loss_is_scaled_for_ga = False

        def __init__(self, *args: Any, pos_weight: np.ndarray, **kwargs: Any) -> None:
            import torch

            self.pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32)
            super().__init__(*args, **kwargs)

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            labels = inputs["labels"]
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
            if self.pos_weight.device != logits.device:
                self.pos_weight = self.pos_weight.to(logits.device)
            loss = bce_loss(logits, labels, self.pos_weight)
            return (loss, {"logits": logits}) if return_outputs else loss

    return MultiLabelTrainer


# --------------------------------------------------------------------------------------------------
# Thresholds


def _sigmoid(logits: FloatArray) -> FloatArray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def choose_thresholds(
    probs: FloatArray, truth: np.ndarray, *, strategy: str, target_recall: float = 0.9
) -> list[float]:
    """One threshold per category from a validation slice (probabilities and 0/1 truth, (n, 14)).

    "f1": the threshold with the highest F1 (ties: the one nearest 0.5), for a category whose scores
    rank its positives above its negatives on the slice (a one-sided Mann-Whitney U test, p < 0.05).
    Without that evidence of skill, the best F1 is "flag everything" (2p / (1 + p) at prevalence p) or a
    cut just above the lowest score, which would flag nearly every pair in production: such a category
    keeps 0.5. "recall": the highest threshold whose recall reaches target_recall; "fixed": 0.5. A category
    without a positive (or without a negative, for f1) in the slice keeps 0.5: nothing to tune it on.
    """
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import precision_recall_curve

    thresholds = []
    for c in range(N_CATEGORIES):
        y, p = truth[:, c].astype(bool), probs[:, c]
        if strategy == "fixed" or not y.any() or (strategy == "f1" and y.all()):
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        precision, recall, cuts = precision_recall_curve(y, p)
        # precision/recall have one more entry than cuts (the point recall = 0); drop it.
        precision, recall = precision[:-1], recall[:-1]
        if strategy == "recall":
            reaching = cuts[recall >= target_recall]
            thresholds.append(float(reaching.max()) if reaching.size else float(cuts.min()))
            continue
        if mannwhitneyu(p[y], p[~y], alternative="greater").pvalue >= SKILL_P_VALUE:
            thresholds.append(DEFAULT_THRESHOLD)
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        candidates = cuts[np.isclose(f1, f1.max())]
        thresholds.append(float(candidates[np.argmin(np.abs(candidates - DEFAULT_THRESHOLD))]))
    return thresholds


# --------------------------------------------------------------------------------------------------
# Evaluation


def _rate(numerator: float, denominator: float) -> float | None:
    return float(numerator / denominator) if denominator else None


def binary_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    truth, predicted = np.asarray(truth, dtype=bool), np.asarray(predicted, dtype=bool)
    tp = int((truth & predicted).sum())
    fp = int((~truth & predicted).sum())
    fn = int((truth & ~predicted).sum())
    tn = int((~truth & ~predicted).sum())
    precision, recall = _rate(tp, tp + fp), _rate(tp, tp + fn)
    f1 = None
    if precision is not None and recall is not None:
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    elif tp + fp + fn > 0:
        f1 = 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": _rate(tp + tn, tp + fp + fn + tn),
        "support": tp + fn,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def expected_calibration_error(
    probs: FloatArray, truth: np.ndarray, *, bins: int = CALIBRATION_BINS
) -> dict[str, Any]:
    """ECE over equal-width probability bins (Guo et al. 2017): sum over bins of |accuracy - confidence|
    weighted by the bin's share, here for each (example, category) probability of "in the category".
    Also the bins themselves, for the reliability diagram."""
    p = np.asarray(probs, dtype=np.float64).ravel()
    y = np.asarray(truth, dtype=np.float64).ravel()
    if p.size == 0:
        return {"ece": None, "bins": []}
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    ece = 0.0
    table = []
    for b in range(bins):
        in_bin = which == b
        n = int(in_bin.sum())
        if not n:
            table.append(
                {
                    "low": float(edges[b]),
                    "high": float(edges[b + 1]),
                    "n": 0,
                    "confidence": None,
                    "frequency": None,
                }
            )
            continue
        confidence, frequency = float(p[in_bin].mean()), float(y[in_bin].mean())
        ece += n / p.size * abs(frequency - confidence)
        table.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": n,
                "confidence": confidence,
                "frequency": frequency,
            }
        )
    return {"ece": float(ece), "bins": table}


def evaluate(probs: FloatArray, truth: np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    """Every test metric (see the module doc): `probs` and `truth` (each example's consensus, 0/1) are
    (n, 14), row for row."""
    from sklearn.metrics import f1_score, roc_auc_score

    truth = np.asarray(np.asarray(truth, dtype=np.float64) > 0.5, dtype=bool)
    cut = np.asarray(thresholds, dtype=np.float64)
    predicted = np.asarray(probs >= cut, dtype=bool)
    per_category = {}
    for c, key in enumerate(CATEGORY_KEYS):
        block = binary_metrics(truth[:, c], predicted[:, c])
        y = truth[:, c]
        block["auroc"] = float(roc_auc_score(y, probs[:, c])) if 0 < y.sum() < len(y) else None
        block["threshold"] = float(cut[c])
        per_category[key] = block
    flagged_truth = np.asarray(truth.any(axis=1), dtype=bool)
    flagged = binary_metrics(flagged_truth, np.asarray(predicted.any(axis=1), dtype=bool))
    flagged_default = binary_metrics(
        flagged_truth, np.asarray((probs >= DEFAULT_THRESHOLD).any(axis=1), dtype=bool)
    )
    flag_score = probs.max(axis=1) if len(probs) else np.zeros(0)
    flagged["auroc"] = (
        float(roc_auc_score(flagged_truth, flag_score))
        if 0 < flagged_truth.sum() < len(flagged_truth)
        else None
    )
    calibration = expected_calibration_error(probs, truth)
    return {
        "examples": len(truth),
        "per_category": per_category,
        "flagged": flagged,
        "flagged_at_0_5": flagged_default,
        # The binary safe/unsafe task against is_safe: rows are truth (unsafe, safe), columns flagged.
        "confusion": {
            "unsafe_flagged": flagged["tp"],
            "unsafe_not_flagged": flagged["fn"],
            "safe_flagged": flagged["fp"],
            "safe_not_flagged": flagged["tn"],
        },
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0))
        if len(truth)
        else None,
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0))
        if len(truth)
        else None,
        "ece": calibration["ece"],
        "calibration_bins": calibration["bins"],
        "thresholds": {key: float(cut[c]) for c, key in enumerate(CATEGORY_KEYS)},
    }


def headline_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    """The flat numbers a job page, the registry and a progress record show."""
    out: dict[str, float] = {}
    for name in ("precision", "recall", "f1", "accuracy", "auroc"):
        value = evaluation["flagged"].get(name)
        if value is not None:
            out[f"flagged_{name}"] = float(value)
    for name in ("micro_f1", "macro_f1", "ece"):
        if evaluation.get(name) is not None:
            out[name] = float(evaluation[name])
    out["examples"] = float(evaluation["examples"])
    return out


def plot_reliability(
    calibration_bins: list[dict[str, Any]], path: str | os.PathLike[str], *, ece: float | None
) -> str:
    """The reliability diagram: each probability bin's observed frequency against its mean confidence."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    filled = [b for b in calibration_bins if b["n"]]
    fig, ax = plt.subplots(figsize=(5.0, 5.0), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], linestyle="--", color="#868e96", linewidth=1, label="perfect calibration")
        if filled:
            centres = [(b["low"] + b["high"]) / 2 for b in filled]
            widths = [b["high"] - b["low"] for b in filled]
            ax.bar(centres, [b["frequency"] for b in filled], width=widths, alpha=0.6, color="#1c7ed6",
                   edgecolor="#1864ab", label="observed frequency")  # fmt: skip
            ax.plot([b["confidence"] for b in filled], [b["frequency"] for b in filled], "o", color="#c92a2a",
                    markersize=3, label="bin mean confidence")  # fmt: skip
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted probability of the category")
        ax.set_ylabel("share of pairs in the category")
        title = "Reliability on the test split"
        ax.set_title(title + (f" (ECE {ece:.3f})" if ece is not None else ""))
        ax.legend(loc="upper left", frameon=False)
        fig.tight_layout()
        fig.savefig(os.fspath(path), format="png")
    finally:
        plt.close(fig)
    return os.fspath(path)


def write_evaluation(evaluation: dict[str, Any], out_dir: str | os.PathLike[str]) -> tuple[list[str], str]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image = plot_reliability(evaluation["calibration_bins"], out / "reliability.png", ece=evaluation["ece"])
    eval_path = out / "eval.json"
    eval_path.write_text(json.dumps({"kind": "moderation", **evaluation}, indent=1), encoding="utf-8")
    return [image], str(eval_path)


# --------------------------------------------------------------------------------------------------
# Training


def train_moderation(
    config: ModerationConfig,
    *,
    train_files: Sequence[str | os.PathLike[str]],
    test_files: Sequence[str | os.PathLike[str]] = (),
    progress: Callable[[dict[str, Any]], None] | None = None,
    progress_file: str | os.PathLike[str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
) -> Any:
    """Train, choose thresholds, evaluate on the test split and save a moderation model; the TrainResult
    of run.train (the same contract: progress records, cancel with a checkpoint, resume)."""
    from transformers import set_seed

    from training.trainers.data import data_files
    from training.trainers.launch import find_checkpoint
    from training.trainers.modeling import load_tokenizer
    from training.trainers.run import TrainResult, _check_resume, training_arguments
    from training.trainers.trainer import NoFinalCheckpoint, ProgressReporter, StopOnRequest

    config.check_paths()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    checkpoint = find_checkpoint(out) if resume else None
    _check_resume(out, config, checkpoint)

    train_paths = data_files(train_files)
    test_paths = data_files(test_files) if test_files else []
    tokenizer = load_tokenizer(config.base_model)
    args = training_arguments(config, has_eval=False)
    args.label_names = ["labels"]
    if args.should_save:
        (out / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")

    cache_dir = str(out / "datasets-cache")
    test: Examples | None
    with args.main_process_first(desc="prepare data"):
        examples = aggregate(read_labels(train_paths, cache_dir=cache_dir), targets=config.targets)
        if test_paths:
            test = aggregate(read_labels(test_paths, cache_dir=cache_dir), targets="consensus")
        else:
            examples, test = split_examples(examples, config.eval_split, config.seed, salt="test")
        train_part, validation = split_examples(
            examples, config.validation_split, config.seed, salt="validation"
        )
        train_ds = tokenize(train_part, tokenizer, template=config.template, max_length=config.max_length)

    def encoded(part: Examples | None) -> Any:
        if part is None or not len(part):
            return None
        return tokenize(part, tokenizer, template=config.template, max_length=config.max_length)

    validation_ds, test_ds = encoded(validation), encoded(test)
    pos_weight = positive_weights(config, train_part.targets)
    model = load_classifier(config.base_model, tokenizer)
    reporter = ProgressReporter(
        progress=progress, progress_file=os.fspath(progress_file) if progress_file else None
    )
    reporter.extra = {
        "kind": config.kind,
        "train_pairs": len(train_part),
        "validation_pairs": len(validation) if validation is not None else 0,
        "test_pairs": len(test) if test is not None else 0,
        "resumed_from": checkpoint,
    }
    callbacks: list[Any] = [NoFinalCheckpoint(), reporter]
    stopper = StopOnRequest(should_stop, reporter) if should_stop is not None else None
    if stopper is not None:
        callbacks.append(stopper)
    pad_multiple = 8 if (args.bf16 or args.fp16) else None
    trainer = _trainer_class()(
        model=model,
        args=args,
        data_collator=Collator(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=pad_multiple),
        train_dataset=train_ds,
        processing_class=tokenizer,
        callbacks=callbacks,
        pos_weight=pos_weight,
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
        train_pairs=len(train_part),
        test_pairs=len(test) if test is not None else 0,
        metrics=dict(output.metrics),
        eval={},
        history=list(state.log_history),
        resumed_from=checkpoint,
    )
    if stopper is not None and stopper.stopped_at is not None:
        result.status = "cancelled"
        result.checkpoint = find_checkpoint(out)
        return result

    def predict(dataset: Any) -> tuple[FloatArray, np.ndarray]:
        """Probabilities and truth, row for row. The Trainer's evaluation order is not the dataset's (it
        groups by length, and shards across processes), so the truth comes back with the predictions."""
        prediction = trainer.predict(dataset, metric_key_prefix="test")
        logits, labels = prediction.predictions, prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        labels = labels[0] if isinstance(labels, tuple) else labels
        return _sigmoid(np.asarray(logits)), np.asarray(labels) > 0.5

    thresholds = [DEFAULT_THRESHOLD] * N_CATEGORIES
    if validation_ds is not None and config.threshold_strategy != "fixed":
        probs, truth = predict(validation_ds)
        thresholds = choose_thresholds(
            probs, truth, strategy=config.threshold_strategy, target_recall=config.target_recall
        )
    if test_ds is not None:
        probs, truth = predict(test_ds)
        if trainer.is_world_process_zero():
            evaluation = evaluate(probs, truth, thresholds)
            result.images, result.eval_path = write_evaluation(evaluation, out / "eval")
            result.eval = {
                "kind": "moderation",
                "metrics": headline_metrics(evaluation),
                "moderation": evaluation,
            }
            reporter.emit(
                state, "eval", final=True, **{f"test_{k}": v for k, v in headline_metrics(evaluation).items()}
            )

    artifact = out / "model"
    trainer.save_model(str(artifact))
    if trainer.is_world_process_zero():
        (artifact / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1), encoding="utf-8")
        meta = {
            "kind": "moderation",
            "categories": list(CATEGORY_KEYS),
            "template": config.template,
            "max_length": config.max_length,
            "thresholds": dict(zip(CATEGORY_KEYS, thresholds, strict=True)),
            "threshold_strategy": config.threshold_strategy,
            "default_threshold": DEFAULT_THRESHOLD,
        }
        (artifact / MODERATION_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
    result.artifact_path = str(artifact)
    return result


# --------------------------------------------------------------------------------------------------
# Scoring with a trained model


# A batch grows while its texts stay within this ratio of its shortest one's length: on a CPU, padding
# costs as much as real tokens and a batch larger than a few texts gains little (measured on MiniLM at
# 256 tokens, 2 threads: length-sorted batches of 8 score 80 pairs/s, of 32 only 70).
BATCH_LENGTH_RATIO = 1.3


def length_batches(
    lengths: Sequence[int], *, batch_size: int, ratio: float = BATCH_LENGTH_RATIO
) -> list[list[int]]:
    """Indices grouped into batches of texts of similar length: sorted by length, a batch closes at
    `batch_size` texts or when the next text is more than `ratio` times its shortest."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= batch_size or lengths[i] > ratio * max(1, lengths[current[0]])):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class ModerationScorer:
    """Scores (prompt, response) pairs with a trained moderation model directory.

    Inputs are grouped into batches of similar length (length_batches), so little is padding; everything
    runs under torch.inference_mode. On a CPU, `int8` quantizes the Linear layers' weights to int8 with
    dynamic activation scales (torch.ao.quantization.quantize_dynamic): about 2.8x the float32
    throughput of MiniLM at 256 tokens, at a small cost in the scores (bench/moderation_throughput.py
    measures both, and how often the decisions agree). That API is marked deprecated in favour of
    torchao, whose int8 path without torch.compile measured 137 pairs/s here against its 222: kept until
    torchao's eager CPU path catches up. One instance per process: loading is the expensive part.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str | None = None,
        threads: int | None = None,
        int8: bool = False,
    ) -> None:
        import torch

        from training.trainers.modeling import load_tokenizer

        self.path = Path(path)
        meta_path = self.path / MODERATION_FILE
        if not meta_path.is_file():
            raise ValueError(f"{self.path} is not a moderation model (no {MODERATION_FILE})")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if list(meta.get("categories", [])) != list(CATEGORY_KEYS):
            raise ValueError(f"{self.path}: its categories are not the 14 BeaverTails keys in order")
        self.template: str = meta["template"]
        self.max_length = int(meta["max_length"])
        self.thresholds = np.asarray([float(meta["thresholds"][k]) for k in CATEGORY_KEYS])
        self.default_threshold = float(meta.get("default_threshold", DEFAULT_THRESHOLD))
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = load_tokenizer(self.path)
        self.model = load_classifier(self.path, self.tokenizer)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device)  # type: ignore[arg-type]
        self.model.eval()
        self.precision = "float32"
        if int8 and self.device.type == "cpu":
            self.model = _quantized(self.model)
            self.precision = "int8"

    def probabilities(self, pairs: Sequence[tuple[str, str]], *, batch_size: int = 16) -> FloatArray:
        """(n, 14) probabilities, in the order given."""
        import torch

        texts = [self.template.format(prompt=p, response=r) for p, r in pairs]
        if not texts:
            return np.zeros((0, N_CATEGORIES))
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(texts), N_CATEGORIES), dtype=np.float64)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for chunk in length_batches([len(e) for e in encoded], batch_size=batch_size):
                longest = max(len(encoded[i]) for i in chunk)
                ids = torch.full((len(chunk), longest), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), longest), dtype=torch.long)
                for row, i in enumerate(chunk):
                    ids[row, : len(encoded[i])] = torch.as_tensor(encoded[i])
                    mask[row, : len(encoded[i])] = 1
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                out[chunk] = torch.sigmoid(logits.float()).cpu().numpy()
        return out

    def results(
        self, pairs: Sequence[tuple[str, str]], *, thresholds: str = "tuned", batch_size: int = 16
    ) -> list[dict[str, Any]]:
        """The hosted-moderation shape per pair: flagged, categories {key: bool}, category_scores."""
        probs = self.probabilities(pairs, batch_size=batch_size)
        cut = self.thresholds if thresholds == "tuned" else np.full(N_CATEGORIES, self.default_threshold)
        decided = probs >= cut
        return [
            {
                "flagged": bool(decided[i].any()),
                "categories": {k: bool(decided[i, c]) for c, k in enumerate(CATEGORY_KEYS)},
                "category_scores": {k: round(float(probs[i, c]), 6) for c, k in enumerate(CATEGORY_KEYS)},
            }
            for i in range(len(pairs))
        ]


def _quantized(model: Any) -> Any:
    import warnings

    import torch

    with warnings.catch_warnings():
        # The deprecation notice of torch.ao.quantization (see ModerationScorer for why it is used).
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
