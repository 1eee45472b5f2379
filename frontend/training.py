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
from annotate.categories import HARM_CATEGORIES
from annotate.models import Snapshot
from frontend.views import HtmxHttpRequest, _project_context, render_page
from training.access import get_snapshot_for_training, get_training_job_for_user
from training.api import eval_file_entry
from training.models import JobKind, JobStatus, RegisteredModel, TrainingJob
from training.selectors import chart_series, jobs_for_project, models_for_user, trainable_snapshots
from training.services import (
    KIND_SPECS,
    default_base_model,
    default_policy_model,
    training_job_cancel,
    training_job_create,
    training_job_retry,
)
from training.state import IllegalTransition, allowed_transitions
from training.trainers.config import LR_SCHEDULERS, TrainerConfig

POLL_SECONDS = 3
JOBS_SHOWN = 50
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


def _defaults(kind: str) -> dict[str, Any]:
    """The kind's trainer defaults (a moderation classifier's differ from a pairwise scorer's)."""
    config_class = KIND_SPECS[kind].config_class if kind in KIND_SPECS else TrainerConfig
    return {
        f.name: f.default for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING
    }


# The moderation classifier's own settings, shown only for that kind.
MODERATION_FIELDS = ("targets", "pos_weight", "threshold_strategy", "target_recall", "validation_split")
# A policy's (PPO-Lag and its baselines) own settings.
POLICY_FIELDS = (
    "algorithm",
    "reward_model_id",
    "cost_model_id",
    "cost_threshold",
    "lambda_init",
    "lambda_lr",
    "lambda_max",
    "shaping_beta",
    "critic_learning_rate",
    "rollout_batch_size",
    "ppo_epochs",
    "kl_coeff",
    "max_new_tokens",
    "temperature",
    "top_p",
    "eval_prompts",
    "eval_max_prompts",
    "prompt_template",
)
# Which of the kind-specific settings each kind shows (and so the form holds: a required field the page
# does not show would refuse the post with an error nobody can see).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    JobKind.REWARD: ("l2_coeff", "eval_steps", "template"),
    JobKind.COST: ("l2_coeff", "eval_steps", "template"),
    JobKind.MODERATION: (*MODERATION_FIELDS, "template"),
    JobKind.PPO_LAG: POLICY_FIELDS,
}
KIND_SPECIFIC_FIELDS = tuple(dict.fromkeys(name for names in KIND_FIELDS.values() for name in names))
# The settings every kind shows; everything else (DeepSpeed, FSDP, logging) goes in "Other settings".
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
    "num_gpus",
    "bf16",
    "fp16",
    "gradient_checkpointing",
)
# What the common settings mean for a policy.
POLICY_LABELS = {
    "base_model": (
        "Policy checkpoint (a causal language model)",
        "A local Hugging Face checkpoint folder on the GPU machine. Empty: the demo policy, where one was built.",
    ),
    "max_length": ("Prompt tokens", "Longer prompts are cut to this many tokens."),
    "max_steps": (
        "PPO iterations",
        "Each samples a batch of responses, scores them, and updates the policy and critics.",
    ),
    "epochs": ("Epochs", "With PPO iterations -1: passes over the prompts."),
    "per_device_batch_size": ("Episodes per PPO mini-batch", ""),
    "learning_rate": ("Policy learning rate", ""),
}


def _model_label(model: Any) -> str:
    accuracy = ((model.eval_metrics or {}).get("metrics") or {}).get("accuracy")
    figure = f", test accuracy {accuracy:.3f}" if isinstance(accuracy, int | float) else ""
    return f"#{model.pk}: job {model.job_id} on snapshot #{model.snapshot_id}, {model.created_at:%Y-%m-%d %H:%M}{figure}"


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
        help_text="Reward: helpfulness (better_response_id). Cost: harmlessness (safer_response_id and each "
        "response's safety). QA moderation: the 14 harm categories of a question-answer pair.",
    )
    snapshot = forms.ModelChoiceField(
        queryset=Snapshot.objects.none(),
        empty_label=None,
        help_text="A succeeded snapshot (pku-saferlhf for reward and cost; beavertails or raw for moderation): "
        "its train split trains, its test split evaluates.",
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
    targets = forms.ChoiceField(
        label="Targets from several labels",
        choices=[
            ("consensus", "The consensus (majority per category)"),
            ("soft", "Soft: the share of labels"),
        ],
        help_text="How the labels of one QA pair (a raw export repeats a pair per worker) become its target.",
    )
    pos_weight = forms.ChoiceField(
        label="Weight of positives",
        choices=[("balanced", "Balanced per category (negatives / positives, at most 10)"), ("none", "None")],
        help_text='Rare categories are otherwise learnt as "never". Per-category weights: {"pos_weight": {...}} below.',
    )
    threshold_strategy = forms.ChoiceField(
        label="Thresholds",
        choices=[
            ("f1", "Per category, best F1 on the validation slice"),
            ("recall", "Per category, the target recall"),
            ("fixed", "0.5 for every category"),
        ],
    )
    target_recall = forms.FloatField(
        min_value=0.01,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="With target recall.",
    )
    validation_split = forms.FloatField(
        label="Validation share of the train split",
        min_value=0,
        max_value=0.9,
        widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Prompts held out of training to choose the thresholds.",
    )
    progress_timeout_minutes = forms.IntegerField(
        label="Stop as hung after (minutes without progress)",
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        help_text="A trainer that reports no step or evaluation for this long is stopped with a checkpoint "
        "and the job fails saying so. Empty: the platform's limit (30 minutes by default).",
    )
    algorithm = forms.ChoiceField(
        choices=[
            ("ppo_lag", "PPO-Lagrangian (Safe RLHF): most reward with mean cost under the threshold"),
            ("ppo", "PPO on the reward alone (baseline: ignores cost)"),
            ("ppo_rs", "PPO with reward shaping r - beta * c (baseline: a fixed trade-off)"),
        ],
    )
    reward_model_id = forms.ModelChoiceField(
        label="Reward model", queryset=RegisteredModel.objects.none(), empty_label=None,
        help_text="A trained reward (helpfulness) model you may use.",
    )  # fmt: skip
    cost_model_id = forms.ModelChoiceField(
        label="Cost model", queryset=RegisteredModel.objects.none(), required=False, empty_label="None (PPO only)",
        help_text="A trained cost (harmlessness) model: scores unsafe responses above 0.",
    )  # fmt: skip
    cost_threshold = forms.FloatField(
        label="Cost threshold", widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="PPO-Lag keeps the mean cost-model score at or under this; 0: judged safe on average.",
    )  # fmt: skip
    lambda_init = forms.FloatField(
        label="Initial lambda", min_value=1e-9, widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Lambda weighs cost against reward; it rises while the cost is over the threshold, falls while under.",
    )  # fmt: skip
    lambda_lr = forms.FloatField(
        label="Lambda learning rate", min_value=0, widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Plain SGD on log(lambda) (Safe RLHF's 0.1).",
    )  # fmt: skip
    lambda_max = forms.FloatField(
        label="Lambda cap", min_value=1e-9, widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Lambda never exceeds this (Safe RLHF's 5).",
    )  # fmt: skip
    shaping_beta = forms.FloatField(
        label="Beta (reward shaping)", min_value=0, widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="PPO-RS only: the fixed weight of cost in r - beta * c.",
    )  # fmt: skip
    critic_learning_rate = forms.FloatField(
        label="Critic learning rate", min_value=1e-12, widget=forms.NumberInput(attrs={"step": "any"})
    )
    rollout_batch_size = forms.IntegerField(
        label="Prompts per iteration (per GPU)", min_value=1,
        help_text="A multiple of the mini-batch.",
    )  # fmt: skip
    ppo_epochs = forms.IntegerField(label="PPO epochs per iteration", min_value=1, max_value=100)
    kl_coeff = forms.FloatField(
        label="KL coefficient", min_value=0, widget=forms.NumberInput(attrs={"step": "any"}),
        help_text="Per-token penalty for moving away from the initial policy.",
    )  # fmt: skip
    max_new_tokens = forms.IntegerField(label="Response tokens (at most)", min_value=1, max_value=32768)
    temperature = forms.FloatField(min_value=1e-6, widget=forms.NumberInput(attrs={"step": "any"}))
    top_p = forms.FloatField(
        label="Top-p", min_value=1e-6, max_value=1, widget=forms.NumberInput(attrs={"step": "any"})
    )
    eval_prompts = forms.ChoiceField(
        label="Evaluate on",
        choices=[
            ("test", "The snapshot's test prompts"),
            ("beavertails_evaluation", "BeaverTails-Evaluation (700 prompts, 50 per harm category)"),
        ],
        help_text="Before and after training, with the same sampling.",
    )
    eval_max_prompts = forms.IntegerField(
        label="Evaluation prompts (at most)", min_value=0, max_value=100_000
    )
    prompt_template = forms.CharField(
        max_length=2000,
        help_text="What the policy reads: {prompt} once. The score models use their own templates.",
    )
    extra = forms.CharField(
        label="Other settings (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text='More trainer settings as a JSON object, e.g. {"deepspeed": "/cfg/zero2.json", "save_steps": 200}.',
    )

    def __init__(self, *args: Any, snapshots: Any, kind: str, user: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_kind = kind
        for name in KIND_SPECIFIC_FIELDS:
            if name not in KIND_FIELDS[kind]:
                del self.fields[name]
        if kind == JobKind.PPO_LAG:
            self._policy_fields(user)
        field = self.fields["snapshot"]
        field.queryset = snapshots.filter(format__in=KIND_SPECS[kind].snapshot_formats)  # type: ignore[attr-defined]
        field.label_from_instance = _snapshot_label  # type: ignore[attr-defined]
        defaults = _defaults(kind)
        for name in self.config_fields():
            if name in defaults and name not in ("base_model", "reward_model_id", "cost_model_id"):
                self.fields[name].initial = defaults[name]
        self.fields["kind"].initial = kind
        # Choosing another kind reloads the form with that kind's defaults and snapshots.
        self.fields["kind"].widget.attrs.update(
            {"hx-get": "", "hx-trigger": "change", "hx-target": "#job-form", "hx-swap": "outerHTML"}
        )
        default = default_policy_model() if kind == JobKind.PPO_LAG else default_base_model()
        self.fields["base_model"].widget.attrs["placeholder"] = default or "/models/my-checkpoint"

    def _policy_fields(self, user: Any) -> None:
        for name, (label, help_text) in POLICY_LABELS.items():
            self.fields[name].label = label
            if help_text:
                self.fields[name].help_text = help_text
        for name, kind in (("reward_model_id", JobKind.REWARD), ("cost_model_id", JobKind.COST)):
            field = self.fields[name]
            field.queryset = models_for_user(user, kind=kind)  # type: ignore[attr-defined]
            field.label_from_instance = _model_label  # type: ignore[attr-defined]
            # The newest model of each kind, as the one a researcher most likely just trained.
            field.initial = field.queryset.values_list("pk", flat=True).first()  # type: ignore[attr-defined]

    def config_fields(self) -> tuple[str, ...]:
        return tuple(name for name in FORM_FIELDS + KIND_SPECIFIC_FIELDS if name in self.fields)

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
        data = {name: self.cleaned_data[name] for name in self.config_fields()}
        for name in ("reward_model_id", "cost_model_id"):
            if name in data:
                data[name] = data[name].pk if data[name] is not None else 0
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
        "moderation": _moderation_evaluation(evaluation.get("moderation")),
        "policy": _policy_evaluation(evaluation.get("policy")),
    }


# The before/after rows of a policy's evaluation, in the order the page shows them.
POLICY_MEASURES = (
    ("Mean reward (reward model)", "reward"),
    ("Mean cost (cost model)", "cost"),
    ("Unsafe share (cost > 0)", "unsafe_share"),
    ("Flagged share (moderation model)", "flagged_share"),
    ("Response length (characters)", "response_chars"),
)
ALGORITHM_LABELS = {
    "ppo_lag": "PPO-Lagrangian: reward up, expected cost held under the threshold by the multiplier",
    "ppo": "PPO on the reward alone (the baseline that ignores cost)",
    "ppo_rs": "PPO on the shaped reward r - beta * c (the reward-shaping baseline)",
}


def _policy_evaluation(evaluation: Any) -> dict[str, Any] | None:
    """A policy job's before/after table, per-category rows (labels in the released order) and samples."""
    if not isinstance(evaluation, dict):
        return None
    before, after = evaluation.get("before") or {}, evaluation.get("after") or {}
    rows = []
    for label, key in POLICY_MEASURES:
        old, new = before.get(key), after.get(key)
        if old is None and new is None:
            continue
        change = new - old if isinstance(old, int | float) and isinstance(new, int | float) else None
        rows.append((label, old, new, change))
    per_before, per_after = before.get("per_category") or {}, after.get("per_category") or {}
    categories = [
        (c.label, per_before.get(c.key, {}), per_after.get(c.key, {}))
        for c in HARM_CATEGORIES
        if c.key in per_before or c.key in per_after
    ]
    return {
        **evaluation,
        "rows": rows,
        "categories": categories,
        "has_flagged": "flagged_share" in after or "flagged_share" in before,
        "algorithm_label": ALGORITHM_LABELS.get(
            str(evaluation.get("algorithm")), str(evaluation.get("algorithm"))
        ),
    }


def _moderation_evaluation(evaluation: Any) -> dict[str, Any] | None:
    """A moderation job's evaluation for its page: the per-category table in the released order."""
    if not isinstance(evaluation, dict):
        return None
    per_category = evaluation.get("per_category") or {}
    return {
        **evaluation,
        "rows": [(c.label, c.key, per_category.get(c.key, {})) for c in HARM_CATEGORIES],
    }


def _last_log(job: TrainingJob) -> dict[str, Any]:
    """The figures for the tiles: the newest log line's, with step, epoch and max_steps from the newest
    record of any kind (a short run can end before its first log line), and the run's mean train loss
    where no log line gave a loss."""
    records = job.metrics or []
    latest: dict[str, Any] = next((p for p in reversed(records) if p.get("event") == "log"), {})
    figures = dict(latest)
    for point in records:
        for key in ("step", "max_steps", "epoch"):
            if point.get(key) is not None:
                figures[key] = point[key]
    if figures.get("loss") is None:
        summary: dict[str, Any] = next(
            (p for p in reversed(records) if p.get("event") == "train_summary"), {}
        )
        if summary.get("train_loss") is not None:
            figures["loss"] = summary["train_loss"]
    return figures


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
    kind = request.POST.get("kind") or initial["kind"]
    if kind not in KIND_SPECS:
        kind = JobKind.REWARD
    form = TrainingJobForm(
        request.POST or None, snapshots=snapshots, initial=initial, kind=kind, user=request.user
    )
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
    context = {
        **_project_context(project),
        "form": form,
        "kind": kind,
        "kinds": _kind_choices(),
        "has_snapshots": form.fields["snapshot"].queryset.exists(),  # type: ignore[attr-defined]
        # A policy needs a reward model (and, but for plain PPO, a cost model) to train against.
        "has_score_models": kind != JobKind.PPO_LAG or form.fields["reward_model_id"].queryset.exists(),  # type: ignore[attr-defined]
        "has_cost_models": kind != JobKind.PPO_LAG or form.fields["cost_model_id"].queryset.exists(),  # type: ignore[attr-defined]
        "wanted_formats": " or ".join(KIND_SPECS[kind].snapshot_formats),
    }
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
