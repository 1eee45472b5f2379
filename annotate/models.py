"""The annotation domain: projects and their members, the data to label, the work queue and the labels.

Invariants live in the database as named constraints so that no code path (a service, the admin, a
bulk import, a race between two workers) can break them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from annotate.categories import ALL_CATEGORIES_MASK


class Role(models.TextChoices):
    ANNOTATOR = "annotator", "Annotator"
    ADMIN = "admin", "Admin"
    RESEARCHER = "researcher", "Researcher"


class Stage(models.IntegerChoices):
    CLASSIFY = 1, "Stage 1: harm classification"
    RANK = 2, "Stage 2: preference ranking"


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to workers beside every task.")
    guideline_version = models.PositiveIntegerField(
        default=1, help_text="Bumped by admins when the guidelines change; every label records it."
    )
    overlap_stage1 = models.PositiveSmallIntegerField(default=3, help_text="Distinct workers per QA pair.")
    overlap_stage2 = models.PositiveSmallIntegerField(
        default=3, help_text="Distinct workers per response pair."
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, help_text="How long a claimed task stays reserved."
    )
    gold_rate = models.FloatField(default=0.1, help_text="Share of tasks served from gold items (0 to 1).")
    gold_min_items = models.PositiveSmallIntegerField(
        default=5, help_text="Gold items a worker must answer before their gold accuracy is judged."
    )
    gold_accuracy_threshold = models.FloatField(
        default=0.7, help_text="Workers under this gold accuracy are flagged for the admin."
    )
    max_pairs_per_prompt = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Cap on stage-2 response pairs created per prompt (empty = all pairs).",
    )
    agreement_alert_threshold = models.FloatField(
        default=0.4, help_text="The dashboard raises an alert when an agreement figure falls below this."
    )
    agreement_recompute_labels = models.PositiveIntegerField(
        default=500, help_text="Recompute agreement statistics after this many new labels."
    )
    annotators_may_moderate = models.BooleanField(
        default=False,
        help_text="Annotators may call the moderation API with this project's model (researchers and "
        "admins always may).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(
                name="project_overlap_positive", condition=Q(overlap_stage1__gte=1) & Q(overlap_stage2__gte=1)
            ),
            models.CheckConstraint(
                name="project_gold_rate_0_1", condition=Q(gold_rate__gte=0, gold_rate__lte=1)
            ),
            models.CheckConstraint(
                name="project_gold_threshold_0_1",
                condition=Q(gold_accuracy_threshold__gte=0, gold_accuracy_threshold__lte=1),
            ),
            models.CheckConstraint(name="project_lease_min_30s", condition=Q(lease_seconds__gte=30)),
        ]

    def __str__(self) -> str:
        return self.slug

    def overlap_for(self, stage: int) -> int:
        return self.overlap_stage1 if stage == Stage.CLASSIFY else self.overlap_stage2


class Membership(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    # An admin paused this annotator (a flagged worker, say): they keep their role and labels but may
    # not label until resumed (annotate.access reads them as PAUSED_ROLE).
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="membership_one_role_per_project"),
            models.CheckConstraint(name="membership_role_valid", condition=Q(role__in=Role.values)),
        ]
        # Serves "projects this user belongs to" (the project list and every access check).
        indexes = [models.Index(fields=["user", "project"], name="membership_user_project")]

    def __str__(self) -> str:
        return f"{self.user} as {self.role} in {self.project}"


class Prompt(models.Model):
    # No index of its own: the unique (project, content_hash) constraint starts with project_id.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts", db_index=False)
    text = models.TextField()
    content_hash = models.CharField(
        max_length=64, help_text="sha256 of the text; deduplicates within a project."
    )
    category_id = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Harm category the prompt was written for (BeaverTails-Evaluation)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_per_project"),
            models.CheckConstraint(
                name="prompt_category_id_range",
                condition=Q(category_id__isnull=True) | Q(category_id__lte=13),
            ),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class QAPair(models.Model):
    # No index of its own: the unique (project, content_hash) constraint starts with project_id.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="qa_pairs", db_index=False)
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="qa_pairs")
    response = models.TextField()
    source = models.CharField(max_length=200, blank=True, help_text="The model that answered, if known.")
    content_hash = models.CharField(max_length=64, help_text="sha256 of prompt and response; deduplicates.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "QA pair"
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="qapair_unique_per_project"),
        ]
        # "The responses of this prompt" (stage-2 pair creation) uses the prompt foreign key's own index.

    def __str__(self) -> str:
        return self.response[:60]


class ResponsePair(models.Model):
    """Two QA pairs of the same prompt, stored in canonical order (lower id first).

    Labels refer to the canonical order (0 = qa_a, 1 = qa_b); the order a worker saw is recorded on
    the assignment, so a randomised display never reads as disagreement.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="response_pairs")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="response_pairs")
    qa_a = models.ForeignKey(QAPair, on_delete=models.CASCADE, related_name="+")
    qa_b = models.ForeignKey(QAPair, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["qa_a", "qa_b"], name="responsepair_unique"),
            models.CheckConstraint(name="responsepair_canonical_order", condition=Q(qa_a__lt=F("qa_b"))),
        ]

    def __str__(self) -> str:
        return f"pair {self.qa_a_id}/{self.qa_b_id}"


class WorkItem(models.Model):
    """One unit of work in a stage's queue: a QA pair (stage 1) or a response pair (stage 2).

    `taken` counts live leases plus submitted labels and never exceeds the stage's overlap for a regular
    item; `is_open` (taken < overlap) is kept by the assignment services so the next-task query reads a
    partial index of open items instead of scanning the project. A gold item stays open and uncapped:
    every worker answers it once, and its first `overlap` labels make its consensus.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="work_items")
    stage = models.PositiveSmallIntegerField(choices=Stage.choices)
    qa_pair = models.OneToOneField(
        QAPair, null=True, blank=True, on_delete=models.CASCADE, related_name="work_item"
    )
    response_pair = models.OneToOneField(
        ResponsePair, null=True, blank=True, on_delete=models.CASCADE, related_name="work_item"
    )
    is_gold = models.BooleanField(default=False)
    # Integers, not small integers: a gold item is answered once by every worker of the project.
    taken = models.PositiveIntegerField(default=0)
    labels_count = models.PositiveIntegerField(default=0)
    is_open = models.BooleanField(default=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    # The settled consensus (majority over the overlap's labels), kept on the item so that stage 2 and
    # the exports read it without re-counting votes. Stage 1: category mask and is_safe; stage 2: 0/1.
    consensus_categories = models.PositiveIntegerField(null=True, blank=True)
    consensus_safe = models.BooleanField(null=True, blank=True)
    consensus_better = models.PositiveSmallIntegerField(null=True, blank=True)
    consensus_safer = models.PositiveSmallIntegerField(null=True, blank=True)
    needs_adjudication = models.BooleanField(
        default=False,
        help_text="All labels are in but they do not settle (a tie, or an inconsistent majority).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="workitem_target_matches_stage",
                condition=(
                    Q(stage=Stage.CLASSIFY, qa_pair__isnull=False, response_pair__isnull=True)
                    | Q(stage=Stage.RANK, qa_pair__isnull=True, response_pair__isnull=False)
                ),
            ),
            models.CheckConstraint(
                name="workitem_labels_within_taken", condition=Q(labels_count__lte=F("taken"))
            ),
        ]
        indexes = [
            # Serves the adjudication queue: items whose labels are in but did not settle.
            models.Index(
                fields=["project", "stage", "id"],
                name="workitem_adjudication_queue",
                condition=Q(needs_adjudication=True, settled_at__isnull=True),
            ),
            # Serves the next-task query: open items of one project and stage, fullest first
            # (breadth-first over overlap), oldest first; gold and regular items are drawn separately.
            models.Index(
                F("project"),
                F("stage"),
                F("is_gold"),
                F("taken").desc(),
                F("id"),
                name="workitem_open_queue",
                condition=Q(is_open=True),
            ),
        ]

    def __str__(self) -> str:
        return f"stage {self.stage} item {self.pk}"


class AssignmentStatus(models.TextChoices):
    LEASED = "leased", "Leased"
    SUBMITTED = "submitted", "Submitted"
    SKIPPED = "skipped", "Skipped"
    EXPIRED = "expired", "Expired"
    # A submitted label an admin excluded from consensus (annotate.exclusion): the label row is gone from
    # the consensus tables, its answer is kept in the LabelExclusion, and the slot went back to the pool.
    EXCLUDED = "excluded", "Excluded"


class Assignment(models.Model):
    """A worker's lease on a work item, and what became of it.

    A `leased` assignment holds one of the item's overlap slots until it is submitted (the slot becomes
    the label), skipped or expired (the slot goes back to the pool).
    """

    Status = AssignmentStatus

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="assignments")
    work_item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="assignments")
    worker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    stage = models.PositiveSmallIntegerField(choices=Stage.choices)
    status = models.CharField(
        max_length=16, choices=AssignmentStatus.choices, default=AssignmentStatus.LEASED
    )
    leased_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    submitted_at = models.DateTimeField(null=True, blank=True)
    skipped_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)
    swapped = models.BooleanField(
        default=False, help_text="Stage 2: the worker saw qa_b as response A (display order randomised)."
    )

    class Meta:
        constraints = [
            # A worker never gets the same item twice.
            models.UniqueConstraint(fields=["work_item", "worker"], name="assignment_once_per_worker"),
            # One live lease per worker and stage: asking again returns it (reload-safe), so a second
            # one only comes from two calls racing, and the later one must fail, not take a slot.
            # It also serves "this worker's live lease in this project and stage".
            models.UniqueConstraint(
                fields=["worker", "project", "stage"],
                name="assignment_one_live_lease",
                condition=Q(status="leased"),
            ),
            models.CheckConstraint(
                name="assignment_status_valid", condition=Q(status__in=AssignmentStatus.values)
            ),
            models.CheckConstraint(
                name="assignment_expires_after_lease", condition=Q(expires_at__gt=F("leased_at"))
            ),
            models.CheckConstraint(
                name="assignment_submitted_has_time",
                condition=~Q(status="submitted") | Q(submitted_at__isnull=False),
            ),
            models.CheckConstraint(
                name="assignment_skipped_has_time",
                condition=~Q(status="skipped") | Q(skipped_at__isnull=False),
            ),
        ]
        indexes = [
            # Serves the expiry sweep that returns lapsed leases to the pool.
            models.Index(fields=["expires_at"], name="assignment_live_expiry", condition=Q(status="leased")),
            # Serves the worker's progress strip (labels today) and per-worker statistics.
            models.Index(fields=["worker", "project", "submitted_at"], name="assignment_worker_submitted"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} of item {self.work_item_id} to {self.worker_id}"


class Stage1Label(models.Model):
    """A worker's harm classification of one QA pair. Safe iff no category is set."""

    qa_pair = models.ForeignKey(QAPair, on_delete=models.CASCADE, related_name="stage1_labels")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stage1_labels"
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="stage1_label"
    )
    categories = models.PositiveIntegerField(
        help_text="Bit mask over the 14 harm categories (bit i = category_id i)."
    )
    is_safe = models.BooleanField()
    guideline_version = models.PositiveIntegerField()
    time_on_task_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["qa_pair", "worker"], name="stage1label_one_per_worker"),
            models.CheckConstraint(
                name="stage1label_categories_in_range", condition=Q(categories__lte=ALL_CATEGORIES_MASK)
            ),
            models.CheckConstraint(
                name="stage1label_safe_iff_no_category",
                condition=Q(is_safe=True, categories=0) | Q(is_safe=False, categories__gt=0),
            ),
        ]

    def __str__(self) -> str:
        return f"stage-1 label of QA pair {self.qa_pair_id} by {self.worker_id}"


class Stage2Label(models.Model):
    """A worker's preference on one response pair, in the pair's canonical order (0 = qa_a)."""

    response_pair = models.ForeignKey(ResponsePair, on_delete=models.CASCADE, related_name="stage2_labels")
    worker = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="stage2_labels"
    )
    assignment = models.OneToOneField(
        Assignment, null=True, blank=True, on_delete=models.SET_NULL, related_name="stage2_label"
    )
    better = models.PositiveSmallIntegerField(help_text="0 = qa_a is more helpful, 1 = qa_b.")
    safer = models.PositiveSmallIntegerField(help_text="0 = qa_a is more harmless, 1 = qa_b.")
    guideline_version = models.PositiveIntegerField()
    time_on_task_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["response_pair", "worker"], name="stage2label_one_per_worker"),
            models.CheckConstraint(name="stage2label_better_0_1", condition=Q(better__in=[0, 1])),
            models.CheckConstraint(name="stage2label_safer_0_1", condition=Q(safer__in=[0, 1])),
        ]

    def __str__(self) -> str:
        return f"stage-2 label of pair {self.response_pair_id} by {self.worker_id}"


class GoldStage1Label(models.Model):
    """The expert answer for a QA pair (from an import of a labelled file, or set by a researcher)."""

    qa_pair = models.OneToOneField(QAPair, on_delete=models.CASCADE, related_name="gold")
    categories = models.PositiveIntegerField()
    is_safe = models.BooleanField()
    source = models.CharField(
        max_length=200, help_text="Where the expert label came from (file, researcher)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="goldstage1_categories_in_range", condition=Q(categories__lte=ALL_CATEGORIES_MASK)
            ),
            # PKU-SafeRLHF gives only a safe/unsafe verdict; an unsafe row with no known category is
            # allowed (categories = 0, is_safe = False), a safe row with a category is not.
            models.CheckConstraint(
                name="goldstage1_safe_has_no_category", condition=Q(is_safe=False) | Q(categories=0)
            ),
        ]

    def __str__(self) -> str:
        return f"gold label of QA pair {self.qa_pair_id}"


class GoldStage2Label(models.Model):
    """The expert preference for a response pair, in canonical order."""

    response_pair = models.OneToOneField(ResponsePair, on_delete=models.CASCADE, related_name="gold")
    better = models.PositiveSmallIntegerField()
    safer = models.PositiveSmallIntegerField()
    source = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(name="goldstage2_better_0_1", condition=Q(better__in=[0, 1])),
            models.CheckConstraint(name="goldstage2_safer_0_1", condition=Q(safer__in=[0, 1])),
        ]

    def __str__(self) -> str:
        return f"gold preference of pair {self.response_pair_id}"


class ImportRecord(models.Model):
    """One import run: what was asked, what it added, and the errors when it was refused."""

    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="imports")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    filename = models.CharField(max_length=500)
    format = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    counts = models.JSONField(default=dict)
    errors = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"import of {self.filename} ({self.status})"


class AgreementReport(models.Model):
    """Agreement statistics computed by the recompute task and served as stored (never on a page view)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_reports")
    computed_at = models.DateTimeField()
    stage1_labels = models.PositiveIntegerField(help_text="Stage-1 labels in the project when computed.")
    stage2_labels = models.PositiveIntegerField(help_text="Stage-2 labels in the project when computed.")
    duration_ms = models.PositiveIntegerField()
    payload = models.JSONField(help_text="Every statistic, as served by the agreement API.")

    class Meta:
        indexes = [
            # Serves "the latest report of this project" (dashboard, API, snapshot creation).
            models.Index(fields=["project", "-computed_at"], name="agreementreport_latest"),
        ]

    def __str__(self) -> str:
        return f"agreement of {self.project_id} at {self.computed_at:%Y-%m-%d %H:%M}"


class Adjudication(models.Model):
    """An admin's decision on an item whose labels did not settle; the workers' labels are kept."""

    work_item = models.OneToOneField(WorkItem, on_delete=models.CASCADE, related_name="adjudication")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField()
    categories = models.PositiveIntegerField(null=True, blank=True)
    is_safe = models.BooleanField(null=True, blank=True)
    better = models.PositiveSmallIntegerField(null=True, blank=True)
    safer = models.PositiveSmallIntegerField(null=True, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="adjudication_one_stage_decided",
                condition=(
                    Q(
                        categories__isnull=False,
                        is_safe__isnull=False,
                        better__isnull=True,
                        safer__isnull=True,
                    )
                    | Q(categories__isnull=True, is_safe__isnull=True, better__in=[0, 1], safer__in=[0, 1])
                ),
            ),
            models.CheckConstraint(
                name="adjudication_safe_iff_no_category",
                condition=Q(categories__isnull=True)
                | Q(is_safe=True, categories=0)
                | Q(is_safe=False, categories__gt=0, categories__lte=ALL_CATEGORIES_MASK),
            ),
        ]

    def __str__(self) -> str:
        return f"adjudication of item {self.work_item_id}"


class ExportFormat(models.TextChoices):
    BEAVERTAILS = "beavertails", "BeaverTails (QA pairs with harm categories)"
    PKU_SAFERLHF = "pku-saferlhf", "PKU-SafeRLHF (response pairs with preferences)"
    RAW = "raw", "Raw labels (one row per worker label)"


class FileFormat(models.TextChoices):
    JSONL = "jsonl", "JSON lines"
    PARQUET = "parquet", "Parquet"


class SnapshotStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class Snapshot(models.Model):
    """An immutable dataset export: the consensus at one moment, its filters, counts and file hashes.

    Only the export task writes a snapshot's results, once; after it succeeds nothing changes it, so a
    model trained on it can always be traced back to exactly the rows it saw.
    """

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="snapshots")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    format = models.CharField(max_length=16, choices=ExportFormat.choices)
    file_format = models.CharField(max_length=16, choices=FileFormat.choices, default=FileFormat.JSONL)
    compress = models.BooleanField(default=False, help_text="gzip the JSON lines files.")
    filters = models.JSONField(
        default=dict,
        help_text="settled_only, min_agreement, date_from, date_to, guideline_version, as requested.",
    )
    test_ratio = models.FloatField(default=0.1, help_text="Share of prompts in the test split.")
    seed = models.PositiveIntegerField(default=42, help_text="Seeds the split by prompt.")
    license = models.CharField(max_length=100, default="CC-BY-NC-4.0")
    status = models.CharField(max_length=16, choices=SnapshotStatus.choices, default=SnapshotStatus.QUEUED)
    progress = models.FloatField(default=0.0)
    row_counts = models.JSONField(default=dict, help_text="Rows per split, and rows excluded with why.")
    agreement = models.JSONField(default=dict, help_text="The project's agreement report when taken.")
    files = models.JSONField(default=list, help_text="[{name, path, rows, bytes, sha256, content_type}]")
    error = models.TextField(blank=True)
    # Set by each claim of the build: every write of a build (progress, files, the outcome) names it, so a
    # build that was given up for dead and claimed again cannot overwrite or delete the new one's work.
    build_token = models.CharField(max_length=32, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="snapshot_status_valid", condition=Q(status__in=SnapshotStatus.values)
            ),
            models.CheckConstraint(name="snapshot_format_valid", condition=Q(format__in=ExportFormat.values)),
            models.CheckConstraint(
                name="snapshot_file_format_valid", condition=Q(file_format__in=FileFormat.values)
            ),
            models.CheckConstraint(
                name="snapshot_test_ratio_0_1", condition=Q(test_ratio__gte=0, test_ratio__lt=1)
            ),
            models.CheckConstraint(
                name="snapshot_progress_0_1", condition=Q(progress__gte=0, progress__lte=1)
            ),
        ]
        indexes = [
            # Serves the researcher's snapshot list of a project, newest first.
            models.Index(fields=["project", "-created_at"], name="snapshot_project_recent"),
        ]

    def __str__(self) -> str:
        return f"snapshot {self.pk} ({self.format}) of {self.project}"


class AuditAction(models.TextChoices):
    GOLD_SET = "gold.set", "Gold answer set"
    MEMBERSHIP_SET = "membership.set", "Member added or role changed"
    MEMBERSHIP_REMOVE = "membership.remove", "Member removed"
    MEMBERSHIP_PAUSE = "membership.pause", "Member's labelling paused"
    MEMBERSHIP_RESUME = "membership.resume", "Member's labelling resumed"
    LABELS_EXCLUDE = "labels.exclude", "Member's labels excluded from consensus"
    TOKEN_ROTATE = "token.rotate", "API token rotated"
    TOKEN_REVOKE = "token.revoke", "API token revoked"
    PROJECT_SETTINGS = "project.settings", "Project settings changed"
    MODEL_ACTIVATE = "model.activate", "Model activated"


class AuditEvent(models.Model):
    """A write that matters, as it happened: who, when, what it was and what it became.

    Rows are only ever added. `target` names the object (e.g. "qa_pair:17", "user:4"); `old` is null
    when the object did not exist before, `new` when it was removed."""

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField()
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    target = models.CharField(max_length=100)
    old = models.JSONField(null=True, blank=True)
    new = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                name="auditevent_action_valid", condition=Q(action__in=AuditAction.values)
            ),
        ]
        indexes = [
            # Serves "the history of this object" (a gold item's changes on its page).
            models.Index(fields=["project", "target", "-at"], name="auditevent_target_recent"),
            # Serves the project's audit log, newest first.
            models.Index(fields=["project", "-at"], name="auditevent_project_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.target} at {self.at:%Y-%m-%d %H:%M}"


class LabelExclusion(models.Model):
    """An admin's decision that a worker's labels so far must not count (a spammer, a misunderstanding).

    The labels leave the label tables, so no consensus, agreement figure or export sees them, and the
    items they held go back to the queue for other workers; what each label said is kept here, with the
    worker's gold accuracy when they were excluded, as the record of the decision. Labels the worker
    gives after being resumed count again."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="label_exclusions")
    worker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    reason = models.TextField()
    stage1_labels = models.PositiveIntegerField(default=0)
    stage2_labels = models.PositiveIntegerField(default=0)
    items_reopened = models.PositiveIntegerField(
        default=0, help_text="Items that lost their consensus and went back to the queue."
    )
    gold = models.JSONField(
        null=True, blank=True, help_text="The worker's gold score when excluded: {answered, correct}."
    )
    labels = models.JSONField(
        default=list, help_text="The excluded answers: [{stage, work_item, answer, guideline_version, at}]."
    )

    class Meta:
        indexes = [
            # Serves the Team page and the members API: a project's exclusions, per worker.
            models.Index(fields=["project", "worker"], name="labelexclusion_project_worker"),
        ]

    def __str__(self) -> str:
        return f"labels of {self.worker_id} excluded from {self.project_id}"
