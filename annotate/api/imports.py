"""Imports: upload a dataset file into a project (admins and researchers)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import DATA_ROLES, get_project_for_user
from annotate.importing import SUPPORTED_FORMATS, ImportIssue, ImportRejected, import_file


class ImportIssueOutput(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True, help_text="Line in the file (Parquet: row number + 1).")
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


# A Serializer cannot declare a field called `errors` (the name is taken), so the 400 body is built
# by hand and described to the schema with inline_serializer.
ImportRejectedOutput = inline_serializer(
    "ImportRejected",
    fields={
        "detail": serializers.CharField(),
        "errors": ImportIssueOutput(
            many=True, help_text="The first problems found (at most IMPORT_MAX_ERRORS)."
        ),
    },
)


class ImportOutput(serializers.Serializer):
    id = serializers.IntegerField(source="record.pk")
    filename = serializers.CharField(source="record.filename")
    format = serializers.CharField(source="record.format")
    status = serializers.CharField(source="record.status")
    created_at = serializers.DateTimeField(source="record.created_at")
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=(
            "rows, prompts_created, qa_pairs_created, response_pairs_created, work_items_created, "
            "gold_labels_created, skipped_duplicates"
        ),
    )


class ImportCreateApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    # Every view's nested serializer is called InputSerializer; a component name of its own keeps
    # drf-spectacular from merging them into one "Input" schema.
    @extend_schema_serializer(component_name="ImportInput")
    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text=".jsonl, .json (an array), .csv or .parquet, optionally .gz")
        format = serializers.ChoiceField(choices=SUPPORTED_FORMATS)

    @extend_schema(
        request={"multipart/form-data": InputSerializer},
        responses={201: ImportOutput, 400: ImportRejectedOutput},
        description="Import a file into the project as one transaction: all rows, or none and the errors.",
    )
    def post(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
        data = self.InputSerializer(data=request.data)
        if not data.is_valid():
            return _rejected(_input_issues(data.errors), "The upload is incomplete.")
        upload = data.validated_data["file"]
        try:
            result = import_file(
                project=project,
                file=upload,
                filename=upload.name or "upload",
                format=data.validated_data["format"],
                user=request.user,
            )
        except ImportRejected as rejected:
            return _rejected(rejected.errors, str(rejected))
        return Response(ImportOutput(result).data, status=status.HTTP_201_CREATED)


def _rejected(errors: list[ImportIssue], detail: str) -> Response:
    body = {"detail": detail, "errors": ImportIssueOutput(errors, many=True).data}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _input_issues(errors: Any) -> list[ImportIssue]:
    """Serializer errors in the same {line, field, message} shape as a refused file's."""
    return [
        {"line": None, "field": field, "message": str(message)}
        for field, messages in errors.items()
        for message in messages
    ]
