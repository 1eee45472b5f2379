"""The train/test split: by prompt, deterministic from the seed.

A prompt goes to the test split when blake2b-64 of "<seed>:<prompt content sha256>", read as an
unsigned integer, is below test_ratio x 2^64. Every row of a prompt (its QA pairs, its response pairs,
its raw labels) therefore lands in the same split, so no prompt is in both; and since the key is the
prompt's text hash rather than a database id, the same seed puts the same prompt in the same split
in every project and every format (a reward model's test prompts stay unseen by a classifier trained
on another snapshot of the same prompts).
"""

from __future__ import annotations

import hashlib

TRAIN, TEST = "train", "test"
SPLITS = (TRAIN, TEST)
METHOD = "blake2b-64('<seed>:<prompt sha256>') < test_ratio * 2^64 -> test; else train"


class Splitter:
    def __init__(self, *, seed: int, test_ratio: float) -> None:
        self.prefix = f"{seed}:".encode()
        self.threshold = int(test_ratio * (1 << 64))
        # Rows come in id order, so the rows of one prompt usually follow each other.
        self._last: tuple[str, str] = ("", TRAIN)

    def split_of(self, prompt_hash: str) -> str:
        if prompt_hash == self._last[0]:
            return self._last[1]
        digest = hashlib.blake2b(self.prefix + prompt_hash.encode(), digest_size=8).digest()
        split = TEST if int.from_bytes(digest, "big") < self.threshold else TRAIN
        self._last = (prompt_hash, split)
        return split
