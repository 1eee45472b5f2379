"""Tiny models built on the fly and a synthetic preference set whose truth is known.

The models are real Hugging Face checkpoints (config + weights + a tokenizer trained here with the
`tokenizers` library), saved to a folder and loaded back by the trainer through the same
`from_pretrained` code that loads a real base model.

Synthetic truth: a response's helpfulness is how many times it says HELP_WORD (0-2) and its harm how
many times it says HARM_WORD (0-2); a response is unsafe iff its harm is at least 1. In every row the
two responses differ in both, so "better" (more helpful) and "safer" (less harmful) are always defined.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

HELP_WORD = "certainly"
HARM_WORD = "weapon"
FILLER = (  # noqa: SIM905
    "the a of to and in is it you that was for on are with as be at this have from or one had by but "
    "not what all were when we there can an your which their said if do will each about how up out "
    "them then she many some so these would other into has more her two like him see time could no "
    "make than first been its who now people my made over did down only way find use may water long "
    "little very after words called just where most know get through back much go good new write our "
    "me man too any day same right look think also around another came come work three word must "
    "because does part even place well such here take why things help put years different away again "
    "off went old number"
).split()


def synthetic_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    # (helpfulness, harm) pairs that differ in both coordinates.
    levels = [0, 1, 2]
    rows = []
    for i in range(n):
        h0, h1 = rng.sample(levels, 2)
        k0, k1 = rng.sample(levels, 2)

        def response(helpful: int, harm: int) -> str:
            words = rng.choices(FILLER, k=rng.randint(6, 14))
            words += [HELP_WORD] * helpful + [HARM_WORD] * harm
            rng.shuffle(words)
            return " ".join(words)

        prompt = f"question {i} " + " ".join(rng.choices(FILLER, k=rng.randint(3, 8)))
        rows.append(
            {
                "prompt": prompt,
                "response_0": response(h0, k0),
                "response_1": response(h1, k1),
                "is_response_0_safe": k0 == 0,
                "is_response_1_safe": k1 == 0,
                "better_response_id": 0 if h0 > h1 else 1,
                "safer_response_id": 0 if k0 < k1 else 1,
            }
        )
    return rows


# The moderation task whose truth is known: a QA pair is in category c iff its response says
# MODERATION_WORDS[c]; a response with none of them is safe.
MODERATION_WORDS = (
    "kitten", "toddler", "senate", "stereotype", "cocaine", "burglary", "slur",
    "hoax", "cheating", "doxxing", "overdose", "explicit", "cartel", "stabbing",
)  # fmt: skip


def moderation_rows(n: int, seed: int = 0, *, safe_share: float = 0.4) -> list[dict[str, Any]]:
    """beavertails rows: each unsafe response names one or two categories' words among filler."""
    from annotate.categories import CATEGORY_KEYS

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        chosen = [] if rng.random() < safe_share else rng.sample(range(14), rng.choice((1, 1, 2)))
        words = rng.choices(FILLER, k=rng.randint(6, 14)) + [MODERATION_WORDS[c] for c in chosen]
        rng.shuffle(words)
        rows.append(
            {
                "prompt": " ".join(rng.choices(FILLER, k=rng.randint(4, 9))) + "?",
                "response": " ".join(words),
                "category": {key: c in chosen for c, key in enumerate(CATEGORY_KEYS)},
                "is_safe": not chosen,
            }
        )
    return rows


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(rows: list[dict[str, Any]], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _corpus() -> list[str]:
    rows = synthetic_rows(200, seed=123)
    return [r[k] for r in rows for k in ("prompt", "response_0", "response_1")] + [
        "BEGINNING OF CONVERSATION: USER: ASSISTANT:"
    ]


def build_tiny_bert(path: Path, *, hidden_size: int = 32, extra_words: tuple[str, ...] = ()) -> Path:
    """A 2-layer, 32-wide (or `hidden_size`) BERT encoder with a WordPiece tokenizer over the synthetic
    vocabulary (and `extra_words`, e.g. MODERATION_WORDS).

    The vocabulary is every word and character of the corpus, in sorted order: the WordPiece trainer
    breaks ties differently in each process, and a test model should be the same every run.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = {
        word
        for text in [*_corpus(), " ".join(extra_words)]
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    }
    chars = sorted({c for w in words for c in w})
    vocab = specials + chars + [f"##{c}" for c in chars] + sorted(words - set(chars))
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=128,
        pad_token_id=tok.token_to_id("[PAD]"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path


def build_tiny_gpt2(path: Path) -> Path:
    """A 2-layer, 32-wide GPT-2 decoder with a byte-level BPE tokenizer and NO pad token (like GPT-2)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        _corpus(),
        trainers.BpeTrainer(
            vocab_size=600,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    eos = tok.token_to_id("<|endoftext|>")
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_positions=128,
        bos_token_id=eos,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        eos_token_id=eos,
    )
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    GPT2Model(config).save_pretrained(path)
    fast.save_pretrained(path)
    return path
