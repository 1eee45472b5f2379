from django.contrib import admin

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
