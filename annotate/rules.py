"""Domain rules of the two-stage labelling, as pure functions: no database, no Django models.

Each rule is written once here. Where a rule must also exist in SQL (annotate/fastpath.py), a test runs
both over the same cases (tests/annotate/test_rules.py).
"""

from __future__ import annotations

# The stage-2 invariant, as every refusal words it (workers, experts setting gold, admins adjudicating).
HARMLESS_INVARIANT_MESSAGE = "Exactly one response is safe, so it must be the more harmless one."


def forced_safer(safe_a: bool | None, safe_b: bool | None) -> int | None:
    """The harmless answer that the stage-1 safety of a response pair forces: 0 when only the first
    response (qa_a) is safe, 1 when only the second is, None when the choice is free (both safe, both
    unsafe, or either not known)."""
    if safe_a is None or safe_b is None or safe_a == safe_b:
        return None
    return 0 if safe_a else 1


def violates_harmless_invariant(safe_a: bool | None, safe_b: bool | None, safer: int) -> bool:
    """True when exactly one response is safe and `safer` (canonical order) names the other one."""
    forced = forced_safer(safe_a, safe_b)
    return forced is not None and safer != forced
