"""A project's team over the API (admins of the project): who is in it with which role, what each member
did (labels, skips with reasons, accuracy on gold), adding or creating members, changing roles and
removing members (their live leases go back to the pool at once)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import MANAGE_ROLES, get_project_for_user
from annotate.exclusion import labels_exclude
from annotate.models import Membership, Role
from annotate.selectors import project_members
from annotate.services import (
    membership_pause,
    membership_remove,
    membership_resume,
    membership_set,
    user_create,
)


class GoldOutput(serializers.Serializer):
    answered = serializers.IntegerField()
    correct = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    flagged = serializers.BooleanField()


class ExcludedGoldOutput(serializers.Serializer):
    answered = serializers.IntegerField()
    correct = serializers.IntegerField()


class ExclusionOutput(serializers.Serializer):
    at = serializers.DateTimeField()
    reason = serializers.CharField()
    labels = serializers.IntegerField(help_text="Labels excluded from consensus.")
    items_reopened = serializers.IntegerField(help_text="Items whose consensus the exclusion undid.")
    gold = ExcludedGoldOutput(allow_null=True, help_text="Their gold answers when excluded (null: none).")


class MemberOutput(serializers.Serializer):
    username = serializers.CharField()
    email = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.choices)
    joined_at = serializers.DateTimeField()
    paused_at = serializers.DateTimeField(
        allow_null=True, help_text="Set while an admin has paused their labelling."
    )
    paused_reason = serializers.CharField(allow_blank=True)
    labels = serializers.DictField(child=serializers.IntegerField(), help_text="Submitted labels per stage.")
    skips = serializers.IntegerField()
    recent_skip_reasons = serializers.ListField(child=serializers.CharField())
    gold = GoldOutput(allow_null=True, help_text="Accuracy on gold items; null before the first one.")
    exclusions = ExclusionOutput(many=True, help_text="Times an admin excluded their labels, newest first.")


def _member(project: Any, username: str) -> dict[str, Any]:
    return next(m for m in project_members(project) if m["username"] == username)


class MemberListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        role = serializers.ChoiceField(choices=Role.choices)
        create_account = serializers.BooleanField(
            default=False,
            help_text="Create the account (the answer carries its password and API token, once); "
            "otherwise the user must exist.",
        )
        email = serializers.EmailField(required=False, allow_blank=True)

    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        return Response(MemberOutput(project_members(project), many=True).data)

    @extend_schema(request=InputSerializer, responses={201: MemberOutput})
    def post(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        username, role = data.validated_data["username"], data.validated_data["role"]
        secrets: dict[str, str] = {}
        with transaction.atomic():
            if data.validated_data["create_account"]:
                user, password, token = user_create(
                    username=username, role=role, project=project, email=data.validated_data.get("email", "")
                )
                secrets = {"password": password, "token": token}
            else:
                existing = User.objects.filter(username=username).first()
                if existing is None:
                    raise serializers.ValidationError(
                        {
                            "username": [
                                f"No user {username!r}; send create_account: true to make the account."
                            ]
                        }
                    )
                user = existing
                if Membership.objects.filter(project=project, user=user).exists():
                    raise serializers.ValidationError(
                        {"username": [f"{username} is already a member; change the role with PATCH."]}
                    )
                membership_set(project=project, user=user, role=role, actor=request.user)
        return Response(
            {**MemberOutput(_member(project, username)).data, **secrets}, status=status.HTTP_201_CREATED
        )


class MemberDetailApi(APIView):
    class InputSerializer(serializers.Serializer):
        role = serializers.ChoiceField(choices=Role.choices, required=False)
        paused = serializers.BooleanField(
            required=False, help_text="Pause (true) or resume (false) an annotator's labelling."
        )
        reason = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=500,
            help_text="Why they are paused (required to pause).",
        )

    class RemoveSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, max_length=500)

    def _membership(self, request: Request, slug: str, username: str) -> tuple[Any, Membership]:
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        membership = get_object_or_404(
            Membership.objects.select_related("user"), project=project, user__username=username
        )
        return project, membership

    @extend_schema(request=InputSerializer, responses=MemberOutput)
    def patch(self, request: Request, slug: str, username: str) -> Response:
        project, membership = self._membership(request, slug, username)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        if "role" not in changes and "paused" not in changes:
            raise serializers.ValidationError({"role": ["Send a role, or paused: true|false."]})
        with transaction.atomic():
            if "role" in changes:
                membership_set(
                    project=project, user=membership.user, role=changes["role"], actor=request.user
                )
            if changes.get("paused") is True:
                membership_pause(
                    project=project,
                    user=membership.user,
                    actor=request.user,
                    reason=changes.get("reason", ""),
                )
            elif changes.get("paused") is False:
                membership_resume(project=project, user=membership.user, actor=request.user)
        return Response(MemberOutput(_member(project, username)).data)

    @extend_schema(
        request=RemoveSerializer,
        responses={
            200: inline_serializer(
                "MemberRemoved",
                {"username": serializers.CharField(), "released_leases": serializers.IntegerField()},
            )
        },
    )
    def delete(self, request: Request, slug: str, username: str) -> Response:
        project, membership = self._membership(request, slug, username)
        data = self.RemoveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        released = membership_remove(
            project=project,
            user=membership.user,
            actor=request.user,
            reason=data.validated_data.get("reason", ""),
        )
        return Response({"username": username, "released_leases": released})


class MemberExcludeLabelsApi(APIView):
    """Exclude every label the member has given so far from consensus (a flagged worker, say)."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(
            max_length=2000, help_text="Why; kept with the record and in the audit log."
        )

    @extend_schema(
        request=InputSerializer,
        responses={200: MemberOutput},
        description="Their labels leave every consensus, agreement figure and later export; the items they "
        "labelled settle again from the other labels or go back to the queue. An annotator who is not "
        "paused is paused too. The answers are kept in the exclusion record; it cannot be undone, but "
        "labels given after the member is resumed count.",
    )
    def post(self, request: Request, slug: str, username: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        membership = get_object_or_404(
            Membership.objects.select_related("user"), project=project, user__username=username
        )
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        labels_exclude(
            project=project, user=membership.user, actor=request.user, reason=data.validated_data["reason"]
        )
        return Response(MemberOutput(_member(project, username)).data)
