"""The access helpers of training: a job (or the snapshot to launch one from) for a user.

The rules are the project's data rules (annotate.access): researchers and admins of the snapshot's
project may launch, watch, cancel and retry; an annotator of that project gets 403; anyone else 404,
so a job's existence is not disclosed.
"""

from __future__ import annotations

from django.http import Http404

from annotate.access import DATA_ROLES, AnyUser, get_project_for_user
from annotate.models import Project, Snapshot
from training.models import RegisteredModel, TrainingJob


def get_training_job_for_user(user: AnyUser, job_id: int) -> TrainingJob:
    """The job with its snapshot, project, creator and artifact; 404 outside the project, 403 for an
    annotator."""
    if not user.is_authenticated:
        raise Http404("No such training job.")
    job = (
        TrainingJob.objects.select_related("snapshot__project", "created_by", "artifact")
        .filter(pk=job_id)
        .first()
    )
    if job is None:
        raise Http404("No such training job.")
    project = get_project_for_user(user, job.snapshot.project.slug, roles=DATA_ROLES)
    job.snapshot.project = project  # carries viewer_role for the templates
    return job


def get_snapshot_for_training(user: AnyUser, snapshot_id: int, *, project: Project | None = None) -> Snapshot:
    """A snapshot to train on, for a researcher or admin of its project (404 / 403 as above). With
    `project`, a snapshot of another project is a 404 too."""
    if not user.is_authenticated:
        raise Http404("No such snapshot.")
    snapshot = Snapshot.objects.select_related("project").filter(pk=snapshot_id).first()
    if snapshot is None or (project is not None and snapshot.project_id != project.pk):
        raise Http404("No such snapshot.")
    snapshot.project = get_project_for_user(user, snapshot.project.slug, roles=DATA_ROLES)
    return snapshot


def get_model_for_user(user: AnyUser, model_id: int) -> RegisteredModel:
    """A registered model, for a researcher or admin of the project it was trained in (404 / 403)."""
    if not user.is_authenticated:
        raise Http404("No such model.")
    model = RegisteredModel.objects.select_related("snapshot__project", "job").filter(pk=model_id).first()
    if model is None:
        raise Http404("No such model.")
    model.snapshot.project = get_project_for_user(user, model.snapshot.project.slug, roles=DATA_ROLES)
    return model
