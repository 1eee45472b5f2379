"""Each user's own API token: see it, rotate it (the old key stops working at once), revoke it.

One token per user (DRF's authtoken); rotating replaces the row, so no window exists in which both keys
work. Each change is in the audit log (project-less: a token is the user's, not a project's), with the
key's last four characters only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotate.audit import audit_record
from annotate.models import AuditAction


@dataclass(frozen=True)
class TokenStatus:
    key: str | None
    created: datetime | None

    @property
    def exists(self) -> bool:
        return self.key is not None

    @property
    def last4(self) -> str | None:
        return self.key[-4:] if self.key else None


def token_status(user: Any) -> TokenStatus:
    token = Token.objects.filter(user=user).first()
    return TokenStatus(token.key, token.created) if token else TokenStatus(None, None)


def _last4(token: Token | None) -> dict[str, str] | None:
    """What the audit log keeps of a key (read before the row is deleted: deleting clears its key)."""
    return {"last4": token.key[-4:]} if token is not None else None


def _lock_token(user: Any) -> Token | None:
    """The user's token, read under a lock on the user's row. Locking the token row alone is not enough:
    with no token there is nothing to lock, and a waiter that finds its token deleted would create a
    second one; either way two rotations at once broke the one-token-per-user constraint."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
    return Token.objects.filter(user=user).first()


def _audit(user: Any, actor: Any, action: str, old: Any, new: Any) -> None:
    # Project-less: a token is the user's own. The actor is the user unless an admin acted for them.
    audit_record(
        project=None,
        actor=actor if actor is not None else user,
        action=action,
        target=f"user:{user.pk}",
        old=old,
        new=new,
    )


@transaction.atomic
def token_rotate(*, user: Any, actor: Any = None) -> str:
    """A new key for `user`, replacing the old one (which stops working when this commits)."""
    old = _lock_token(user)
    was = _last4(old)
    if old is not None:
        old.delete()
    new = Token.objects.create(user=user)
    _audit(user, actor, AuditAction.TOKEN_ROTATE, was, _last4(new))
    return new.key


@transaction.atomic
def token_revoke(*, user: Any, actor: Any = None) -> bool:
    """Delete the user's key; False when they had none."""
    old = _lock_token(user)
    if old is None:
        return False
    was = _last4(old)
    old.delete()
    _audit(user, actor, AuditAction.TOKEN_REVOKE, was, None)
    return True
