"""Project endpoints: create, list and read."""

from __future__ import annotations

from typing import Any, cast

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import DATA_ROLES, MANAGE_ROLES, get_project_for_user
from annotate.models import Project
from annotate.selectors import project_counts, projects_for_user
from annotate.services import project_create, project_settings_update, user_can_create_projects

# What only admins and researchers see: an annotator is told nothing about gold (how much there is, how
# often it comes, how they are judged), or they could work out which items are gold.
GOLD_FIELDS = ("gold_rate", "gold_min_items", "gold_accuracy_threshold")


def sees_gold(project: Project) -> bool:
    return getattr(project, "viewer_role", None) in DATA_ROLES


class ProjectOutput(serializers.ModelSerializer):
    role = serializers.CharField(source="viewer_role", read_only=True, allow_null=True)

    def to_representation(self, instance: Project) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not sees_gold(instance):
            for name in GOLD_FIELDS:
                data.pop(name, None)
        return data

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "guidelines",
            "guideline_version",
            "overlap_stage1",
            "overlap_stage2",
            "lease_seconds",
            "gold_rate",
            "gold_min_items",
            "gold_accuracy_threshold",
            "max_pairs_per_prompt",
            "created_at",
            "role",
        ]


class ProjectDetailOutput(ProjectOutput):
    counts = serializers.SerializerMethodField()

    class Meta(ProjectOutput.Meta):
        fields = [*ProjectOutput.Meta.fields, "counts"]

    def get_counts(self, project: Project) -> dict[str, int]:
        counts = project_counts(project)
        if not sees_gold(project):
            counts.pop("gold_items")
        return counts


class ProjectListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        slug = serializers.SlugField(max_length=64)
        name = serializers.CharField(max_length=200)
        guidelines = serializers.CharField(required=False, allow_blank=True)
        overlap_stage1 = serializers.IntegerField(required=False, min_value=1, max_value=50)
        overlap_stage2 = serializers.IntegerField(required=False, min_value=1, max_value=50)
        lease_seconds = serializers.IntegerField(required=False, min_value=30, max_value=86400)
        gold_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
        gold_min_items = serializers.IntegerField(required=False, min_value=1, max_value=1000)
        gold_accuracy_threshold = serializers.FloatField(required=False, min_value=0, max_value=1)
        max_pairs_per_prompt = serializers.IntegerField(required=False, min_value=1, allow_null=True)

    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request: Request) -> Response:
        projects = projects_for_user(request.user)
        return Response(ProjectOutput(projects, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: ProjectDetailOutput})
    def post(self, request: Request) -> Response:
        if not user_can_create_projects(request.user):
            raise PermissionDenied("Only admins and researchers can create projects.")
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(created_by=cast(User, request.user), **data.validated_data)
        project = get_project_for_user(request.user, project.slug)
        return Response(ProjectDetailOutput(project).data, status=status.HTTP_201_CREATED)


class ProjectDetailApi(APIView):
    class SettingsInput(serializers.Serializer):
        """Every field optional: a PATCH names only what it changes."""

        name = serializers.CharField(max_length=200, required=False)
        guidelines = serializers.CharField(
            required=False, allow_blank=True, help_text="Markdown; a changed text is a new guideline version."
        )
        overlap_stage1 = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=50,
            help_text="Workers per QA pair; the queue is recomputed.",
        )
        overlap_stage2 = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=50,
            help_text="Workers per response pair; the queue is recomputed.",
        )
        lease_seconds = serializers.IntegerField(required=False, min_value=30, max_value=86400)
        gold_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
        gold_min_items = serializers.IntegerField(required=False, min_value=1, max_value=1000)
        gold_accuracy_threshold = serializers.FloatField(required=False, min_value=0, max_value=1)
        max_pairs_per_prompt = serializers.IntegerField(required=False, min_value=1, allow_null=True)
        agreement_alert_threshold = serializers.FloatField(required=False, min_value=-1, max_value=1)
        annotators_may_moderate = serializers.BooleanField(required=False)

    @extend_schema(responses=ProjectDetailOutput)
    def get(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug)
        return Response(ProjectDetailOutput(project).data)

    @extend_schema(request=SettingsInput, responses=ProjectDetailOutput)
    def patch(self, request: Request, slug: str) -> Response:
        """Change settings (admins of the project): through the service that keeps the queue, the
        guideline version and the agreement report right, and audits each change."""
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        data = self.SettingsInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(self.SettingsInput().fields))
        if unknown:
            raise serializers.ValidationError(
                {name: ["Not a setting that can be changed."] for name in unknown}
            )
        project_settings_update(project=project, changes=dict(data.validated_data), actor=request.user)
        return Response(ProjectDetailOutput(get_project_for_user(request.user, slug)).data)
