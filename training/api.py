"""Training job endpoints: launch a job from a snapshot, list and read jobs, cancel, retry, and the
evaluation's files (score histogram images, eval.json).

Researchers and admins of the snapshot's project only: an annotator gets 403, a user outside the
project 404, an anonymous caller 401.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.access import DATA_ROLES, get_project_for_user
from training.access import get_model_for_user, get_snapshot_for_training, get_training_job_for_user
from training.models import JobKind, RegisteredModel, TrainingJob
from training.selectors import jobs_for_project, models_for_user
from training.services import model_activate, training_job_cancel, training_job_create, training_job_retry
from training.state import allowed_transitions


def _absolute(request: Request | None, path: str) -> str:
    return request.build_absolute_uri(path) if request is not None else path


def eval_file_entry(job: TrainingJob, name: str) -> dict[str, Any]:
    """The job's own record of an evaluation file: names are looked up, never turned into paths."""
    for entry in (job.eval_metrics or {}).get("files", []):
        if entry.get("name") == name:
            return dict(entry)
    raise Http404("No such file for this job.")


class SnapshotRefOutput(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.CharField(source="project.slug")
    format = serializers.CharField()
    created_at = serializers.DateTimeField()


class RegisteredModelOutput(serializers.ModelSerializer):
    class Meta:
        model = RegisteredModel
        fields = ["id", "kind", "path", "base_model", "snapshot", "config_hash", "eval_metrics", "created_at"]


class EvalFileOutput(serializers.Serializer):
    name = serializers.CharField()
    content_type = serializers.CharField()
    bytes = serializers.IntegerField(required=False)
    url = serializers.CharField()


class TrainingJobOutput(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    snapshot = SnapshotRefOutput()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    actions = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "url",
            "kind",
            "status",
            "progress",
            "snapshot",
            "config_hash",
            "attempts",
            "progress_timeout_s",
            "queued_at",
            "cancel_requested",
            "failure_reason",
            "worker_host",
            "heartbeat_at",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "actions",
        ]

    def get_url(self, job: TrainingJob) -> str:
        return _absolute(self.context.get("request"), reverse("training-api:job-detail", args=[job.pk]))

    @extend_schema_field(serializers.ListField(child=serializers.ChoiceField(choices=["cancel", "retry"])))
    def get_actions(self, job: TrainingJob) -> list[str]:
        """What a researcher may do now: cancel (queued, or running with no cancel pending), retry (failed
        or cancelled)."""
        actions = []
        if job.status in ("queued", "running") and not job.cancel_requested:
            actions.append("cancel")
        if "retry" in allowed_transitions(job):
            actions.append("retry")
        return actions


class TrainingJobDetailOutput(TrainingJobOutput):
    config = serializers.JSONField()
    metrics = serializers.JSONField(
        help_text="[{event: log|eval, step, epoch, loss, accuracy, ...}] over time."
    )
    eval = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField()
    artifact = serializers.SerializerMethodField()

    class Meta(TrainingJobOutput.Meta):
        fields = [
            *TrainingJobOutput.Meta.fields,
            "config",
            "output_dir",
            "metrics",
            "eval",
            "files",
            "log_tail",
            "artifact",
        ]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_eval(self, job: TrainingJob) -> dict[str, Any]:
        """Test-split metrics, score histograms for safe and unsafe responses, the training summary."""
        return {k: v for k, v in (job.eval_metrics or {}).items() if k != "files"}

    @extend_schema_field(EvalFileOutput(many=True))
    def get_files(self, job: TrainingJob) -> list[dict[str, Any]]:
        request = self.context.get("request")
        return [
            {
                "name": entry["name"],
                "content_type": entry.get("content_type", "application/octet-stream"),
                "bytes": entry.get("bytes"),
                "url": _absolute(request, reverse("training-api:job-file", args=[job.pk, entry["name"]])),
            }
            for entry in (job.eval_metrics or {}).get("files", [])
        ]

    @extend_schema_field(RegisteredModelOutput(allow_null=True))
    def get_artifact(self, job: TrainingJob) -> dict[str, Any] | None:
        model = getattr(job, "artifact", None) if job.status == "succeeded" else None
        return dict(RegisteredModelOutput(model).data) if model is not None else None


class TrainingJobListCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        snapshot = serializers.IntegerField(
            help_text="Id of a succeeded snapshot: pku-saferlhf for reward and cost; beavertails or raw for "
            "moderation; pku-saferlhf or beavertails (its prompts) for a ppo_lag policy."
        )
        kind = serializers.ChoiceField(choices=JobKind.choices)
        config = serializers.DictField(
            required=False,
            default=dict,
            help_text="Trainer settings (docs/training.md); unset ones take their defaults. "
            "base_model defaults to the bundled all-MiniLM-L6-v2 (a ppo_lag policy: the demo policy). A ppo_lag "
            "job names its score models by registry id, reward_model_id and cost_model_id (docs/ppo-lag.md).",
        )
        progress_timeout_s = serializers.IntegerField(
            required=False,
            allow_null=True,
            min_value=60,
            help_text="Stop the trainer with a checkpoint and fail the job when it reports no progress for "
            "this many seconds (default: the platform's TRAINING_PROGRESS_TIMEOUT_S, 30 minutes).",
        )

    @extend_schema(
        parameters=[OpenApiParameter("project", str, required=True, description="The project's slug.")],
        responses=TrainingJobOutput(many=True),
        description="A project's training jobs, newest first.",
    )
    def get(self, request: Request) -> Response:
        slug = request.query_params.get("project", "")
        if not slug:
            raise serializers.ValidationError({"project": ["Name the project: ?project=<slug>."]})
        project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
        jobs = list(jobs_for_project(project)[:200])
        return Response(TrainingJobOutput(jobs, many=True, context={"request": request}).data)

    @extend_schema(
        request=InputSerializer,
        responses={201: TrainingJobDetailOutput},
        description="Queue a training job on a GPU worker; poll its url for progress until it ends.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        snapshot = get_snapshot_for_training(request.user, data.validated_data["snapshot"])
        job = training_job_create(
            snapshot=snapshot,
            kind=data.validated_data["kind"],
            config=data.validated_data["config"],
            user=request.user,
            progress_timeout_s=data.validated_data.get("progress_timeout_s"),
        )
        job = get_training_job_for_user(request.user, job.pk)
        return Response(
            TrainingJobDetailOutput(job, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class TrainingJobDetailApi(APIView):
    @extend_schema(responses=TrainingJobDetailOutput)
    def get(self, request: Request, job_id: int) -> Response:
        job = get_training_job_for_user(request.user, job_id)
        return Response(TrainingJobDetailOutput(job, context={"request": request}).data)


class TrainingJobCancelApi(APIView):
    @extend_schema(
        request=None,
        responses=TrainingJobDetailOutput,
        description="Cancel: a queued job ends cancelled now; a running one stops at its next step with a "
        "checkpoint (cancel_requested until then). 400 for a job that already ended.",
    )
    def post(self, request: Request, job_id: int) -> Response:
        job = get_training_job_for_user(request.user, job_id)
        training_job_cancel(job=job)
        job = get_training_job_for_user(request.user, job_id)
        return Response(TrainingJobDetailOutput(job, context={"request": request}).data)


class TrainingJobRetryApi(APIView):
    @extend_schema(
        request=None,
        responses={202: TrainingJobDetailOutput},
        description="Queue a failed or cancelled job again; it resumes from its last checkpoint when it "
        "saved one. 400 for a job that is queued, running or succeeded.",
    )
    def post(self, request: Request, job_id: int) -> Response:
        job = get_training_job_for_user(request.user, job_id)
        training_job_retry(job=job)
        job = get_training_job_for_user(request.user, job_id)
        return Response(
            TrainingJobDetailOutput(job, context={"request": request}).data, status=status.HTTP_202_ACCEPTED
        )


class TrainingJobFileApi(APIView):
    @extend_schema(
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        description="One evaluation file of a succeeded job (score_histogram.png, eval.json).",
    )
    def get(self, request: Request, job_id: int, name: str) -> FileResponse:
        job = get_training_job_for_user(request.user, job_id)
        entry = eval_file_entry(job, name)
        return FileResponse(default_storage.open(entry["path"], "rb"), content_type=entry.get("content_type"))


# --- The model registry ---------------------------------------------------------------------------------


class RegistryModelOutput(serializers.ModelSerializer):
    """A registered model as the registry lists it, with where it is active."""

    project = serializers.CharField(source="snapshot.project.slug")
    job = serializers.IntegerField(source="job_id")
    metrics = serializers.SerializerMethodField()
    active = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["id", "kind", "base_model", "path", "snapshot", "project", "job", "config_hash", "metrics",
                  "active", "created_at"]  # fmt: skip

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_metrics(self, model: RegisteredModel) -> dict[str, Any]:
        """The test-split headline figures (the full evaluation is on the job)."""
        return dict((model.eval_metrics or {}).get("metrics", {}))

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_active(self, model: RegisteredModel) -> list[str]:
        """Where it is the active model: project slugs, and "platform"."""
        return [a.project.slug if a.project is not None else "platform" for a in model.activations.all()]


class ModelListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, required=False, enum=[k.value for k in JobKind]),
            OpenApiParameter(
                "project", str, required=False, description="Only models trained in this project."
            ),
        ],
        responses=RegistryModelOutput(many=True),
        description="Trained models of the projects where you are a researcher or admin, newest first.",
    )
    def get(self, request: Request) -> Response:
        models = models_for_user(request.user, kind=request.query_params.get("kind") or None)
        if slug := request.query_params.get("project"):
            project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
            models = models.filter(snapshot__project=project)
        models = models.prefetch_related("activations__project")[:200]
        return Response(RegistryModelOutput(models, many=True).data)


class ModelActivateApi(APIView):
    class InputSerializer(serializers.Serializer):
        project = serializers.SlugField(
            required=False,
            allow_null=True,
            help_text="Where it becomes active (default: the project it was trained in).",
        )
        platform = serializers.BooleanField(
            default=False,
            help_text="Make it the platform's model instead (superusers), for projects without their own.",
        )

    @extend_schema(request=InputSerializer, responses=RegistryModelOutput)
    def post(self, request: Request, model_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = get_model_for_user(request.user, model_id)
        if data.validated_data["platform"]:
            if not getattr(request.user, "is_superuser", False):
                raise PermissionDenied("Only a superuser may set the platform's model.")
            project = None
        else:
            slug = data.validated_data.get("project") or model.snapshot.project.slug
            project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
        model_activate(model=model, project=project, actor=request.user)
        model = (
            RegisteredModel.objects.prefetch_related("activations__project")
            .select_related("snapshot__project")
            .get(pk=model.pk)
        )
        return Response(RegistryModelOutput(model).data)
