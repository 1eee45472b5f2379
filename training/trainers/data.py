"""pku-saferlhf rows -> pairwise examples -> token ids -> padded batches.

Files are the platform's `pku-saferlhf` exports (JSON lines, a JSON array, or Parquet; `.gz` JSON too),
read with Hugging Face `datasets` from local paths. Each row becomes one pair (higher, lower): the
response the model should score higher first.

- reward: (better, worse) by `better_response_id`
- cost: (more harmful, more harmless) by `safer_response_id`

Every pair also carries each response's safety sign (+1 unsafe, -1 safe): the cost loss uses it, and
both models' evaluation splits their score histograms by it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch

TEXT_COLUMNS = ("prompt", "response_0", "response_1")
BOOL_COLUMNS = ("is_response_0_safe", "is_response_1_safe")
ID_COLUMNS = ("better_response_id", "safer_response_id")
REQUIRED_COLUMNS = TEXT_COLUMNS + BOOL_COLUMNS + ID_COLUMNS

PAIR_COLUMNS = ("prompt", "higher", "lower", "higher_safe", "lower_safe")
TOKEN_COLUMNS = ("higher_input_ids", "lower_input_ids", "higher_sign", "lower_sign", "length")


def builder_for(path: str) -> str:
    """The `datasets` builder that reads a data file, by its name."""
    name = path.lower()
    if name.endswith(".gz"):
        name = name[: -len(".gz")]
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "json"
    if name.endswith(".parquet"):
        return "parquet"
    raise ValueError(f"{path}: unknown file type (expected .jsonl, .json, .jsonl.gz or .parquet)")


def load_rows(files: Sequence[str | os.PathLike[str]], *, cache_dir: str | None = None) -> datasets.Dataset:
    """Read and check pku-saferlhf rows from local files; raise ValueError naming the file and row."""
    if not files:
        raise ValueError("no data files given")
    parts = []
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
        missing = [c for c in REQUIRED_COLUMNS if c not in part.column_names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (is it a pku-saferlhf export?)")
        part = part.select_columns(list(REQUIRED_COLUMNS))
        _check_rows(part, path)
        parts.append(part)
    rows = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(rows) == 0:
        raise ValueError(f"no rows in {', '.join(os.fspath(f) for f in files)}")
    return rows


def _check_rows(rows: datasets.Dataset, path: str) -> None:
    offset = 0
    for batch in rows.iter(batch_size=4096):
        n = len(batch["prompt"])
        for i in range(n):
            line = offset + i + 1
            for col in TEXT_COLUMNS:
                if not isinstance(batch[col][i], str):
                    raise ValueError(f"{path}: row {line}: {col} must be a string, got {batch[col][i]!r}")
            for col in BOOL_COLUMNS:
                if not isinstance(batch[col][i], bool):
                    raise ValueError(
                        f"{path}: row {line}: {col} must be true or false, got {batch[col][i]!r}"
                    )
            for col in ID_COLUMNS:
                value = batch[col][i]
                if isinstance(value, bool) or value not in (0, 1):
                    raise ValueError(f"{path}: row {line}: {col} must be 0 or 1, got {value!r}")
        offset += n


def to_pairs(rows: datasets.Dataset, kind: str) -> datasets.Dataset:
    """Map rows to (higher, lower) pairs with each response's safety."""
    if kind not in ("reward", "cost"):
        raise ValueError(f"unknown model kind {kind!r}")
    id_column = "better_response_id" if kind == "reward" else "safer_response_id"

    def convert(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in PAIR_COLUMNS}
        for i, prompt in enumerate(batch["prompt"]):
            responses = (batch["response_0"][i], batch["response_1"][i])
            safe = (batch["is_response_0_safe"][i], batch["is_response_1_safe"][i])
            chosen = int(batch[id_column][i])
            # reward: the better response scores higher; cost: the LESS safe one does.
            hi = chosen if kind == "reward" else 1 - chosen
            lo = 1 - hi
            out["prompt"].append(prompt)
            out["higher"].append(responses[hi])
            out["lower"].append(responses[lo])
            out["higher_safe"].append(bool(safe[hi]))
            out["lower_safe"].append(bool(safe[lo]))
        return out

    return rows.map(convert, batched=True, remove_columns=rows.column_names, desc=f"{kind} pairs")


def split_by_prompt(
    pairs: datasets.Dataset, test_fraction: float, seed: int
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """Hold out a share of the prompts (all their pairs) for evaluation, deterministically."""
    if test_fraction <= 0:
        return pairs, None

    def is_test(prompt: str) -> bool:
        digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction

    flags = [is_test(p) for p in pairs["prompt"]]
    test_idx = [i for i, f in enumerate(flags) if f]
    train_idx = [i for i, f in enumerate(flags) if not f]
    if not test_idx or not train_idx:
        return pairs, None
    return pairs.select(train_idx), pairs.select(test_idx)


def tokenize_pairs(
    pairs: datasets.Dataset, tokenizer: Any, *, template: str, max_length: int
) -> datasets.Dataset:
    """Token ids of both sides (templated, truncated to max_length), signs, and the pair's length."""

    def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        prompts = batch["prompt"]
        higher = [
            template.format(prompt=p, response=r) for p, r in zip(prompts, batch["higher"], strict=True)
        ]
        lower = [template.format(prompt=p, response=r) for p, r in zip(prompts, batch["lower"], strict=True)]
        hi_ids = tokenizer(higher, truncation=True, max_length=max_length)["input_ids"]
        lo_ids = tokenizer(lower, truncation=True, max_length=max_length)["input_ids"]
        return {
            "higher_input_ids": hi_ids,
            "lower_input_ids": lo_ids,
            "higher_sign": [-1.0 if s else 1.0 for s in batch["higher_safe"]],
            "lower_sign": [-1.0 if s else 1.0 for s in batch["lower_safe"]],
            # Both sides share one padded batch, so the longer side decides the cost.
            "length": [max(len(a), len(b)) for a, b in zip(hi_ids, lo_ids, strict=True)],
        }

    return pairs.map(encode, batched=True, remove_columns=pairs.column_names, desc="tokenize")


@dataclass
class PairwiseCollator:
    """Pads both sides of each pair into one batch: rows [0, B) are the higher side, [B, 2B) the lower.

    One forward pass over 2B sequences instead of two over B: the same work, one kernel launch sequence,
    and a single padded length.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [f["higher_input_ids"] for f in features] + [f["lower_input_ids"] for f in features]
        longest = max(len(s) for s in sequences)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        input_ids = torch.full((len(sequences), longest), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, seq in enumerate(sequences):
            input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
            attention_mask[row, : len(seq)] = 1
        signs = torch.tensor(
            [f["higher_sign"] for f in features] + [f["lower_sign"] for f in features], dtype=torch.float32
        )
        return {"input_ids": input_ids, "attention_mask": attention_mask, "signs": signs}


def data_files(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Expand folders into the data files they hold (sorted), keep files as given."""
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                str(p)
                for p in path.iterdir()
                if p.is_file()
                and p.name.lower().endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".parquet"))
            )
            if not found:
                raise ValueError(f"{path}: folder holds no .jsonl, .json or .parquet files")
            out.extend(found)
        else:
            out.append(str(path))
    return out
