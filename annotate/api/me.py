"""The caller's own account over the API: who they are, their projects, and their API token."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.models import Membership, Role
from annotate.tokens import token_revoke, token_rotate, token_status


class MembershipOutput(serializers.Serializer):
    project = serializers.CharField(help_text="The project's slug.")
    role = serializers.ChoiceField(choices=Role.choices)
    paused = serializers.BooleanField(help_text="An admin paused their labelling in this project.")


class TokenOutput(serializers.Serializer):
    exists = serializers.BooleanField()
    created = serializers.DateTimeField(allow_null=True)
    last4 = serializers.CharField(allow_null=True, help_text="The key's last four characters.")


class MeOutput(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    memberships = MembershipOutput(many=True)
    token = TokenOutput()


class NewTokenOutput(serializers.Serializer):
    token = serializers.CharField(help_text="The new key, shown this once.")
    created = serializers.DateTimeField()


def _me(user: Any) -> dict[str, Any]:
    status_now = token_status(user)
    memberships = Membership.objects.filter(user=user).select_related("project").order_by("project__slug")
    return {
        "username": user.get_username(),
        "email": user.email,
        "memberships": [
            {"project": m.project.slug, "role": m.role, "paused": m.paused_at is not None}
            for m in memberships
        ],
        "token": {"exists": status_now.exists, "created": status_now.created, "last4": status_now.last4},
    }


class MeApi(APIView):
    @extend_schema(
        responses=MeOutput, description="The caller's account, projects and token (never its key)."
    )
    def get(self, request: Request) -> Response:
        return Response(MeOutput(_me(request.user)).data)


class MeTokenApi(APIView):
    @extend_schema(
        request=None,
        responses={201: NewTokenOutput},
        description="Replace the caller's API token with a new one, returned once. The old key stops "
        "working at once: a call made with it, this one included, has used it for the last time.",
    )
    def post(self, request: Request) -> Response:
        key = token_rotate(user=request.user)
        created = token_status(request.user).created
        return Response(
            NewTokenOutput({"token": key, "created": created}).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        request=None, responses={204: None}, description="Revoke the caller's API token (204 even if none)."
    )
    def delete(self, request: Request) -> Response:
        token_revoke(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
