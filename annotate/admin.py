"""The Django admin. Writes that keep derived state (the queue's counters, open flags, leases, the audit
log) go through the same services as the UI and the API; the derived columns themselves are read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest

from annotate import models
from annotate.services import EDITABLE_SETTINGS, membership_remove, membership_set, project_settings_update


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "guideline_version", "overlap_stage1", "overlap_stage2", "gold_rate"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]
    # Bumped by the settings service when the guidelines change, never by hand.
    readonly_fields = ["guideline_version", "created_at", "created_by"]

    def save_model(self, request: HttpRequest, obj: models.Project, form: ModelForm, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Through the service: an overlap change recomputes the queue, a guidelines change is a new
        # version, and every change is audited.
        changes = {name: form.cleaned_data[name] for name in form.changed_data if name in EDITABLE_SETTINGS}
        ignored = set(form.changed_data) - set(EDITABLE_SETTINGS)
        if ignored:
            # Fields outside the service (the slug): saved as they are.
            models.Project.objects.filter(pk=obj.pk).update(
                **{name: form.cleaned_data[name] for name in ignored}
            )
        project_settings_update(project=obj, changes=changes, actor=request.user)
        obj.refresh_from_db()

    @transaction.atomic
    def save_formset(
        self, request: HttpRequest, form: ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        if formset.model is not models.Membership:
            super().save_formset(request, form, formset, change)
            return
        formset.save(commit=False)
        for membership in formset.deleted_objects:
            membership_remove(project=membership.project, user=membership.user, actor=request.user)
        for membership, fields in formset.changed_objects:
            if "user" in fields:  # the row now names someone else: the first user leaves the project
                before = models.Membership.objects.select_related("user").get(pk=membership.pk)
                membership_remove(project=form.instance, user=before.user, actor=request.user)
        for membership in [*formset.new_objects, *(obj for obj, _ in formset.changed_objects)]:
            membership_set(
                project=form.instance, user=membership.user, role=membership.role, actor=request.user
            )


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]
    list_filter = ["role", "project"]
    raw_id_fields = ["user"]

    def save_model(self, request: HttpRequest, obj: models.Membership, form: ModelForm, change: bool) -> None:
        membership = membership_set(project=obj.project, user=obj.user, role=obj.role, actor=request.user)
        obj.pk = membership.pk

    def delete_model(self, request: HttpRequest, obj: models.Membership) -> None:
        membership_remove(project=obj.project, user=obj.user, actor=request.user)

    @transaction.atomic
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[models.Membership]) -> None:
        for membership in queryset.select_related("project", "user"):
            membership_remove(project=membership.project, user=membership.user, actor=request.user)


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "category_id", "__str__"]
    list_filter = ["project"]
    search_fields = ["text"]


@admin.register(models.QAPair)
class QAPairAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "__str__"]
    list_filter = ["project"]
    search_fields = ["response", "prompt__text"]
    raw_id_fields = ["prompt"]


@admin.register(models.ResponsePair)
class ResponsePairAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "qa_a", "qa_b"]
    raw_id_fields = ["prompt", "qa_a", "qa_b"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only the assignment engine writes: an edit here would put the counters, the open queue
    or the consensus out of step with the labels. Shown for inspection only."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(models.WorkItem)
class WorkItemAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "stage", "is_gold", "taken", "labels_count", "is_open", "settled_at"]
    list_filter = ["project", "stage", "is_gold", "is_open"]
    raw_id_fields = ["qa_pair", "response_pair"]


@admin.register(models.Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "stage",
        "worker",
        "status",
        "leased_at",
        "expires_at",
        "submitted_at",
        "skipped_at",
    ]
    list_filter = ["project", "stage", "status"]
    raw_id_fields = ["work_item", "worker"]


@admin.register(models.Stage1Label)
class Stage1LabelAdmin(ReadOnlyAdmin):
    list_display = ["id", "qa_pair", "worker", "categories", "is_safe", "guideline_version", "created_at"]
    raw_id_fields = ["qa_pair", "worker", "assignment"]


@admin.register(models.Stage2Label)
class Stage2LabelAdmin(ReadOnlyAdmin):
    list_display = ["id", "response_pair", "worker", "better", "safer", "guideline_version", "created_at"]
    raw_id_fields = ["response_pair", "worker", "assignment"]


@admin.register(models.GoldStage1Label)
class GoldStage1LabelAdmin(ReadOnlyAdmin):
    """Set through the Gold page (annotate.gold), which keeps the history and recomputes accuracy."""

    list_display = ["qa_pair", "categories", "is_safe", "source"]
    raw_id_fields = ["qa_pair"]


@admin.register(models.GoldStage2Label)
class GoldStage2LabelAdmin(ReadOnlyAdmin):
    list_display = ["response_pair", "better", "safer", "source"]
    raw_id_fields = ["response_pair"]


@admin.register(models.ImportRecord)
class ImportRecordAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "filename", "format", "status", "created_at"]
    list_filter = ["status", "format"]


@admin.register(models.AgreementReport)
class AgreementReportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "computed_at", "stage1_labels", "stage2_labels", "duration_ms"]
    list_filter = ["project"]


@admin.register(models.Adjudication)
class AdjudicationAdmin(ReadOnlyAdmin):
    list_display = ["work_item", "decided_by", "decided_at", "is_safe", "better", "safer"]
    raw_id_fields = ["work_item", "decided_by"]


@admin.register(models.Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "format", "file_format", "status", "created_at", "finished_at"]
    list_filter = ["status", "format", "project"]
    readonly_fields = ["row_counts", "agreement", "files", "filters"]


@admin.register(models.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "project", "actor", "action", "target", "reason"]
    list_filter = ["action", "project"]
    search_fields = ["target", "reason", "actor__username"]
    date_hierarchy = "at"
