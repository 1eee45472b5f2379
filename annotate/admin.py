from django.contrib import admin

from annotate import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "guideline_version", "overlap_stage1", "overlap_stage2", "gold_rate"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


@admin.register(models.Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]
    list_filter = ["role", "project"]
    raw_id_fields = ["user"]


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


@admin.register(models.WorkItem)
class WorkItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "stage", "is_gold", "taken", "labels_count", "is_open", "settled_at"]
    list_filter = ["project", "stage", "is_gold", "is_open"]
    raw_id_fields = ["qa_pair", "response_pair"]


@admin.register(models.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "project",
        "stage",
        "worker",
        "leased_at",
        "expires_at",
        "submitted_at",
        "skipped_at",
    ]
    list_filter = ["project", "stage"]
    raw_id_fields = ["work_item", "worker"]


@admin.register(models.Stage1Label)
class Stage1LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "qa_pair", "worker", "categories", "is_safe", "guideline_version", "created_at"]
    raw_id_fields = ["qa_pair", "worker", "assignment"]


@admin.register(models.Stage2Label)
class Stage2LabelAdmin(admin.ModelAdmin):
    list_display = ["id", "response_pair", "worker", "better", "safer", "guideline_version", "created_at"]
    raw_id_fields = ["response_pair", "worker", "assignment"]


@admin.register(models.GoldStage1Label)
class GoldStage1LabelAdmin(admin.ModelAdmin):
    list_display = ["qa_pair", "categories", "is_safe", "source"]
    raw_id_fields = ["qa_pair"]


@admin.register(models.GoldStage2Label)
class GoldStage2LabelAdmin(admin.ModelAdmin):
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
class AdjudicationAdmin(admin.ModelAdmin):
    list_display = ["work_item", "decided_by", "decided_at", "is_safe", "better", "safer"]
    raw_id_fields = ["work_item", "decided_by"]


@admin.register(models.Snapshot)
class SnapshotAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "format", "file_format", "status", "created_at", "finished_at"]
    list_filter = ["status", "format", "project"]
    readonly_fields = ["row_counts", "agreement", "files", "filters"]
