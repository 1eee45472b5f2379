"""The 14 BeaverTails harm categories: the keys, their order (category_id 0..13) and a one-line description.

A set of categories is stored as a 14-bit integer mask (bit i = category_id i), which keeps a stage-1
label one small row, makes "is safe" a comparison with zero, and lets agreement code work on integer
arrays instead of sets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class HarmCategory(NamedTuple):
    id: int
    key: str
    label: str
    description: str


HARM_CATEGORIES: tuple[HarmCategory, ...] = (
    HarmCategory(
        0,
        "animal_abuse",
        "Animal abuse",
        "Cruelty to animals, or help to harm, neglect or illegally trade them.",
    ),
    HarmCategory(
        1,
        "child_abuse",
        "Child abuse",
        "Physical, emotional or sexual abuse, exploitation or neglect of minors.",
    ),
    HarmCategory(
        2,
        "controversial_topics,politics",
        "Controversial topics, politics",
        "One-sided or inflammatory takes on contested political or social issues.",
    ),
    HarmCategory(
        3,
        "discrimination,stereotype,injustice",
        "Discrimination, stereotypes, injustice",
        "Unfair treatment or generalisations about people based on who they are.",
    ),
    HarmCategory(
        4,
        "drug_abuse,weapons,banned_substance",
        "Drugs, weapons, banned substances",
        "Misuse, making or acquiring drugs, weapons or other banned substances.",
    ),
    HarmCategory(
        5,
        "financial_crime,property_crime,theft",
        "Financial crime, property crime, theft",
        "Fraud, scams, money laundering, burglary, theft or damage to property.",
    ),
    HarmCategory(
        6,
        "hate_speech,offensive_language",
        "Hate speech, offensive language",
        "Hostile, demeaning or abusive language towards a person or group.",
    ),
    HarmCategory(
        7,
        "misinformation_regarding_ethics,laws_and_safety",
        "Misinformation on ethics, law, safety",
        "False or misleading claims about ethics, the law or safety.",
    ),
    HarmCategory(
        8,
        "non_violent_unethical_behavior",
        "Non-violent unethical behaviour",
        "Lying, cheating, manipulation or other wrongdoing that is not violent.",
    ),
    HarmCategory(
        9,
        "privacy_violation",
        "Privacy violation",
        "Exposing, collecting or tracking personal information without consent.",
    ),
    HarmCategory(
        10, "self_harm", "Self-harm", "Encouraging or instructing suicide, self-injury or eating disorders."
    ),
    HarmCategory(
        11,
        "sexually_explicit,adult_content",
        "Sexually explicit, adult content",
        "Explicit sexual content or sexual content involving non-consenting people.",
    ),
    HarmCategory(
        12,
        "terrorism,organized_crime",
        "Terrorism, organised crime",
        "Planning, supporting or glorifying terrorism or organised crime.",
    ),
    HarmCategory(
        13,
        "violence,aiding_and_abetting,incitement",
        "Violence, aiding and abetting, incitement",
        "Physical harm to people, or helping or inciting others to commit it.",
    ),
)

CATEGORY_KEYS: tuple[str, ...] = tuple(c.key for c in HARM_CATEGORIES)
# Two-word names in the same order, for screens too narrow for the full labels (a phone's stage 1).
SHORT_LABELS: tuple[str, ...] = (
    "Animal abuse",
    "Child abuse",
    "Politics",
    "Discrimination",
    "Drugs, weapons",
    "Financial crime",
    "Hate speech",
    "Misinformation",
    "Unethical acts",
    "Privacy",
    "Self-harm",
    "Sexual content",
    "Terrorism",
    "Violence",
)
CATEGORY_BY_KEY: dict[str, HarmCategory] = {c.key: c for c in HARM_CATEGORIES}
NUM_CATEGORIES = len(HARM_CATEGORIES)
ALL_CATEGORIES_MASK = (1 << NUM_CATEGORIES) - 1


class UnknownCategoryError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(f"unknown harm category {key!r}; the keys are: {', '.join(CATEGORY_KEYS)}")
        self.key = key


def mask_from_keys(keys: Iterable[str]) -> int:
    mask = 0
    for key in keys:
        category = CATEGORY_BY_KEY.get(key)
        if category is None:
            raise UnknownCategoryError(key)
        mask |= 1 << category.id
    return mask


def keys_from_mask(mask: int) -> list[str]:
    return [c.key for c in HARM_CATEGORIES if mask & (1 << c.id)]


def category_dict(mask: int) -> dict[str, bool]:
    """The BeaverTails `category` field: all 14 keys, in the released order."""
    return {c.key: bool(mask & (1 << c.id)) for c in HARM_CATEGORIES}
