"""POST /api/v1/moderation/: score (prompt, response) pairs with the active QA-moderation model.

The answer has the shape clients know from hosted moderation endpoints: {"model": {...}, "results":
[{"flagged", "categories": {14 keys: bool}, "category_scores": {14 keys: float}}]}.

Who may call: with `project`, its researchers and admins (and its annotators where the project allows
it); without, the platform's model, for anyone who is a researcher or admin of some project. Token or
session auth; calls are rate-limited per token.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from annotate.access import DATA_ROLES, LABEL_ROLES, get_project_for_user
from annotate.categories import CATEGORY_KEYS
from annotate.models import Membership, Project
from moderation.services import ModelUnavailable, moderate
from training.models import JobKind
from training.selectors import active_model


class ModerationThrottle(SimpleRateThrottle):
    """MODERATION_RATE calls per token (per user for a session), counted in the shared cache."""

    scope = "moderation"

    def get_rate(self) -> str:
        return str(settings.MODERATION_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str:
        token = getattr(request.auth, "key", None)
        # The token is a credential: only a digest of it goes into the cache.
        ident = hashlib.sha256(token.encode()).hexdigest()[:32] if token else f"user-{request.user.pk}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class StrictCharField(serializers.CharField):
    """A string, and only a string: DRF's CharField would turn 3 or true into "3" and "True"."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))


def _text_field(*, required: bool = True) -> StrictCharField:
    return StrictCharField(
        required=required,
        allow_blank=True,
        trim_whitespace=False,
        max_length=settings.MODERATION_MAX_TEXT_CHARS,
    )


class PairInput(serializers.Serializer):
    prompt = _text_field()
    response = _text_field()


class ModerationInput(serializers.Serializer):
    prompt = _text_field(required=False)
    response = _text_field(required=False)
    items = PairInput(many=True, required=False, help_text="A batch of pairs (up to MODERATION_MAX_BATCH).")
    project = serializers.SlugField(required=False, help_text="Use this project's active model.")
    thresholds = serializers.ChoiceField(
        choices=["tuned", "default"],
        default="tuned",
        help_text="tuned: each category's threshold chosen on validation data; default: 0.5 for all.",
    )

    def validate(self, data: dict[str, Any]) -> dict[str, Any]:
        single = "prompt" in data or "response" in data
        if single and "items" in data:
            raise serializers.ValidationError(
                "Send one pair (prompt, response) or a batch (items), not both."
            )
        if single:
            missing = [name for name in ("prompt", "response") if name not in data]
            if missing:
                raise serializers.ValidationError({name: ["This field is required."] for name in missing})
            data["pairs"] = [(data["prompt"], data["response"])]
        elif "items" in data:
            if not data["items"]:
                raise serializers.ValidationError({"items": ["Send at least one pair."]})
            if len(data["items"]) > settings.MODERATION_MAX_BATCH:
                raise serializers.ValidationError(
                    {
                        "items": [
                            f"At most {settings.MODERATION_MAX_BATCH} pairs per call; got {len(data['items'])}."
                        ]
                    }
                )
            data["pairs"] = [(item["prompt"], item["response"]) for item in data["items"]]
        else:
            raise serializers.ValidationError("Send a pair (prompt, response) or a batch (items).")
        return data


def _scores_field() -> serializers.DictField:
    return serializers.DictField(
        child=serializers.FloatField(), help_text=f"One per key: {', '.join(CATEGORY_KEYS)}."
    )


class ResultOutput(serializers.Serializer):
    flagged = serializers.BooleanField()
    categories = serializers.DictField(child=serializers.BooleanField(), help_text="The 14 category keys.")
    category_scores = _scores_field()


class ModelRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    base_model = serializers.CharField()
    snapshot = serializers.IntegerField(source="snapshot_id")
    project = serializers.CharField(source="snapshot.project.slug")
    created_at = serializers.DateTimeField()
    thresholds = serializers.CharField()
    precision = serializers.CharField(help_text='"float32", or "int8" (the model served quantized on a CPU).')


class ModerationOutput(serializers.Serializer):
    model = ModelRefOutput()
    results = ResultOutput(many=True)


def _may_use_platform_model(user: Any) -> bool:
    return bool(
        getattr(user, "is_superuser", False)
        or Membership.objects.filter(user_id=user.pk, role__in=DATA_ROLES).exists()
    )


def _caller_project(request: Request, slug: str | None) -> Project | None:
    """The project whose model serves the call (None: the platform's), once the caller may use it."""
    if slug is None:
        if not _may_use_platform_model(request.user):
            raise PermissionDenied(
                'Name a project you work on ("project": slug): the platform\'s model is for researchers and admins.'
            )
        return None
    project = get_project_for_user(request.user, slug)
    role = project.viewer_role  # type: ignore[attr-defined]
    if role in DATA_ROLES:
        return project
    if role in LABEL_ROLES and project.annotators_may_moderate:
        return project
    raise PermissionDenied(f"Your role in this project ({role}) does not allow moderation calls.")


class ModerationApi(APIView):
    throttle_classes = [ModerationThrottle]

    @extend_schema(
        request=ModerationInput,
        responses={
            200: ModerationOutput,
            503: OpenApiResponse(description="No moderation model is active (or it cannot be loaded here)."),
        },
        examples=[
            OpenApiExample(
                "One pair", value={"prompt": "How do I pick a lock?", "response": "I can't help."}
            ),
            OpenApiExample(
                "A batch",
                value={"items": [{"prompt": "q1", "response": "a1"}, {"prompt": "q2", "response": "a2"}]},
            ),
        ],
        description=f"Score QA pairs for the 14 harm categories; up to {settings.MODERATION_MAX_BATCH} pairs per call.",
    )
    def post(self, request: Request) -> Response:
        data = ModerationInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = _caller_project(request, data.validated_data.get("project"))
        model = active_model(JobKind.MODERATION, project)
        if model is None:
            scope = f"project {project.slug} or the platform" if project else "the platform"
            return Response(
                {"detail": f"No moderation model is active for {scope}: train one and activate it "
                           "(POST /api/v1/models/{id}/activate/)."},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )  # fmt: skip
        try:
            results, precision = moderate(
                model=model, items=data.validated_data["pairs"], thresholds=data.validated_data["thresholds"]
            )
        except ModelUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        model.thresholds = data.validated_data["thresholds"]  # type: ignore[attr-defined]
        model.precision = precision  # type: ignore[attr-defined]
        return Response(ModerationOutput({"model": model, "results": results}).data)
