"""QA-moderation scores: what a registered moderation model said about each QA pair of a project, and the
runs that score a whole project. Scores are kept per model, so re-scoring with a new model keeps the
old model's scores beside it (to compare the two, or go back)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class ModerationScore(models.Model):
    """One model's verdict on one QA pair: the 14 category probabilities and the decision at the
    model's thresholds."""

    qa_pair = models.ForeignKey("annotate.QAPair", on_delete=models.CASCADE, related_name="moderation_scores")
    model = models.ForeignKey("training.RegisteredModel", on_delete=models.CASCADE, related_name="scores")
    scores = models.JSONField(help_text="14 probabilities, in the categories' released order.")
    categories = models.PositiveIntegerField(
        help_text="Bit mask of the categories at or over their threshold."
    )
    flagged = models.BooleanField()
    # The highest category probability: the model's confidence that the pair is unsafe.
    unsafe_score = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model", "qa_pair"], name="moderationscore_once_per_model"),
        ]

    def __str__(self) -> str:
        return f"score of QA pair {self.qa_pair_id} by model {self.model_id}"


class ScoringRunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ScoringRun(models.Model):
    """Scoring every QA pair of a project with one model (manage.py moderate, or the Celery task).
    Resumable: a run scores only the pairs the model has no score for yet."""

    project = models.ForeignKey("annotate.Project", on_delete=models.CASCADE, related_name="scoring_runs")
    model = models.ForeignKey(
        "training.RegisteredModel", on_delete=models.CASCADE, related_name="scoring_runs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(
        max_length=16, choices=ScoringRunStatus.choices, default=ScoringRunStatus.QUEUED
    )
    total = models.PositiveIntegerField(default=0, help_text="QA pairs to score when the run started.")
    done = models.PositiveIntegerField(default=0)
    pairs_per_second = models.FloatField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    human_agreement = models.JSONField(
        default=dict, help_text="The model against the human consensus and annotators, when the run ended."
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="scoringrun_status_valid", condition=Q(status__in=ScoringRunStatus.values)
            ),
        ]
        indexes = [
            # Serves the Moderation page: a project's runs, newest first.
            models.Index(fields=["project", "-created_at"], name="scoringrun_project_recent"),
        ]

    def __str__(self) -> str:
        return f"scoring run {self.pk} of {self.project_id} with model {self.model_id} ({self.status})"
