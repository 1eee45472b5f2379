"""Agreement statistics and the adjudication queue.

`GET .../agreement/` serves the stored report (docs/agreement-report.md); it never computes one. When
there is none yet it queues the computation and answers 202. `GET/POST .../adjudications/` is the
admins' queue of items whose labels did not settle, and their decisions.

The routes are here, included once from annotate/api/urls.py.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import DATA_ROLES, MANAGE_ROLES, get_project_for_user
from annotate.agreement_report import agreement_recompute_request, latest_report
from annotate.assignment import known_safety
from annotate.categories import keys_from_mask
from annotate.consensus import (
    AdjudicationCase,
    adjudication_decide,
    adjudication_item,
    adjudication_queue,
    adjudication_queue_count,
)
from annotate.models import Adjudication, AgreementReport, Role, Stage

_TRUE = {"1", "true", "yes"}


class ReportOutput(serializers.Serializer):
    computed_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField()
    stage1_labels = serializers.IntegerField()
    stage2_labels = serializers.IntegerField()
    payload = serializers.JSONField(help_text="Every statistic: see docs/agreement-report.md.")


def _report(report: AgreementReport | None) -> dict[str, Any] | None:
    return None if report is None else dict(ReportOutput(report).data)


class AgreementApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "refresh",
                bool,
                description="Admins: queue a recomputation (answers 202 with the current report).",
            )
        ],
        responses={
            200: ReportOutput,
            202: inline_serializer(
                "AgreementQueued",
                {
                    "detail": serializers.CharField(),
                    "queued": serializers.BooleanField(help_text="False when one was queued moments ago."),
                    "latest": ReportOutput(allow_null=True),
                },
            ),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
        refresh = str(request.query_params.get("refresh", "")).lower() in _TRUE
        if refresh and project.viewer_role != Role.ADMIN:  # type: ignore[attr-defined]
            raise PermissionDenied("Only project admins can ask for a recomputation.")
        report = latest_report(project)
        if report is not None and not refresh:
            return Response(_report(report))
        queued = agreement_recompute_request(project=project)
        detail = (
            "Agreement statistics are being computed"
            if report is None
            else "Agreement statistics are being recomputed"
        )
        return Response(
            {"detail": detail, "queued": queued, "latest": _report(report)}, status=status.HTTP_202_ACCEPTED
        )


class _ResponseOutput(serializers.Serializer):
    id = serializers.IntegerField(
        help_text="0 = the pair's first response (canonical order), 1 = the second."
    )
    text = serializers.CharField()
    is_safe = serializers.BooleanField(allow_null=True)


class AdjudicationCaseOutput(serializers.Serializer):
    work_item = serializers.IntegerField()
    stage = serializers.IntegerField()
    is_gold = serializers.BooleanField()
    prompt = serializers.CharField()
    response = serializers.CharField(required=False, help_text="Stage 1: the answer to classify.")
    responses = _ResponseOutput(many=True, required=False, help_text="Stage 2: the two responses.")
    votes = serializers.DictField(
        help_text=(
            "Stage 1: {labels, is_safe: {safe, unsafe}, categories: {key: n}}. "
            "Stage 2: {labels, better: [n0, n1], safer: [n0, n1]}."
        )
    )


class AdjudicationOutput(serializers.Serializer):
    work_item = serializers.IntegerField(source="work_item_id")
    decided_by = serializers.CharField(source="decided_by.username", allow_null=True)
    decided_at = serializers.DateTimeField()
    categories = serializers.SerializerMethodField()
    is_safe = serializers.BooleanField(allow_null=True)
    better_response_id = serializers.IntegerField(source="better", allow_null=True)
    safer_response_id = serializers.IntegerField(source="safer", allow_null=True)
    note = serializers.CharField()

    def get_categories(self, adjudication: Adjudication) -> list[str] | None:
        return None if adjudication.categories is None else keys_from_mask(adjudication.categories)


def _cases(cases: list[AdjudicationCase]) -> list[dict[str, Any]]:
    pairs = [case.item.response_pair for case in cases if case.item.response_pair is not None]
    safety = known_safety([qa for pair in pairs for qa in (pair.qa_a_id, pair.qa_b_id)]) if pairs else {}
    out = []
    for case in cases:
        item = case.item
        entry: dict[str, Any] = {
            "work_item": item.pk,
            "stage": item.stage,
            "is_gold": item.is_gold,
            "votes": case.votes,
        }
        if item.stage == Stage.CLASSIFY and item.qa_pair is not None:
            entry.update(prompt=item.qa_pair.prompt.text, response=item.qa_pair.response)
        elif item.response_pair is not None:
            pair = item.response_pair
            entry.update(
                prompt=pair.prompt.text,
                responses=[
                    {"id": side, "text": qa.response, "is_safe": safety.get(qa.pk)}
                    for side, qa in enumerate((pair.qa_a, pair.qa_b))
                ],
            )
        out.append(entry)
    return out


class AdjudicationListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        work_item = serializers.IntegerField()
        categories = serializers.ListField(
            child=serializers.CharField(),
            required=False,
            help_text="Stage 1: harm category keys (empty = safe).",
        )
        better_response_id = serializers.IntegerField(
            required=False, help_text="Stage 2, canonical order: 0 = the pair's first response."
        )
        safer_response_id = serializers.IntegerField(required=False)
        note = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    @extend_schema(
        parameters=[
            OpenApiParameter("stage", int, enum=[1, 2], description="Only this stage's items."),
            OpenApiParameter("limit", int, description="At most this many items (default 50, at most 500)."),
        ],
        responses={
            200: inline_serializer(
                "AdjudicationQueue",
                {"count": serializers.IntegerField(), "results": AdjudicationCaseOutput(many=True)},
            )
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        params = self._QueryParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        stage, limit = params.validated_data.get("stage"), params.validated_data["limit"]
        cases = adjudication_queue(project=project, stage=stage, limit=limit)
        return Response(
            {
                "count": adjudication_queue_count(project=project, stage=stage),
                "results": AdjudicationCaseOutput(_cases(cases), many=True).data,
            }
        )

    class _QueryParams(serializers.Serializer):
        stage = serializers.ChoiceField(choices=Stage.values, required=False)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: AdjudicationOutput,
            404: OpenApiResponse(description="No such item in this project."),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        item = adjudication_item(project=project, work_item_id=values["work_item"])
        adjudication = adjudication_decide(
            item=item,
            admin=request.user,
            categories=values.get("categories"),
            better=values.get("better_response_id"),
            safer=values.get("safer_response_id"),
            note=values.get("note", ""),
        )
        return Response(AdjudicationOutput(adjudication).data, status=status.HTTP_201_CREATED)


urlpatterns = [
    path("projects/<slug:slug>/agreement/", AgreementApi.as_view(), name="project-agreement"),
    path(
        "projects/<slug:slug>/adjudications/",
        AdjudicationListCreateApi.as_view(),
        name="project-adjudications",
    ),
]
