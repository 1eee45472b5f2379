"""The worker loop: next task, submit, skip. Each endpoint is one small view calling a service."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import LABEL_ROLES, get_assignment_for_worker, get_project_for_user
from annotate.assignment import assignment_claim, assignment_skip, label_submit_for_worker
from annotate.categories import CATEGORY_KEYS
from annotate.models import Stage
from annotate.selectors import assignment_view


class AssignmentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    stage = serializers.IntegerField()
    status = serializers.CharField()
    leased_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    item = serializers.DictField(
        help_text=(
            "Stage 1: {prompt, response}. "
            "Stage 2: {prompt, responses: [{id, text, is_safe}] in display order}."
        )
    )


# One bound instance serves every response: building a serializer deep-copies its fields, which cost
# more than the rest of a worker-loop call. to_representation keeps no state between calls.
_ASSIGNMENT_OUTPUT = AssignmentOutput()


def _assignment_response(assignment: Any, code: int = status.HTTP_200_OK) -> Response:
    return Response(_ASSIGNMENT_OUTPUT.to_representation(assignment_view(assignment)), status=code)


class NextTaskApi(APIView):
    class InputSerializer(serializers.Serializer):
        stage = serializers.ChoiceField(choices=Stage.values)

    @extend_schema(
        request=InputSerializer,
        responses={200: AssignmentOutput, 204: OpenApiResponse(description="Nothing left for this worker.")},
    )
    def post(self, request: Request, slug: str) -> Response:
        project = get_project_for_user(request.user, slug, roles=LABEL_ROLES)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment = assignment_claim(
            project=project, worker=request.user, stage=data.validated_data["stage"]
        )
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        # The claim only ever returns the requesting worker's own lease, so it is shown as it is,
        # without a second read through get_assignment_for_worker.
        return _assignment_response(assignment)


class SubmitApi(APIView):
    @extend_schema(
        request=inline_serializer(
            "SubmitInput",
            {
                "categories": serializers.ListField(
                    child=serializers.ChoiceField(choices=CATEGORY_KEYS),
                    required=False,
                    help_text="Stage 1: the harm categories the QA pair falls in (an empty list: safe).",
                ),
                "better_response_id": serializers.IntegerField(
                    min_value=0,
                    max_value=1,
                    required=False,
                    help_text="Stage 2: the more helpful response, as shown.",
                ),
                "safer_response_id": serializers.IntegerField(
                    min_value=0,
                    max_value=1,
                    required=False,
                    help_text="Stage 2: the more harmless response, as shown.",
                ),
            },
        ),
        responses={200: AssignmentOutput},
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        # The submitted assignment comes back with what it shows, so it is shown without a reload.
        submitted = label_submit_for_worker(
            worker=request.user, assignment_id=assignment_id, payload=dict(request.data)
        )
        return _assignment_response(submitted)


class SkipApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=500)

    @extend_schema(request=InputSerializer, responses={200: AssignmentOutput})
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = get_assignment_for_worker(request.user, assignment_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        assignment_skip(assignment=assignment, reason=data.validated_data["reason"])
        return _assignment_response(get_assignment_for_worker(request.user, assignment_id))
