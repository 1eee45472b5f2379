"""Serving the active QA-moderation model: scoring (prompt, response) pairs, and scoring whole projects.

The model loads lazily, once per process, in the process that serves moderation (a web worker that gets
a moderation request, the worker that runs a scoring job), never when the web app is imported: the
annotation loop's processes never pay for torch. Loaded models are kept per process, the last few used.
Inference is training.trainers.moderation.ModerationScorer: inputs sorted by length into batches,
under torch.inference_mode.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from annotate.categories import CATEGORY_KEYS
from annotate.models import Project, QAPair
from moderation.models import ModerationScore, ScoringRun, ScoringRunStatus
from moderation.selectors import human_agreement
from training.models import JobKind, RegisteredModel
from training.services import actor_or_none

if TYPE_CHECKING:
    from training.trainers.moderation import ModerationScorer

logger = logging.getLogger(__name__)

# Loaded models per process, by registry id and path; the least recently used one goes past this many.
LOADED_MODELS = 2
_loaded: OrderedDict[tuple[int, str], ModerationScorer] = OrderedDict()
_loading = threading.Lock()


class ModelUnavailable(Exception):
    """The moderation model cannot be used here (its folder is missing on this machine, or unreadable)."""


def model_path(model: RegisteredModel) -> Path:
    """Where the registered model's files are: its path, relative ones under its job's folder."""
    path = Path(model.path)
    if not path.is_absolute() and model.job.output_dir:
        path = Path(model.job.output_dir) / path
    return path


def scorer_for(model: RegisteredModel) -> ModerationScorer:
    """The model, loaded once in this process and reused."""
    path = model_path(model)
    key = (model.pk, str(path))
    with _loading:
        scorer = _loaded.get(key)
        if scorer is not None:
            _loaded.move_to_end(key)
            return scorer
        from training.trainers.moderation import ModerationScorer

        started = time.perf_counter()
        try:
            scorer = ModerationScorer(
                path, threads=settings.MODERATION_TORCH_THREADS or None, int8=settings.MODERATION_CPU_INT8
            )
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(
                f"moderation model {model.pk} cannot be loaded from {path}: {exc}"
            ) from exc
        logger.info(
            "moderation model %s loaded from %s in %.1f s", model.pk, path, time.perf_counter() - started
        )
        _loaded[key] = scorer
        while len(_loaded) > LOADED_MODELS:
            _loaded.popitem(last=False)
        return scorer


def moderate(
    *, model: RegisteredModel, items: Sequence[tuple[str, str]], thresholds: str = "tuned"
) -> tuple[list[dict[str, Any]], str]:
    """The hosted-moderation answer for each (prompt, response) (flagged, categories, category_scores),
    and the precision that scored them ("float32", or "int8" on a CPU)."""
    if model.kind != JobKind.MODERATION:
        raise ValidationError(f"Model {model.pk} is a {model.kind} model, not a moderation model.")
    scorer = scorer_for(model)
    return scorer.results(
        items, thresholds=thresholds, batch_size=settings.MODERATION_BATCH_SIZE
    ), scorer.precision


# --- Scoring a whole project ------------------------------------------------------------------------------


@transaction.atomic
def scoring_run_create(
    *, project: Project, model: RegisteredModel, user: Any = None, enqueue: bool = True
) -> ScoringRun:
    """Queue scoring every QA pair of the project with `model` (a researcher or admin asked, or the
    moderate command). Only pairs the model has no score for are scored, so a run after new imports (or
    after a failed one) does only what is missing."""
    if model.kind != JobKind.MODERATION:
        raise ValidationError(
            {"model": [f"Model {model.pk} is a {model.kind} model, not a moderation model."]}
        )
    run = ScoringRun.objects.create(project=project, model=model, created_by=actor_or_none(user))
    if enqueue:
        from moderation.tasks import score_project

        run_id = run.pk
        transaction.on_commit(lambda: score_project.delay(run_id))
    return run


def _unscored(run: ScoringRun) -> Any:
    scored = ModerationScore.objects.filter(model_id=run.model_id, qa_pair=OuterRef("pk"))
    return QAPair.objects.filter(project_id=run.project_id).filter(~Exists(scored))


def _claim(run: ScoringRun) -> bool:
    """queued (or failed, or running with a heartbeat gone quiet) -> running; False when another process
    has it."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.MODERATION_RUN_STALE_AFTER_S)
    claimable = Q(status__in=[ScoringRunStatus.QUEUED, ScoringRunStatus.FAILED]) | Q(
        status=ScoringRunStatus.RUNNING, heartbeat_at__lt=stale
    )
    return bool(
        ScoringRun.objects.filter(claimable, pk=run.pk).update(
            status=ScoringRunStatus.RUNNING, started_at=now, heartbeat_at=now, error="", finished_at=None
        )
    )


def scoring_run_execute(
    *, run: ScoringRun, chunk: int = 512, progress: Callable[[int, int], None] | None = None
) -> ScoringRun:
    """Score the run's missing QA pairs, `chunk` at a time, recording progress and a heartbeat after each
    chunk; the run, succeeded or failed. Scores already there (another run, a resumed one) are kept."""
    if not _claim(run):
        run.refresh_from_db()
        return run
    run = ScoringRun.objects.select_related("project").get(pk=run.pk)
    model = RegisteredModel.objects.select_related("job").get(pk=run.model_id)
    started = time.perf_counter()
    try:
        scorer = scorer_for(model)
        total = _unscored(run).count()
        ScoringRun.objects.filter(pk=run.pk).update(total=total, done=0)
        done = 0
        while True:
            pairs = list(_unscored(run).select_related("prompt").order_by("pk")[:chunk])
            if not pairs:
                break
            results = scorer.results(
                [(qa.prompt.text, qa.response) for qa in pairs], batch_size=settings.MODERATION_BATCH_SIZE
            )
            ModerationScore.objects.bulk_create(
                [_score_row(qa, model, result) for qa, result in zip(pairs, results, strict=True)],
                ignore_conflicts=True,
            )
            done += len(pairs)
            elapsed = time.perf_counter() - started
            ScoringRun.objects.filter(pk=run.pk, status=ScoringRunStatus.RUNNING).update(
                done=done,
                heartbeat_at=timezone.now(),
                pairs_per_second=round(done / elapsed, 1) if elapsed else None,
            )
            if progress is not None:
                progress(done, total)
        # Measured against the humans at the end of every run: the page shows it with its time.
        agreement = human_agreement(project=run.project, model=model)
        ScoringRun.objects.filter(pk=run.pk, status=ScoringRunStatus.RUNNING).update(
            status=ScoringRunStatus.SUCCEEDED, finished_at=timezone.now(), human_agreement=agreement
        )
    except Exception as exc:
        logger.exception("scoring run %s failed", run.pk)
        ScoringRun.objects.filter(pk=run.pk).update(
            status=ScoringRunStatus.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
    run.refresh_from_db()
    return run


def _score_row(qa: QAPair, model: RegisteredModel, result: dict[str, Any]) -> ModerationScore:
    scores = [result["category_scores"][key] for key in CATEGORY_KEYS]
    mask = sum(1 << c for c, key in enumerate(CATEGORY_KEYS) if result["categories"][key])
    return ModerationScore(
        qa_pair=qa,
        model=model,
        scores=scores,
        categories=mask,
        flagged=result["flagged"],
        unsafe_score=max(scores),
    )
