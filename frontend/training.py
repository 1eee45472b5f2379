"""Training pages for researchers and admins: the project's jobs and trainable snapshots, the launch
form, and a job's page (live progress, loss and accuracy charts, log tail, the model and its evaluation).

htmx: the job page polls its `job-status` section every few seconds while the job is queued or
running; the section it answers with once the job ended carries no trigger, so polling stops. The
jobs list polls the same way while any job is active. Without JavaScript every page is whole, the
cancel and retry buttons are plain forms, and a reload shows the latest state.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from annotate.access import DATA_ROLES, get_project_for_user
from annotate.models import Snapshot
from frontend.views import HtmxHttpRequest, _project_context, render_page
from training.access import get_snapshot_for_training, get_training_job_for_user
from training.api import eval_file_entry
from training.models import JobKind, JobStatus, TrainingJob
from training.selectors import chart_series, jobs_for_project, trainable_snapshots
from training.services import (
    KIND_SPECS,
    default_base_model,
    training_job_cancel,
    training_job_create,
    training_job_retry,
)
from training.state import IllegalTransition, allowed_transitions
from training.trainers.config import LR_SCHEDULERS, TrainerConfig

POLL_SECONDS = 3
JOBS_SHOWN = 50
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)

_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(TrainerConfig) if f.default is not dataclasses.MISSING
}
# The settings the form shows; everything else (DeepSpeed, FSDP, logging) goes in "Other settings".
FORM_FIELDS = (
    "base_model",
    "max_length",
    "epochs",
    "max_steps",
    "per_device_batch_size",
    "gradient_accumulation_steps",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "lr_scheduler",
    "seed",
    "l2_coeff",
    "eval_steps",
    "num_gpus",
    "bf16",
    "fp16",
    "gradient_checkpointing",
    "template",
)


def _snapshot_label(snapshot: Snapshot) -> str:
    counts = snapshot.row_counts or {}
    return f"#{snapshot.pk}, {snapshot.created_at:%Y-%m-%d %H:%M}: {counts.get('train', '?')} train / {counts.get('test', 0)} test rows"


def _kind_choices() -> list[tuple[str, str]]:
    return [(value, label) for value, label in JobKind.choices if value in KIND_SPECS]


class TrainingJobForm(forms.Form):
    """The launch form: the common trainer settings with TrainerConfig's defaults; the trainer's own
    validation (in the service) decides, and its messages land on these fields."""

    kind = forms.ChoiceField(
        choices=_kind_choices,
        help_text="Reward: helpfulness (better_response_id). Cost: harmlessness (safer_response_id and each response's safety).",
    )
    snapshot = forms.ModelChoiceField(
        queryset=Snapshot.objects.none(),
        empty_label=None,
        help_text="A succeeded pku-saferlhf snapshot: its train split trains, its test split evaluates.",
    )
    base_model = forms.CharField(
        max_length=1000,
        required=False,
        help_text="A local Hugging Face checkpoint folder on the GPU machine. Empty: the bundled all-MiniLM-L6-v2.",
    )
    max_length = forms.IntegerField(min_value=8, max_value=32768, help_text="Tokens per prompt + response.")
    epochs = forms.FloatField(min_value=0.01, widget=forms.NumberInput(attrs={"step": "any"}))
    max_steps = forms.IntegerField(
        min_value=-1, help_text="-1: run the epochs; a positive number caps the optimiser steps."
    )
    per_device_batch_size = forms.IntegerField(label="Pairs per device per step", min_value=1)
    gradient_accumulation_steps = forms.IntegerField(min_value=1)
    learning_rate = forms.FloatField(widget=forms.NumberInput(attrs={"step": "any"}))
    weight_decay = forms.FloatField(min_value=0, max_value=1, widget=forms.NumberInput(attrs={"step": "any"}))
    warmup_ratio = forms.FloatField(
        min_value=0, max_value=0.999, widget=forms.NumberInput(attrs={"step": "any"})
    )
    lr_scheduler = forms.ChoiceField(label="Learning-rate schedule", choices=[(s, s) for s in LR_SCHEDULERS])
    seed = forms.IntegerField(min_value=0)
    l2_coeff = forms.FloatField(
        label="L2 on the scores", min_value=0, widget=forms.NumberInput(attrs={"step": "any"})
    )
    eval_steps = forms.IntegerField(
        min_value=0, help_text="Evaluate on the test split every N steps as well (0: at the end only)."
    )
    num_gpus = forms.IntegerField(
        label="GPUs", min_value=1, help_text="More than one runs under accelerate launch."
    )
    bf16 = forms.BooleanField(required=False, label="bf16 mixed precision")
    fp16 = forms.BooleanField(required=False, label="fp16 mixed precision")
    gradient_checkpointing = forms.BooleanField(required=False)
    template = forms.CharField(
        max_length=2000,
        help_text="How a prompt and a response become the scored text: {prompt} and {response} once each.",
    )
    progress_timeout_minutes = forms.IntegerField(
        label="Stop as hung after (minutes without progress)",
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        help_text="A trainer that reports no step or evaluation for this long is stopped with a checkpoint "
        "and the job fails saying so. Empty: the platform's limit (30 minutes by default).",
    )
    extra = forms.CharField(
        label="Other settings (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text='More trainer settings as a JSON object, e.g. {"deepspeed": "/cfg/zero2.json", "save_steps": 200}.',
    )

    def __init__(self, *args: Any, snapshots: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["snapshot"]
        field.queryset = snapshots  # type: ignore[attr-defined]
        field.label_from_instance = _snapshot_label  # type: ignore[attr-defined]
        for name in FORM_FIELDS:
            if name in _DEFAULTS and name != "base_model":
                self.fields[name].initial = _DEFAULTS[name]
        self.fields["base_model"].widget.attrs["placeholder"] = default_base_model() or "/models/my-encoder"

    def clean_extra(self) -> dict[str, Any]:
        raw = (self.cleaned_data.get("extra") or "").strip()
        if not raw:
            return {}
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValidationError(f"Not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValidationError('A JSON object, like {"save_steps": 200}.')
        return value

    def config(self) -> dict[str, Any]:
        data = {name: self.cleaned_data[name] for name in FORM_FIELDS}
        if not data["base_model"]:
            del data["base_model"]
        return {**data, **self.cleaned_data["extra"]}

    def add_config_errors(self, error: ValidationError) -> None:
        """The trainer's messages ("field: problem") on the field they name, the rest on top."""
        for key, messages_ in error.message_dict.items():
            for message in messages_:
                field, _, text = message.partition(": ")
                if key == "config" and field in self.fields and text:
                    self.add_error(field, text)
                elif key in self.fields:
                    self.add_error(key, message)
                else:
                    self.add_error(None, message)


def _job_context(job: TrainingJob) -> dict[str, Any]:
    project = job.snapshot.project
    evaluation = job.eval_metrics or {}
    files = evaluation.get("files", [])
    return {
        **_project_context(project),
        "job": job,
        "active": job.status in ACTIVE,
        "poll_seconds": POLL_SECONDS,
        "can_cancel": job.status in ACTIVE and not job.cancel_requested,
        "can_retry": "retry" in allowed_transitions(job),
        "percent": round(job.progress * 100, 1),
        "last": _last_log(job),
        "charts": chart_series(job),
        "evaluation": evaluation,
        "eval_rows": sorted((evaluation.get("metrics") or {}).items()),
        "images": [f for f in files if str(f.get("content_type", "")).startswith("image/")],
        "eval_json": next((f for f in files if f.get("name") == "eval.json"), None),
        "artifact": getattr(job, "artifact", None) if job.status == JobStatus.SUCCEEDED else None,
        "config_rows": sorted((job.config or {}).items()),
    }


def _last_log(job: TrainingJob) -> dict[str, Any]:
    for point in reversed(job.metrics or []):
        if point.get("event") == "log":
            return point
    return {}


@login_required
def training_overview(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    jobs = list(jobs_for_project(project)[:JOBS_SHOWN])
    context = {
        **_project_context(project),
        "jobs": jobs,
        "active": any(job.status in ACTIVE for job in jobs),
        "poll_seconds": POLL_SECONDS,
        "snapshots": list(trainable_snapshots(project)[:20]),
    }
    return render_page(request, "frontend/training.html", context, partial="job-list")


@login_required
@require_http_methods(["GET", "POST"])
def training_new(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    snapshots = trainable_snapshots(project)
    initial: dict[str, Any] = {"kind": request.GET.get("kind", JobKind.REWARD)}
    if (snapshot_id := request.GET.get("snapshot", "")).isdigit():
        initial["snapshot"] = int(snapshot_id)
    form = TrainingJobForm(request.POST or None, snapshots=snapshots, initial=initial)
    if request.method == "POST" and form.is_valid():
        # The access helper again: the form's queryset already limits it to this project.
        snapshot = get_snapshot_for_training(request.user, form.cleaned_data["snapshot"].pk, project=project)
        try:
            minutes = form.cleaned_data.get("progress_timeout_minutes")
            job = training_job_create(
                snapshot=snapshot,
                kind=form.cleaned_data["kind"],
                config=form.config(),
                user=request.user,
                progress_timeout_s=minutes * 60 if minutes else None,
            )
        except ValidationError as exc:
            form.add_config_errors(exc)
        else:
            messages.success(request, f"Training job #{job.pk} is queued for a GPU worker.")
            url = reverse("frontend:training-job", args=[project.slug, job.pk])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    context = {**_project_context(project), "form": form, "has_snapshots": snapshots.exists()}
    return render_page(request, "frontend/training_new.html", context, partial="job-form")


@login_required
def training_job(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    job = _job_in_project(request, slug, job_id)
    return render_page(request, "frontend/training_job.html", _job_context(job), partial="job-status")


@login_required
@require_POST
def training_job_cancel_view(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    job = _job_in_project(request, slug, job_id)
    try:
        training_job_cancel(job=job)
    except IllegalTransition as exc:
        messages.error(request, exc.messages[0])
    else:
        if job.status == JobStatus.CANCELLED:
            messages.success(request, f"Training job #{job.pk} is cancelled.")
        else:
            messages.success(
                request,
                f"Cancelling job #{job.pk}: the trainer stops at its next step and saves a checkpoint.",
            )
    return _back_to_job(request, slug, job_id)


@login_required
@require_POST
def training_job_retry_view(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    job = _job_in_project(request, slug, job_id)
    try:
        training_job_retry(job=job)
    except IllegalTransition as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(
            request,
            f"Training job #{job.pk} is queued again; it resumes from its last checkpoint, if it saved one.",
        )
    return _back_to_job(request, slug, job_id)


@login_required
def training_job_file(request: HtmxHttpRequest, slug: str, job_id: int, name: str) -> FileResponse:
    """An evaluation image or eval.json, through the job's access check (never public media)."""
    job = _job_in_project(request, slug, job_id)
    entry = eval_file_entry(job, name)
    response = FileResponse(default_storage.open(entry["path"], "rb"), content_type=entry.get("content_type"))
    response["Cache-Control"] = "private, max-age=3600"
    return response


def _job_in_project(request: HtmxHttpRequest, slug: str, job_id: int) -> TrainingJob:
    job = get_training_job_for_user(request.user, job_id)
    if job.snapshot.project.slug != slug:
        raise Http404("No such training job in this project.")
    return job


def _back_to_job(request: HtmxHttpRequest, slug: str, job_id: int) -> HttpResponse:
    if request.htmx:
        job = _job_in_project(request, slug, job_id)
        return render_page(request, "frontend/training_job.html", _job_context(job), partial="job-status")
    return redirect(reverse("frontend:training-job", args=[slug, job_id]))
