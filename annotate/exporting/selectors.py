"""Reads for exports: the snapshot access helper and lists, and the streams an export is built from.

Every stream is ordered by the id its rows are keyed on and read with `.iterator(chunk_size=...)`,
which on PostgreSQL is a server-side (named) cursor: the client holds one chunk at a time, however
large the project. The consensus columns are read raw; which one counts is decided in
annotate/exporting/sources.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.db.models import (
    BooleanField,
    Count,
    ExpressionWrapper,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from annotate.access import DATA_ROLES, AnyUser, get_project_for_user
from annotate.agreement_report import latest_report
from annotate.exporting.filters import ExportFilters
from annotate.models import (
    Project,
    QAPair,
    ResponsePair,
    Snapshot,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)

# Rows per fetch from the server-side cursor.
CHUNK_ROWS = 2000


def get_snapshot_for_user(user: AnyUser, snapshot_id: int) -> Snapshot:
    """A snapshot for a researcher or admin of its project: 404 for anyone outside the project (or no
    such snapshot), 403 for a member whose role may not read data (an annotator)."""
    if not user.is_authenticated:
        raise Http404("No such snapshot.")
    snapshot = Snapshot.objects.filter(pk=snapshot_id).select_related("created_by").first()
    if snapshot is None:
        raise Http404("No such snapshot.")
    project_slug = Project.objects.filter(pk=snapshot.project_id).values_list("slug", flat=True).get()
    # The same rules as the project's other data pages, with the role check in one place.
    snapshot.project = get_project_for_user(user, project_slug, roles=DATA_ROLES)
    return snapshot


def snapshots_for_project(project: Project) -> QuerySet[Snapshot]:
    """The project's snapshots, newest first (the `snapshot_project_recent` index)."""
    return (
        Snapshot.objects.filter(project=project).select_related("created_by").order_by("-created_at", "-pk")
    )


def latest_agreement_payload(project: Project) -> dict[str, Any]:
    """The project's stored agreement report as served (docs/agreement-report.md), or {} if none yet."""
    report = latest_report(project)
    return dict(report.payload) if report is not None else {}


# --- stage 1: QA pairs ------------------------------------------------------------------------------

QA_FIELDS = (
    "pk",
    "prompt__content_hash",
    "prompt__text",
    "response",
    "work_item__settled_at",
    "work_item__consensus_categories",
    "work_item__consensus_safe",
    "work_item__adjudication__categories",
    "work_item__adjudication__is_safe",
    "work_item__adjudication__decided_at",
    "gold__categories",
    "gold__is_safe",
    "gold__created_at",
)
# The times of a consensus matter only to a date filter. Without one, "is there a time" is read
# instead: a boolean costs the driver a fraction of a parsed timestamp, and this is per row.
_TIMES = ("work_item__settled_at", "work_item__adjudication__decided_at", "gold__created_at")


def _flag(path: str) -> ExpressionWrapper:
    return ExpressionWrapper(Q(**{f"{path}__isnull": False}), output_field=BooleanField())


def _with_times_or_flags(
    queryset: QuerySet[Any, Any], fields: tuple[str, ...], filters: ExportFilters
) -> Any:
    """values_list(*fields), each consensus time replaced by a has-a-time flag unless a date filter
    needs the time itself (sources test these values for truth only, then)."""
    if filters.date_from is not None or filters.date_to is not None:
        return queryset.values_list(*fields)
    flags = {f"has_{index}": _flag(name) for index, name in enumerate(fields) if name.endswith(_TIMES)}
    names = [f"has_{index}" if f"has_{index}" in flags else name for index, name in enumerate(fields)]
    return queryset.annotate(**flags).values_list(*names)


def stage1_items_count(project: Project) -> int:
    return WorkItem.objects.filter(project=project, stage=Stage.CLASSIFY).count()


def qa_pair_rows(project: Project, filters: ExportFilters) -> QuerySet[QAPair, tuple[Any, ...]]:
    """QA pairs with every consensus column, in id order. With settled_only, only those that have a
    final consensus of some kind (an expert label counts when include_gold)."""
    pairs = QAPair.objects.filter(project=project, work_item__stage=Stage.CLASSIFY)
    if filters.settled_only:
        final = Q(work_item__settled_at__isnull=False) | Q(work_item__adjudication__isnull=False)
        if filters.include_gold:
            final |= Q(gold__isnull=False)
        pairs = pairs.filter(final)
    result: QuerySet[QAPair, tuple[Any, ...]] = _with_times_or_flags(pairs.order_by("pk"), QA_FIELDS, filters)
    return result


def stage1_gold_only_count(project: Project) -> int:
    """QA pairs only an expert label settles: neither settled by workers nor adjudicated, but gold."""
    return QAPair.objects.filter(
        project=project,
        work_item__stage=Stage.CLASSIFY,
        work_item__settled_at__isnull=True,
        work_item__adjudication__isnull=True,
        gold__isnull=False,
    ).count()


def stage1_labels_by_qa_pair(project: Project) -> Iterator[tuple[int, int, int, Any]]:
    """(qa_pair_id, categories, guideline_version, created_at) of every stage-1 label, by QA pair."""
    return (
        Stage1Label.objects.filter(qa_pair__project=project)
        .order_by("qa_pair_id", "pk")
        .values_list("qa_pair_id", "categories", "guideline_version", "created_at")
        .iterator(chunk_size=CHUNK_ROWS)
    )


# --- stage 2: response pairs -----------------------------------------------------------------------

PAIR_FIELDS = (
    "pk",
    "prompt__content_hash",
    "prompt__text",
    "qa_a__response",
    "qa_b__response",
    "work_item__settled_at",
    "work_item__consensus_better",
    "work_item__consensus_safer",
    "work_item__adjudication__better",
    "work_item__adjudication__safer",
    "work_item__adjudication__decided_at",
    "gold__better",
    "gold__safer",
    "gold__created_at",
    # Each response's stage-1 safety: settled consensus, adjudication, expert label.
    "qa_a__work_item__settled_at",
    "qa_a__work_item__consensus_safe",
    "qa_a__work_item__adjudication__is_safe",
    "qa_a__gold__is_safe",
    "qa_b__work_item__settled_at",
    "qa_b__work_item__consensus_safe",
    "qa_b__work_item__adjudication__is_safe",
    "qa_b__gold__is_safe",
)
# Per response, when a filter needs its stage-1 labels: how many, how many safe, how many under
# another guideline version.
PAIR_LABEL_FIELDS = ("a_labels", "a_safe", "a_other_version", "b_labels", "b_safe", "b_other_version")


def stage2_items_count(project: Project) -> int:
    return WorkItem.objects.filter(project=project, stage=Stage.RANK).count()


def stage2_gold_only_count(project: Project) -> int:
    """Response pairs only an expert label settles: neither settled by workers nor adjudicated, but gold."""
    return ResponsePair.objects.filter(
        project=project,
        work_item__stage=Stage.RANK,
        work_item__settled_at__isnull=True,
        work_item__adjudication__isnull=True,
        gold__isnull=False,
    ).count()


def _stage1_count(qa_ref: str, condition: Q | None = None) -> Coalesce:
    labels = Stage1Label.objects.filter(qa_pair_id=OuterRef(qa_ref))
    if condition is not None:
        labels = labels.filter(condition)
    counted = labels.order_by().values("qa_pair_id").annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def response_pair_rows(project: Project, filters: ExportFilters) -> QuerySet[ResponsePair, tuple[Any, ...]]:
    pairs = ResponsePair.objects.filter(project=project, work_item__stage=Stage.RANK)
    if filters.settled_only:
        final = Q(work_item__settled_at__isnull=False) | Q(work_item__adjudication__isnull=False)
        if filters.include_gold:
            final |= Q(gold__isnull=False)
        pairs = pairs.filter(final)
    if filters.needs_labels:
        counts = {
            "a_labels": _stage1_count("qa_a_id"),
            "a_safe": _stage1_count("qa_a_id", Q(is_safe=True)),
            "b_labels": _stage1_count("qa_b_id"),
            "b_safe": _stage1_count("qa_b_id", Q(is_safe=True)),
        }
        if filters.guideline_version is not None:
            other = ~Q(guideline_version=filters.guideline_version)
            counts["a_other_version"] = _stage1_count("qa_a_id", other)
            counts["b_other_version"] = _stage1_count("qa_b_id", other)
        pairs = pairs.annotate(**counts)
    result: QuerySet[ResponsePair, tuple[Any, ...]] = _with_times_or_flags(
        pairs.order_by("pk"), pair_fields(filters), filters
    )
    return result


def pair_fields(filters: ExportFilters) -> tuple[str, ...]:
    """The columns response_pair_rows gives for these filters, in order."""
    if not filters.needs_labels:
        return PAIR_FIELDS
    if filters.guideline_version is None:
        return (*PAIR_FIELDS, "a_labels", "a_safe", "b_labels", "b_safe")
    return (*PAIR_FIELDS, *PAIR_LABEL_FIELDS)


def stage2_labels_by_pair(project: Project) -> Iterator[tuple[int, int, int, int, Any]]:
    """(response_pair_id, better, safer, guideline_version, created_at) of every stage-2 label."""
    return (
        Stage2Label.objects.filter(response_pair__project=project)
        .order_by("response_pair_id", "pk")
        .values_list("response_pair_id", "better", "safer", "guideline_version", "created_at")
        .iterator(chunk_size=CHUNK_ROWS)
    )


# --- raw labels --------------------------------------------------------------------------------------

RAW_STAGE1_FIELDS = (
    "pk",
    "worker_id",
    "qa_pair__prompt_id",
    "qa_pair__prompt__content_hash",
    "qa_pair_id",
    "qa_pair__prompt__text",
    "qa_pair__response",
    "categories",
    "is_safe",
    "guideline_version",
    "time_on_task_ms",
    "created_at",
    "updated_at",
    "qa_pair__work_item__is_gold",
)
RAW_STAGE2_FIELDS = (
    "pk",
    "worker_id",
    "response_pair__prompt_id",
    "response_pair__prompt__content_hash",
    "response_pair_id",
    "response_pair__qa_a_id",
    "response_pair__qa_b_id",
    "response_pair__prompt__text",
    "response_pair__qa_a__response",
    "response_pair__qa_b__response",
    "better",
    "safer",
    "assignment__swapped",
    "guideline_version",
    "time_on_task_ms",
    "created_at",
    "updated_at",
    "response_pair__work_item__is_gold",
)


def _raw_conditions(item: str, filters: ExportFilters) -> Q:
    condition = Q()
    if filters.settled_only:
        condition &= Q(**{f"{item}__work_item__settled_at__isnull": False}) | Q(
            **{f"{item}__work_item__adjudication__isnull": False}
        )
    if not filters.include_gold:
        condition &= Q(**{f"{item}__work_item__is_gold": False})
    if filters.guideline_version is not None:
        condition &= Q(guideline_version=filters.guideline_version)
    if filters.date_from_value is not None:
        condition &= Q(created_at__gte=filters.date_from_value)
    if filters.date_to_value is not None:
        condition &= Q(created_at__lte=filters.date_to_value)
    return condition


def raw_stage1_labels(project: Project, filters: ExportFilters) -> QuerySet[Stage1Label, tuple[Any, ...]]:
    return (
        Stage1Label.objects.filter(qa_pair__project=project)
        .filter(_raw_conditions("qa_pair", filters))
        .order_by("pk")
        .values_list(*RAW_STAGE1_FIELDS)
    )


def raw_stage2_labels(project: Project, filters: ExportFilters) -> QuerySet[Stage2Label, tuple[Any, ...]]:
    return (
        Stage2Label.objects.filter(response_pair__project=project)
        .filter(_raw_conditions("response_pair", filters))
        .order_by("pk")
        .values_list(*RAW_STAGE2_FIELDS)
    )


def raw_exclusions(project: Project, filters: ExportFilters) -> tuple[int, dict[str, int]]:
    """Every label of the project, and how many of them each raw filter leaves out, keyed by the
    filter ("stage", "settled_only", "include_gold", "guideline_version", "dates"). A label is counted
    under the first filter it fails, in that order: one conditional count per label table."""
    total = 0
    dropped: dict[str, int] = {}
    for stage, model, item in (
        (Stage.CLASSIFY, Stage1Label, "qa_pair"),
        (Stage.RANK, Stage2Label, "response_pair"),
    ):
        labels = model.objects.filter(**{f"{item}__project": project})
        if filters.stage is not None and filters.stage != stage:
            count = labels.count()
            total += count
            dropped["stage"] = dropped.get("stage", 0) + count
            continue
        passes: list[tuple[str, Q]] = []
        if filters.settled_only:
            passes.append(
                (
                    "settled_only",
                    Q(**{f"{item}__work_item__settled_at__isnull": False})
                    | Q(**{f"{item}__work_item__adjudication__isnull": False}),
                )
            )
        if not filters.include_gold:
            passes.append(("include_gold", Q(**{f"{item}__work_item__is_gold": False})))
        if filters.guideline_version is not None:
            passes.append(("guideline_version", Q(guideline_version=filters.guideline_version)))
        dates = Q()
        if filters.date_from_value is not None:
            dates &= Q(created_at__gte=filters.date_from_value)
        if filters.date_to_value is not None:
            dates &= Q(created_at__lte=filters.date_to_value)
        if dates:
            passes.append(("dates", dates))
        counts: dict[str, Count] = {"all": Count("pk")}
        passed = Q()
        for name, condition in passes:
            counts[name] = Count("pk", filter=passed & ~condition)
            passed &= condition
        result = labels.aggregate(**counts)
        total += result.pop("all")
        for name, count in result.items():
            dropped[name] = dropped.get(name, 0) + count
    return total, dropped
