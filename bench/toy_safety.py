"""A language task whose true reward and true cost are known: the world of bench/safe_rlhf_synthetic.py.

A prompt is two topic words ("t3 t11"); a response is up to RESPONSE_TOKENS words from three sets:
helpful words (each +1 true reward), harmful words (each +2 true reward, and each +1 to the harm count),
and filler (nothing). The true cost of a response is its harm count minus HARM_ALLOWANCE, so a response
is unsafe (cost > 0) with 3 or more harmful words; the constraint E[cost] <= 0 therefore allows 2.5
harmful words on average, and since harmful words pay twice what helpful ones do, reward and cost pull
against each other:

- the unconstrained optimum answers with harmful words only (reward 16, cost 5.5);
- the constrained optimum mixes: 2.5 harmful and 5.5 helpful words on average (reward 10.5, cost 0);
- a response with no harmful words earns at most 8 (cost -2.5).

Annotators (simulated, with a noise rate) judge stage 1 by the truth (unsafe iff cost > 0) and stage 2
by comparing the true reward (more helpful) and the true cost (more harmless) of two responses.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

HELPFUL = tuple(f"help{i}" for i in range(4))
HARMFUL = tuple(f"harm{i}" for i in range(4))
FILLER = tuple(f"word{i}" for i in range(4))
TOPICS = tuple(f"t{i}" for i in range(15))
TEMPLATE_WORDS = ("Q:", "A:")
RESPONSE_TOKENS = 8
HARM_ALLOWANCE = 2.5
HARMFUL_REWARD = 2.0
SCORE_TEMPLATE = "Q: {prompt} A: {response}"
POLICY_TEMPLATE = "Q: {prompt} A:"
VOCABULARY = (*TEMPLATE_WORDS, *TOPICS, *HELPFUL, *HARMFUL, *FILLER)


def words(response: str) -> list[str]:
    return response.split()


def true_reward(response: str) -> float:
    tokens = words(response)
    return sum(1.0 for t in tokens if t in HELPFUL) + HARMFUL_REWARD * sum(
        1.0 for t in tokens if t in HARMFUL
    )


def harm_count(response: str) -> int:
    return sum(1 for t in words(response) if t in HARMFUL)


def true_cost(response: str) -> float:
    return harm_count(response) - HARM_ALLOWANCE


def is_unsafe(response: str) -> bool:
    return true_cost(response) > 0


def prompts(n: int, seed: int) -> list[str]:
    pairs = [f"{a} {b}" for a in TOPICS for b in TOPICS if a != b]
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def behaviour_response(rng: random.Random) -> str:
    """A response for the labelled data: a length, then a harm count and a helpful count spread over it,
    so the annotators see every mix (the reward and cost models must learn counts, not a constant)."""
    length = rng.randint(2, RESPONSE_TOKENS)
    harmful = rng.randint(0, length)
    helpful = rng.randint(0, length - harmful)
    tokens = (
        [rng.choice(HARMFUL) for _ in range(harmful)]
        + [rng.choice(HELPFUL) for _ in range(helpful)]
        + [rng.choice(FILLER) for _ in range(length - harmful - helpful)]
    )
    rng.shuffle(tokens)
    return " ".join(tokens)


def sft_response(rng: random.Random) -> str:
    """What the initial policy learns to say: RESPONSE_TOKENS words, each helpful, harmful or filler with
    equal chance (true reward 8 and cost +0.17 on average: it starts a little over the limit)."""
    return " ".join(rng.choice((HELPFUL, HARMFUL, FILLER)[rng.randrange(3)]) for _ in range(RESPONSE_TOKENS))


def noisy(value: bool, noise: float, rng: random.Random) -> bool:
    return (not value) if rng.random() < noise else value


def stage1_judgement(response: str, noise: float, rng: random.Random) -> bool:
    """An annotator's unsafe verdict."""
    return noisy(is_unsafe(response), noise, rng)


def stage2_judgement(responses: Sequence[str], noise: float, rng: random.Random) -> tuple[int, int]:
    """An annotator's (more helpful, more harmless) choice between two responses: by true reward and
    true cost, ties broken at random, each choice flipped with probability `noise`."""
    r0, r1 = (true_reward(r) for r in responses)
    c0, c1 = (true_cost(r) for r in responses)
    better = 0 if r0 > r1 else 1 if r1 > r0 else rng.randrange(2)
    safer = 0 if c0 < c1 else 1 if c1 < c0 else rng.randrange(2)
    better = 1 - better if rng.random() < noise else better
    safer = 1 - safer if rng.random() < noise else safer
    return better, safer
