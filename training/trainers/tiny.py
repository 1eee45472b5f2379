"""Small causal language models built on the spot, from a word vocabulary or an existing tokenizer.

No model can be downloaded here, and none of the bundled checkpoints is a decoder, so the demo's policy,
the tests' tiny actors and the synthetic Safe RLHF benchmark build their own: a Llama-architecture
checkpoint of a few layers (transformers' LlamaForCausalLM, random weights, optionally warm-started on
texts with transformers' Trainer) saved with its tokenizer, which every trainer then loads by path like
any other checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = {"pad": "<pad>", "eos": "</s>", "bos": "<s>", "unk": "<unk>"}


def word_tokenizer(words: Sequence[str]) -> Any:
    """A whitespace word-level tokenizer over `words` plus <pad>, <s>, </s>, <unk> (tokenizers' WordLevel)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS.values())}
    for word in words:
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"]))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=SPECIAL_TOKENS["pad"],
        eos_token=SPECIAL_TOKENS["eos"],
        bos_token=SPECIAL_TOKENS["bos"],
        unk_token=SPECIAL_TOKENS["unk"],
    )


def bpe_tokenizer(texts: Sequence[str], *, vocab_size: int = 4000) -> Any:
    """A byte-level BPE tokenizer learnt from `texts` (tokenizers' BpeTrainer: a second for thousands of
    texts), with <pad>, <s> and </s>; any text encodes, and decoding gives the text back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    specials = [SPECIAL_TOKENS["pad"], SPECIAL_TOKENS["bos"], SPECIAL_TOKENS["eos"]]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(list(texts), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=specials[0], bos_token=specials[1], eos_token=specials[2]
    )


def build_small_policy(
    folder: str | os.PathLike[str],
    texts: Sequence[str],
    *,
    vocab_size: int = 4000,
    hidden: int = 128,
    layers: int = 2,
    epochs: float = 8.0,
    seed: int = 0,
) -> Path:
    """A small causal LM that has read `texts`: its own BPE vocabulary, a Llama of `layers` layers,
    warm-started on the texts. Written to a temporary folder and moved into place when complete, so a
    half-built policy is never taken for one."""
    import shutil

    out = Path(folder)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer = bpe_tokenizer(texts, vocab_size=vocab_size)
    save_causal_lm(partial, tokenizer, seed=seed, hidden=hidden, layers=layers, heads=max(1, hidden // 32))
    warm_start(partial, texts, epochs=epochs, max_length=256, seed=seed)
    shutil.rmtree(partial / ".warm-start", ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    return out


def llama_config(
    tokenizer: Any, *, hidden: int = 64, layers: int = 2, heads: int = 4, context: int = 512
) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )


def save_causal_lm(folder: str | os.PathLike[str], tokenizer: Any, *, seed: int = 0, **size: Any) -> Path:
    """A randomly initialised LlamaForCausalLM with `tokenizer`, saved as a checkpoint folder."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(tokenizer, **size))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def warm_start(
    folder: str | os.PathLike[str],
    texts: Sequence[str],
    *,
    epochs: float = 3.0,
    batch_size: int = 16,
    learning_rate: float = 3e-3,
    max_length: int = 128,
    seed: int = 0,
) -> None:
    """A little causal-LM training on `texts` (each ending in the end token), so that the model answers
    in the texts' words and knows when to stop; saved back into `folder`."""
    import datasets
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    rows = datasets.Dataset.from_dict({"text": [t + tokenizer.eos_token for t in texts]})
    tokenized = rows.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text"],
    )
    args = TrainingArguments(
        output_dir=os.fspath(Path(folder) / ".warm-start"),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        logging_strategy="no",
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=seed,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenized,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
    )
    trainer.train()
    model.save_pretrained(folder)
