from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from training import models


@admin.register(models.TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "kind",
        "snapshot",
        "status",
        "progress",
        "worker_host",
        "heartbeat_at",
        "created_at",
    ]
    list_filter = ["kind", "status"]
    readonly_fields = ["config", "config_hash", "metrics", "eval_metrics", "log_tail"]


@admin.register(models.RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "job", "base_model", "snapshot", "created_at"]
    list_filter = ["kind"]


@admin.register(models.ModelActivation)
class ModelActivationAdmin(admin.ModelAdmin):
    """Set through the model pages and POST /api/v1/models/{id}/activate/, which keep the audit log."""

    list_display = ["kind", "project", "model", "activated_by", "activated_at"]
    list_filter = ["kind"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
