"""Dataset snapshots: create one (queued, built by a worker), list them, read one, download its files.

Only the project's researchers and admins may create or download snapshots: an annotator gets 403, a
user outside the project 404, an anonymous caller 401.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import DATA_ROLES, get_project_for_user
from annotate.exporting import snapshot_create
from annotate.exporting.filters import FILTER_KEYS
from annotate.exporting.selectors import get_snapshot_for_user, snapshots_for_project
from annotate.exporting.storage import open_file
from annotate.models import ExportFormat, FileFormat, Snapshot, SnapshotStatus


class SnapshotFileOutput(serializers.Serializer):
    name = serializers.CharField()
    config = serializers.CharField(required=False)
    split = serializers.CharField(required=False)
    rows = serializers.IntegerField(required=False)
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    content_type = serializers.CharField()
    url = serializers.SerializerMethodField()

    def get_url(self, file: dict[str, Any]) -> str:
        snapshot: Snapshot = self.context["snapshot"]
        path = reverse("annotate-api:export-file", kwargs={"snapshot_id": snapshot.pk, "name": file["name"]})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class SnapshotOutput(serializers.ModelSerializer):
    project = serializers.CharField(source="project.slug")
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    url = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()

    class Meta:
        model = Snapshot
        fields = [
            "id",
            "project",
            "url",
            "status",
            "progress",
            "format",
            "file_format",
            "compress",
            "filters",
            "test_ratio",
            "seed",
            "license",
            "row_counts",
            "files",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_url(self, snapshot: Snapshot) -> str:
        path = reverse("annotate-api:export-detail", kwargs={"snapshot_id": snapshot.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(SnapshotFileOutput(many=True))
    def get_files(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        """The files with their download URLs; empty until the snapshot succeeded."""
        if snapshot.status != SnapshotStatus.SUCCEEDED:
            return []
        context = {**self.context, "snapshot": snapshot}
        return list(SnapshotFileOutput(snapshot.files, many=True, context=context).data)


class SnapshotDetailOutput(SnapshotOutput):
    manifest = serializers.SerializerMethodField()
    agreement = serializers.JSONField(read_only=True)

    class Meta(SnapshotOutput.Meta):
        fields = [*SnapshotOutput.Meta.fields, "agreement", "manifest"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_manifest(self, snapshot: Snapshot) -> dict[str, Any] | None:
        """The snapshot's manifest.json (null until it succeeded)."""
        if snapshot.status != SnapshotStatus.SUCCEEDED:
            return None
        entry = _file_entry(snapshot, "manifest.json")
        with open_file(entry["path"]) as file:
            return dict(json.load(file))


class ExportListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=ExportFormat.values)
        file_format = serializers.ChoiceField(choices=FileFormat.values, default=FileFormat.JSONL)
        compress = serializers.BooleanField(default=False, help_text="gzip the JSON lines files")
        filters = serializers.DictField(
            required=False, default=dict, help_text=f"Any of: {', '.join(FILTER_KEYS)} (docs/exports.md)."
        )
        test_ratio = serializers.FloatField(default=0.1, min_value=0, max_value=0.999999)
        seed = serializers.IntegerField(default=42, min_value=0, max_value=2**31 - 1)
        license = serializers.CharField(required=False, max_length=100)

    @extend_schema(responses=SnapshotOutput(many=True), description="The project's snapshots, newest first.")
    def get(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
        snapshots = snapshots_for_project(project)
        for snapshot in snapshots:
            snapshot.project = project
        return Response(SnapshotOutput(snapshots, many=True, context={"request": request}).data)

    @extend_schema(
        request=InputSerializer,
        responses={202: SnapshotOutput},
        description="Queue a snapshot; poll its url until status is succeeded (or failed).",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        snapshot = snapshot_create(project=project, user=request.user, **data.validated_data)
        return Response(
            SnapshotOutput(snapshot, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class ExportDetailApi(APIView):
    @extend_schema(responses=SnapshotDetailOutput)
    def get(self, request: Request, snapshot_id: int) -> Response:
        snapshot = get_snapshot_for_user(request.user, snapshot_id)
        return Response(SnapshotDetailOutput(snapshot, context={"request": request}).data)


class ExportFileApi(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        description="One file of a succeeded snapshot, streamed as an attachment.",
    )
    def get(self, request: Request, snapshot_id: int, name: str) -> FileResponse:
        snapshot = get_snapshot_for_user(request.user, snapshot_id)
        entry = _file_entry(snapshot, name)
        return FileResponse(
            open_file(entry["path"]),
            as_attachment=True,
            filename=entry["name"],
            content_type=entry["content_type"],
        )


def _file_entry(snapshot: Snapshot, name: str) -> dict[str, Any]:
    """The snapshot's own record of a file: names are looked up, never turned into paths."""
    if snapshot.status == SnapshotStatus.SUCCEEDED:
        for entry in snapshot.files:
            if entry.get("name") == name:
                return dict(entry)
    raise Http404("No such file in this snapshot.")
