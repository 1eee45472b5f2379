"""API authentication. Its own module: DRF imports it while rest_framework.views is still loading."""

from __future__ import annotations

from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from config.db import Statement, column_count, column_list, instance_from_row, run


@cache
def _token_statement() -> Statement:
    # Built on first use: the models' columns are known only once the apps are loaded.
    return Statement(
        "beaverlab_token_user",
        f"SELECT {column_list(Token, 't')}, {column_list(get_user_model(), 'u')} FROM authtoken_token t "
        f"JOIN {get_user_model()._meta.db_table} u ON u.id = t.user_id WHERE t.key = %s",
    )


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token check with the same answers; on PostgreSQL one prepared query, as it runs on every
    API call and the ORM's query building costs more than the query itself."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        if connection.vendor != "postgresql":
            return super().authenticate_credentials(key)
        rows = run(_token_statement(), [key])
        if not rows:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        token = instance_from_row(Token, rows[0])
        user = instance_from_row(get_user_model(), rows[0], column_count(Token))
        if not user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        token.user = user
        return user, token
