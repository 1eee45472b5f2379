"""Loading a base checkpoint as a one-score sequence model, and scoring with a trained one.

`AutoModelForSequenceClassification(num_labels=1)` works for any local Hugging Face checkpoint: an
encoder (BERT, MiniLM) scores from its pooled output; a decoder (GPT-2, Llama, Qwen) scores at the last
token that is not padding, found through `config.pad_token_id`, which is therefore always set.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from training.trainers.config import CONFIG_FILE, DEFAULT_TEMPLATE

log = logging.getLogger(__name__)


def load_tokenizer(path: str | os.PathLike[str]) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(os.fspath(path))
    if tokenizer.pad_token is None:
        # A decoder's pad token is only ever masked out, so its end-of-sequence token can serve. The
        # model then scores at the last token that is not EOS: our template appends none.
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        elif tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})
    return tokenizer


def load_model(
    path: str | os.PathLike[str], tokenizer: Any, *, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """The base checkpoint with a fresh one-output score head (or a trained one's own head).

    Weights load in float32 whatever the checkpoint stores: mixed precision keeps float32 master
    weights and casts on the fly, as the Trainer's bf16/fp16 flags expect.
    """
    model = AutoModelForSequenceClassification.from_pretrained(os.fspath(path), num_labels=1, dtype=dtype)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    text_config = model.config.get_text_config()
    if text_config is not model.config:
        text_config.pad_token_id = tokenizer.pad_token_id
    # One score per sequence, and no `labels` in our batches: keep transformers from guessing a loss.
    model.config.problem_type = "regression"
    return model


class Scorer:
    """Scores (prompt, response) pairs with a trained reward or cost model directory."""

    def __init__(self, path: str | os.PathLike[str], *, device: str | torch.device | None = None) -> None:
        self.path = Path(path)
        meta: dict[str, Any] = {}
        if (self.path / CONFIG_FILE).is_file():
            meta = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        self.kind: str | None = meta.get("kind")
        self.template: str = meta.get("template", DEFAULT_TEMPLATE)
        self.max_length: int = int(meta.get("max_length", 512))
        self.tokenizer = load_tokenizer(self.path)
        self.model = load_model(self.path, self.tokenizer)
        self.device = torch.device(device) if device is not None else _default_device()
        self.model.to(self.device)  # type: ignore[arg-type]  # transformers' stub wants a dtype here
        self.model.eval()

    @torch.inference_mode()
    def score(self, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 32) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        texts = [self.template.format(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)]
        scores: list[float] = []
        for start in range(0, len(texts), batch_size):
            enc = self.tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            logits = self.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            scores.extend(logits.squeeze(-1).float().cpu().tolist())
        return scores


def _default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
