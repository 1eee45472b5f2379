from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from moderation import models


@admin.register(models.ModerationScore)
class ModerationScoreAdmin(admin.ModelAdmin):
    list_display = ["id", "qa_pair", "model", "flagged", "unsafe_score", "created_at"]
    list_filter = ["model", "flagged"]
    raw_id_fields = ["qa_pair", "model"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # written by scoring runs only


@admin.register(models.ScoringRun)
class ScoringRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "model", "status", "done", "total", "pairs_per_second", "created_at"]
    list_filter = ["status", "project"]
    readonly_fields = ["human_agreement", "error"]
