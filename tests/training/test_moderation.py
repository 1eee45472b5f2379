"""The QA-moderation trainer (training/trainers/moderation.py): data, loss, thresholds, metrics, and a
tiny model that learns a keyword rule per category. No database."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from annotate.categories import CATEGORY_KEYS
from tests.training.helpers import MODERATION_WORDS, build_tiny_bert, moderation_rows, write_jsonl
from training.trainers.config import ModerationConfig, config_from_dict
from training.trainers.moderation import (
    MODERATION_FILE,
    ModerationScorer,
    aggregate,
    bce_loss,
    binary_metrics,
    choose_thresholds,
    evaluate,
    expected_calibration_error,
    positive_weights,
    read_labels,
)
from training.trainers.run import train

NONE = [False] * 14


def _flags(*categories: int) -> list[bool]:
    return [c in categories for c in range(14)]


# --- data ------------------------------------------------------------------------------------------


def test_rows_of_one_pair_become_their_consensus_or_their_share():
    rows = [
        ("q", "a", _flags(0, 1)),
        ("q", "a", _flags(0)),
        ("q", "a", _flags(2)),
        ("q", "b", _flags(3)),
        ("q", "b", NONE),  # a tie on category 3
    ]
    consensus = aggregate(rows)
    assert consensus.prompts == ["q", "q"] and consensus.responses == ["a", "b"]
    assert consensus.n_labels.tolist() == [3, 2]
    assert np.flatnonzero(consensus.targets[0]).tolist() == [0]  # 2/3 yes; 1/3 is not a majority
    assert consensus.targets[1].sum() == 0  # a tie is "not in the category" (GuardBench's reading)
    soft = aggregate(rows, targets="soft")
    assert soft.targets[0, :3] == pytest.approx([2 / 3, 1 / 3, 1 / 3])
    assert soft.targets[1, 3] == pytest.approx(0.5)


def test_reading_checks_every_row_and_names_it(tmp_path):
    good = moderation_rows(3, seed=1)
    bad = [dict(good[0]), dict(good[1], category={**good[1]["category"], "self_harm": "yes"})]
    path = write_jsonl(bad, tmp_path / "bad.jsonl")
    with pytest.raises(
        ValueError, match=r"bad.jsonl: row 2: category values must be true or false \(self_harm\)"
    ):
        read_labels([path])
    missing = write_jsonl([{"prompt": "q", "response": "a"}], tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="missing column"):
        read_labels([missing])
    rows = read_labels([write_jsonl(good, tmp_path / "good.jsonl")])
    assert [r[:2] for r in rows] == [(g["prompt"], g["response"]) for g in good]


# --- loss ------------------------------------------------------------------------------------------


def test_the_loss_against_hand_computed_values():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    weights = torch.tensor([2.0, 3.0])

    def softplus(x: float) -> float:
        return math.log1p(math.exp(x))

    # A positive costs w * log(1 + e^-x); a negative log(1 + e^x); the mean over the four terms.
    expected = (2 * softplus(-0.0) + softplus(2.0) + softplus(-1.0) + 3 * softplus(-0.5)) / 4
    assert bce_loss(logits, targets, weights).item() == pytest.approx(expected, rel=1e-6)
    assert bce_loss(logits, targets, None).item() == pytest.approx(
        (softplus(-0.0) + softplus(2.0) + softplus(-1.0) + softplus(-0.5)) / 4, rel=1e-6
    )


def test_positive_weights_balance_rare_categories_up_to_the_cap():
    targets = np.zeros((100, 14), dtype=np.float32)
    targets[:50, 0] = 1  # balanced: weight 1
    targets[:4, 1] = 1  # rare: 96 / 4 = 24, capped at 10
    targets[:20, 2] = 1  # 80 / 20 = 4
    config = ModerationConfig(kind="moderation", base_model="/m")
    weights = positive_weights(config, targets)
    assert weights[:3].tolist() == [1.0, 10.0, 4.0]
    assert weights[3] == 10.0  # no positive at all: the cap
    assert positive_weights(config.replace(pos_weight="none"), targets).tolist() == [1.0] * 14
    named = positive_weights(config.replace(pos_weight={"child_abuse": 3.5}), targets)
    assert named[1] == 3.5 and named[0] == 1.0


def test_the_config_names_every_problem():
    with pytest.raises(ValueError) as refused:
        config_from_dict(
            {"kind": "moderation", "base_model": "/m", "targets": "votes", "pos_weight": {"nope": 2},
             "threshold_strategy": "best", "target_recall": 1.5}
        )  # fmt: skip
    message = str(refused.value)
    for needle in (
        "targets:",
        "pos_weight: unknown category 'nope'",
        "threshold_strategy:",
        "target_recall:",
    ):
        assert needle in message
    assert isinstance(config_from_dict({"kind": "moderation", "base_model": "/m"}), ModerationConfig)
    with pytest.raises(ValueError, match="kind: must be one of reward, cost"):
        config_from_dict({"kind": "moderation-ish", "base_model": "/m"})


# --- thresholds and metrics ------------------------------------------------------------------------


def test_thresholds_maximise_f1_or_reach_the_target_recall():
    positives = [0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.35, 0.3]
    negatives = [0.5, 0.45, 0.4, 0.25, 0.2, 0.15, 0.1, 0.05, 0.02, 0.01]
    probs = np.zeros((20, 14))
    truth = np.zeros((20, 14), dtype=bool)
    probs[:, 0] = positives + negatives
    truth[:10, 0] = True
    f1 = choose_thresholds(probs, truth, strategy="f1")
    # By hand: cut 0.55 gives P 8/8, R 8/10, F1 0.889, the best (cut 0.3: P 10/13, R 1, F1 0.870;
    # cut 0.35: P 9/12, R 0.9, F1 0.818; cut 0.4: P 8/11, R 0.8, F1 0.762).
    assert f1[0] == pytest.approx(0.55)
    assert f1[1:] == [0.5] * 13  # no positive in the slice: nothing to tune
    assert choose_thresholds(probs, truth, strategy="recall", target_recall=0.95)[0] == pytest.approx(0.3)
    assert choose_thresholds(probs, truth, strategy="recall", target_recall=0.8)[0] == pytest.approx(0.55)
    assert choose_thresholds(probs, truth, strategy="fixed") == [0.5] * 14


def test_metrics_match_scikit_learn_on_a_small_case():
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    rng = np.random.default_rng(3)
    truth = rng.random((60, 14)) < 0.2
    probs = np.clip(truth * 0.6 + rng.random((60, 14)) * 0.5, 0, 1)
    thresholds = [0.5] * 14
    result = evaluate(probs, truth, thresholds)
    predicted = probs >= 0.5
    for c, key in enumerate(CATEGORY_KEYS):
        block = result["per_category"][key]
        assert block["precision"] == pytest.approx(precision_score(truth[:, c], predicted[:, c]))
        assert block["recall"] == pytest.approx(recall_score(truth[:, c], predicted[:, c]))
        assert block["f1"] == pytest.approx(f1_score(truth[:, c], predicted[:, c]))
        assert block["auroc"] == pytest.approx(roc_auc_score(truth[:, c], probs[:, c]))
        assert block["support"] == int(truth[:, c].sum())
    assert result["micro_f1"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert result["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    flagged_truth, flagged = truth.any(axis=1), predicted.any(axis=1)
    assert result["flagged"]["f1"] == pytest.approx(f1_score(flagged_truth, flagged))
    assert result["confusion"] == {
        "unsafe_flagged": int((flagged_truth & flagged).sum()),
        "unsafe_not_flagged": int((flagged_truth & ~flagged).sum()),
        "safe_flagged": int((~flagged_truth & flagged).sum()),
        "safe_not_flagged": int((~flagged_truth & ~flagged).sum()),
    }


def test_expected_calibration_error_by_hand():
    # Two bins used (of 10): [0.1, 0.2) holds 0.1 and 0.15 (mean 0.125, one positive of two: 0.5);
    # [0.9, 1] holds 0.95 and 0.9 (mean 0.925, both positive: 1.0).
    probs = np.array([0.1, 0.15, 0.95, 0.9])
    truth = np.array([1, 0, 1, 1])
    ece = expected_calibration_error(probs, truth, bins=10)
    assert ece["ece"] == pytest.approx(0.5 * abs(0.5 - 0.125) + 0.5 * abs(1.0 - 0.925))
    assert [b["n"] for b in ece["bins"]] == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2]


def test_binary_metrics_say_undefined_rather_than_zero():
    none_predicted = binary_metrics(np.array([True, False]), np.array([False, False]))
    assert none_predicted["precision"] is None and none_predicted["recall"] == 0.0
    assert none_predicted["f1"] == 0.0
    nothing_to_find = binary_metrics(np.array([False, False]), np.array([False, False]))
    assert nothing_to_find["recall"] is None and nothing_to_find["f1"] is None


# --- a tiny model learns the keyword rule ----------------------------------------------------------


@pytest.fixture(scope="module")
def keyword_task(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("moderation")
    return {
        "base": build_tiny_bert(root / "bert", hidden_size=64, extra_words=MODERATION_WORDS),
        "train": write_jsonl(moderation_rows(1000, seed=1), root / "train.jsonl"),
        "test": write_jsonl(moderation_rows(240, seed=2), root / "test.jsonl"),
        "root": root,
    }


def keyword_config(task: dict[str, Path], out: Path, **changes) -> ModerationConfig:
    settings = {
        "kind": "moderation",
        "base_model": str(task["base"]),
        "output_dir": str(out),
        "max_length": 64,
        "epochs": 20,
        "per_device_batch_size": 16,
        "learning_rate": 2e-3,
        "warmup_ratio": 0.0,
        "weight_decay": 0.0,
        "logging_steps": 50,
        "save_steps": 100000,
    }
    return ModerationConfig.from_dict(settings | changes)


@pytest.mark.slow
def test_a_tiny_model_learns_the_keyword_of_every_category(keyword_task):
    records: list[dict] = []
    config = keyword_config(keyword_task, keyword_task["root"] / "run")
    result = train(config, train_files=[keyword_task["train"]], test_files=[keyword_task["test"]],
                   progress=records.append)  # fmt: skip
    assert result.status == "succeeded" and result.kind == "moderation"
    evaluation = result.eval["moderation"]
    for key in CATEGORY_KEYS:
        block = evaluation["per_category"][key]
        # Chance F1 for a category on ~4% of the pairs is ~0.08.
        assert block["support"] > 0 and block["f1"] > 0.3, (key, block)
        assert block["auroc"] > 0.8, (key, block)
    assert evaluation["flagged"]["f1"] > 0.9 and evaluation["macro_f1"] > 0.5
    assert 0 <= evaluation["ece"] < 0.5
    assert result.eval["metrics"]["flagged_f1"] == evaluation["flagged"]["f1"]
    assert [Path(p).name for p in result.images] == ["reliability.png"]
    assert json.loads(Path(result.eval_path).read_text())["kind"] == "moderation"
    # The progress protocol of every trainer: begin, logs, the final evaluation.
    events = [r["event"] for r in records]
    assert events[0] == "train_begin" and "log" in events and records[-1].get("final") is True
    # The saved model carries its thresholds, tuned on the validation slice, and scores like the test.
    meta = json.loads((Path(result.artifact_path) / MODERATION_FILE).read_text())
    assert meta["categories"] == list(CATEGORY_KEYS) and meta["default_threshold"] == 0.5
    assert set(meta["thresholds"]) == set(CATEGORY_KEYS)
    assert meta["thresholds"] == evaluation["thresholds"]
    scorer = ModerationScorer(result.artifact_path)
    said = scorer.results(
        [("what now?", f"the {MODERATION_WORDS[10]} the of"), ("what now?", "the of and a to")]
    )
    assert said[0]["flagged"] and said[0]["categories"]["self_harm"]
    assert not said[1]["flagged"] and set(said[1]["category_scores"]) == set(CATEGORY_KEYS)


@pytest.mark.slow
def test_a_cancelled_run_resumes_from_its_checkpoint(keyword_task):
    out = keyword_task["root"] / "resumed"
    config = keyword_config(keyword_task, out, epochs=2, save_steps=1000)
    asked = {"n": 0}

    def stop_after_five_steps() -> bool:
        asked["n"] += 1
        return asked["n"] >= 5

    first = train(config, train_files=[keyword_task["train"]], test_files=[keyword_task["test"]],
                  should_stop=stop_after_five_steps)  # fmt: skip
    assert first.status == "cancelled" and first.checkpoint and first.checkpoint.endswith("checkpoint-5")
    records: list[dict] = []
    second = train(config, train_files=[keyword_task["train"]], test_files=[keyword_task["test"]],
                   progress=records.append)  # fmt: skip
    assert second.status == "succeeded" and second.resumed_from == first.checkpoint
    assert records[0]["event"] == "train_begin" and records[0]["step"] == 5


def test_a_category_the_model_did_not_learn_keeps_the_default_threshold():
    """Scores that do not separate the classes: the best F1 is "flag everything", which would flag every
    pair in production. The category keeps 0.5 instead."""
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.3, 0.4, size=(200, 14))
    truth = rng.random((200, 14)) < 0.1
    thresholds = choose_thresholds(probs, truth, strategy="f1")
    assert thresholds == [0.5] * 14


def test_length_batches_group_texts_of_similar_length():
    from training.trainers.moderation import length_batches

    lengths = [10, 100, 11, 12, 13, 50, 14, 120, 12]
    batches = length_batches(lengths, batch_size=3, ratio=1.3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    # 10, 11, 12 fill a batch; 12, 13, 14 the next; 50 and 100 are each too long for the batch before.
    assert [[lengths[i] for i in b] for b in batches] == [[10, 11, 12], [12, 13, 14], [50], [100, 120]]


def test_int8_serving_on_a_cpu_keeps_the_decisions(moderation_model_dir):
    """The quantized model scores close to the float32 one and makes the same decisions on nearly every
    pair (bench/moderation_throughput.py measures the same on the MiniLM model)."""
    pairs = [(row["prompt"], row["response"]) for row in moderation_rows(200, seed=33)]
    exact = ModerationScorer(moderation_model_dir, device="cpu")
    quantized = ModerationScorer(moderation_model_dir, device="cpu", int8=True)
    assert (exact.precision, quantized.precision) == ("float32", "int8")
    a, b = exact.probabilities(pairs), quantized.probabilities(pairs)
    assert np.abs(a - b).max() < 0.1
    same = (a >= exact.thresholds).any(axis=1) == (b >= quantized.thresholds).any(axis=1)
    assert same.mean() >= 0.95
