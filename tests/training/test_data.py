"""pku-saferlhf rows -> pairs -> tokens -> batches."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from tests.training.helpers import write_jsonl, write_parquet
from training.trainers.data import (
    PairwiseCollator,
    data_files,
    load_rows,
    split_by_prompt,
    to_pairs,
    tokenize_pairs,
)
from training.trainers.modeling import load_tokenizer

ROWS = [
    # better = 0 (helpful but unsafe), safer = 1
    {
        "prompt": "p0",
        "response_0": "A",
        "response_1": "B",
        "is_response_0_safe": False,
        "is_response_1_safe": True,
        "better_response_id": 0,
        "safer_response_id": 1,
    },
    # both unsafe; better = 1, safer = 0
    {
        "prompt": "p1",
        "response_0": "C",
        "response_1": "D",
        "is_response_0_safe": False,
        "is_response_1_safe": False,
        "better_response_id": 1,
        "safer_response_id": 0,
    },
]

SHARED_SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "pku_saferlhf_v0_sample_16.json"


def test_reward_pairs_follow_better_response_id(tmp_path):
    pairs = to_pairs(load_rows([write_jsonl(ROWS, tmp_path / "a.jsonl")]), "reward")
    assert pairs["higher"] == ["A", "D"]
    assert pairs["lower"] == ["B", "C"]
    assert pairs["higher_safe"] == [False, False]
    assert pairs["lower_safe"] == [True, False]


def test_cost_pairs_put_the_more_harmful_response_first(tmp_path):
    pairs = to_pairs(load_rows([write_parquet(ROWS, tmp_path / "a.parquet")]), "cost")
    # safer_response_id names the harmless one; the harmful one is the other.
    assert pairs["higher"] == ["A", "D"]
    assert pairs["lower"] == ["B", "C"]
    assert pairs["higher_safe"] == [False, False]
    assert pairs["lower_safe"] == [True, False]


def test_json_array_gzip_and_several_files(tmp_path):
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(ROWS), encoding="utf-8")
    gz = tmp_path / "rows.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in ROWS)
    rows = load_rows([array, gz, write_parquet(ROWS, tmp_path / "rows.parquet")])
    assert len(rows) == 6
    assert rows["prompt"] == ["p0", "p1"] * 3


@pytest.mark.skipif(not SHARED_SAMPLE.is_file(), reason="shared/data sample not present")
def test_the_real_pku_saferlhf_sample_loads():
    rows = load_rows([SHARED_SAMPLE])
    assert len(rows) == 16
    cost = to_pairs(rows, "cost")
    for row, pair in zip(rows, cost, strict=True):
        harmful = 1 - row["safer_response_id"]
        assert pair["higher"] == row[f"response_{harmful}"]
        assert pair["higher_safe"] == row[f"is_response_{harmful}_safe"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"better_response_id": 2}, "row 2: better_response_id must be 0 or 1, got 2"),
        ({"is_response_1_safe": None}, "row 2: is_response_1_safe must be true or false"),
        ({"response_0": None}, "row 2: response_0 must be a string"),
    ],
)
def test_bad_rows_are_named(tmp_path, change, message):
    path = write_jsonl([ROWS[0], ROWS[1] | change], tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match=message):
        load_rows([path])


def test_missing_columns_and_unknown_files(tmp_path):
    path = write_jsonl([{"prompt": "p", "response": "r", "is_safe": True}], tmp_path / "qa.jsonl")
    with pytest.raises(ValueError, match=r"missing column.*response_0.*pku-saferlhf"):
        load_rows([path])
    csv = tmp_path / "x.csv"
    csv.write_text("a,b\n")
    with pytest.raises(ValueError, match="unknown file type"):
        load_rows([csv])
    with pytest.raises(ValueError, match="no such file"):
        load_rows([tmp_path / "nope.jsonl"])
    with pytest.raises(ValueError, match="no data files"):
        load_rows([])


def test_folders_expand_to_their_data_files(tmp_path):
    write_jsonl(ROWS, tmp_path / "b.jsonl")
    write_parquet(ROWS, tmp_path / "a.parquet")
    (tmp_path / "README.md").write_text("not data")
    assert data_files([tmp_path]) == [str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        data_files([tmp_path / "empty"])


def test_split_by_prompt_is_deterministic_and_disjoint(tmp_path, synthetic_files):
    pairs = to_pairs(load_rows([synthetic_files["train"]]), "reward")
    train, test = split_by_prompt(pairs, 0.25, seed=7)
    assert test is not None
    assert set(train["prompt"]).isdisjoint(test["prompt"])
    assert len(train) + len(test) == len(pairs)
    assert 0.15 < len(test) / len(pairs) < 0.35
    _, again_test = split_by_prompt(pairs, 0.25, seed=7)
    assert again_test is not None and again_test["prompt"] == test["prompt"]
    assert split_by_prompt(pairs, 0.0, seed=7) == (pairs, None)


def test_tokenize_applies_the_template_truncates_and_signs(tmp_path, tiny_bert):
    tokenizer = load_tokenizer(tiny_bert)
    pairs = to_pairs(load_rows([write_jsonl(ROWS, tmp_path / "a.jsonl")]), "cost")
    ds = tokenize_pairs(pairs, tokenizer, template="USER: {prompt} ASSISTANT:{response}", max_length=64)
    first = ds[0]
    assert tokenizer.decode(first["higher_input_ids"], skip_special_tokens=True) == "user : p0 assistant : a"
    # s = +1 unsafe, -1 safe
    assert (first["higher_sign"], first["lower_sign"]) == (1.0, -1.0)
    assert first["length"] == max(len(first["higher_input_ids"]), len(first["lower_input_ids"]))
    short = tokenize_pairs(
        pairs, tokenizer, template="{prompt} " + "word " * 50 + "{response}", max_length=10
    )
    assert max(short["length"]) == 10


def test_collator_stacks_higher_then_lower_with_padding():
    collate = PairwiseCollator(pad_token_id=0)
    batch = collate(
        [
            {"higher_input_ids": [5, 6, 7], "lower_input_ids": [8], "higher_sign": 1.0, "lower_sign": -1.0},
            {"higher_input_ids": [9], "lower_input_ids": [10, 11], "higher_sign": -1.0, "lower_sign": 1.0},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [9, 0, 0], [8, 0, 0], [10, 11, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert batch["signs"].tolist() == [1.0, -1.0, -1.0, 1.0]
    one = {"higher_input_ids": [1], "lower_input_ids": [2], "higher_sign": 1.0, "lower_sign": 1.0}
    padded = PairwiseCollator(pad_token_id=0, pad_to_multiple_of=8)([one])
    assert padded["input_ids"].shape == torch.Size([2, 8])
