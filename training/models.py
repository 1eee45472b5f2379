"""Training jobs and the model registry.

A job's status moves only through the named transitions in training/state.py; the database keeps
the status to its known values and the timestamps consistent with it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class JobKind(models.TextChoices):
    REWARD = "reward", "Reward model (helpfulness)"
    COST = "cost", "Cost model (harmlessness)"
    MODERATION = "moderation", "QA-moderation classifier"
    PPO_LAG = "ppo_lag", "PPO-Lagrangian policy"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class TrainingJob(models.Model):
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    snapshot = models.ForeignKey("annotate.Snapshot", on_delete=models.PROTECT, related_name="training_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    config = models.JSONField(help_text="The validated trainer configuration.")
    config_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    metrics = models.JSONField(default=list, help_text="[{step, epoch, loss, accuracy, ...}] over time.")
    eval_metrics = models.JSONField(default=dict)
    log_tail = models.TextField(blank=True)
    worker_host = models.CharField(max_length=255, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    # The attempt number, bumped by each retry: the fencing token of the supervisor that runs the job.
    # Every write a supervisor makes (progress, heartbeat, its outcome) is conditioned on it, so one that
    # lost the database and comes back after the job was reaped and retried writes nothing.
    attempts = models.PositiveSmallIntegerField(default=0)
    progress_timeout_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Stop the trainer (with a checkpoint) and fail the job when it reports no progress for "
        "this long; empty: TRAINING_PROGRESS_TIMEOUT_S.",
    )
    queued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the job was last sent to the GPU queue (created or retried)."
    )
    failure_reason = models.TextField(blank=True)
    output_dir = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="trainingjob_status_valid", condition=Q(status__in=JobStatus.values)),
            models.CheckConstraint(name="trainingjob_kind_valid", condition=Q(kind__in=JobKind.values)),
            models.CheckConstraint(
                name="trainingjob_progress_0_1", condition=Q(progress__gte=0, progress__lte=1)
            ),
            models.CheckConstraint(
                name="trainingjob_finished_has_time",
                condition=~Q(status__in=FINISHED_STATUSES) | Q(finished_at__isnull=False),
            ),
        ]
        indexes = [
            # Serves the reaper: running jobs whose heartbeat went quiet.
            models.Index(
                fields=["heartbeat_at"], name="trainingjob_running_heartbeat", condition=Q(status="running")
            ),
            # Serves the reaper: queued jobs no GPU worker took before their queue message expired.
            models.Index(fields=["queued_at"], name="trainingjob_queued_since", condition=Q(status="queued")),
            # Serves a snapshot's job list and the researcher's job list, newest first.
            models.Index(fields=["snapshot", "-created_at"], name="trainingjob_snapshot_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} job {self.pk} ({self.status})"


class RegisteredModel(models.Model):
    """A trained artifact: a standard checkpoint directory that `from_pretrained` loads."""

    job = models.OneToOneField(TrainingJob, on_delete=models.PROTECT, related_name="artifact")
    kind = models.CharField(max_length=16, choices=JobKind.choices)
    path = models.CharField(max_length=1000)
    base_model = models.CharField(max_length=1000)
    snapshot = models.ForeignKey("annotate.Snapshot", on_delete=models.PROTECT, related_name="models")
    config_hash = models.CharField(max_length=64)
    eval_metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # Serves "models of this kind, newest first" (the moderation service picks its model).
            models.Index(fields=["kind", "-created_at"], name="registeredmodel_kind_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} model from job {self.job_id}"


class ModelActivation(models.Model):
    """Which registered model of a kind is active: for one project, or (project empty) for the platform.

    A project without its own active model uses the platform's. Only the model service writes these
    (training.services.model_activate), which audits each change."""

    kind = models.CharField(max_length=16, choices=JobKind.choices)
    project = models.ForeignKey(
        "annotate.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="model_activations"
    )
    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="activations")
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activated_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "project"],
                name="modelactivation_one_per_project",
                condition=Q(project__isnull=False),
            ),
            models.UniqueConstraint(
                fields=["kind"], name="modelactivation_one_for_platform", condition=Q(project__isnull=True)
            ),
        ]

    def __str__(self) -> str:
        scope = f"project {self.project_id}" if self.project_id else "the platform"
        return f"active {self.kind} model {self.model_id} for {scope}"
