"""The project's Moderation page (researchers and admins): the active QA-moderation model and its test
metrics, the models to choose from, scoring the project's QA pairs, the model measured against the
human consensus and annotators, and the pairs where model and humans disagree most.

htmx: the runs section polls while a run is queued or running; without JavaScript the buttons are plain
forms and a reload shows the latest state.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from annotate.access import DATA_ROLES, get_project_for_user
from annotate.categories import HARM_CATEGORIES
from annotate.models import Project
from frontend.views import HtmxHttpRequest, _project_context, render_page
from moderation.models import ScoringRun, ScoringRunStatus
from moderation.selectors import disagreements, latest_runs, scored_count
from moderation.services import scoring_run_create
from training.access import get_model_for_user
from training.models import JobKind, RegisteredModel
from training.selectors import active_model, models_for_user
from training.services import model_activate

POLL_SECONDS = 3
DISAGREEMENTS_PER_PAGE = 20
ACTIVE_RUN = (ScoringRunStatus.QUEUED, ScoringRunStatus.RUNNING)


def _agreement_run(project: Project, model: RegisteredModel | None) -> ScoringRun | None:
    """The latest finished run of the active model: its stored comparison with the humans."""
    if model is None:
        return None
    return (
        ScoringRun.objects.filter(project=project, model=model, status=ScoringRunStatus.SUCCEEDED)
        .order_by("-finished_at", "-pk")
        .first()
    )


def _labels(mask: int) -> list[str]:
    return [c.label for c in HARM_CATEGORIES if mask & (1 << c.id)]


def _disagreement_rows(page: Any) -> list[dict[str, Any]]:
    return [
        {
            "score": score,
            "qa": score.qa_pair,
            "consensus": _labels(score.consensus_categories),
            "model": _labels(score.categories),
        }
        for score in page
    ]


@login_required
def moderation_page(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    model = active_model(JobKind.MODERATION, project)
    runs = list(latest_runs(project))
    agreement_run = _agreement_run(project, model)
    page = None
    if model is not None:
        page = Paginator(disagreements(project=project, model=model), DISAGREEMENTS_PER_PAGE).get_page(
            request.GET.get("page")
        )
    context = {
        **_project_context(project),
        "model": model,
        "model_scope": "project"
        if model is not None and model.activations.filter(project=project).exists()
        else "platform",
        "metrics": (model.eval_metrics or {}).get("metrics", {}) if model is not None else {},
        "models": list(
            models_for_user(request.user, kind=JobKind.MODERATION).filter(snapshot__project=project)[:20]
        ),
        "runs": runs,
        "polling": any(run.status in ACTIVE_RUN for run in runs),
        "poll_seconds": POLL_SECONDS,
        "scored": scored_count(project, model) if model is not None else 0,
        "agreement": agreement_run.human_agreement if agreement_run is not None else None,
        "agreement_run": agreement_run,
        "page": page,
        "rows": _disagreement_rows(page) if page is not None else [],
    }
    return render_page(request, "frontend/moderation.html", context, partial="runs")


@login_required
@require_POST
def moderation_activate(request: HtmxHttpRequest, slug: str, model_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    model = get_model_for_user(request.user, model_id)
    try:
        model_activate(model=model, project=project, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Model #{model.pk} is now the active moderation model of {project.name}.")
    return redirect(reverse("frontend:moderation", args=[project.slug]))


@login_required
@require_POST
def moderation_score(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    model = active_model(JobKind.MODERATION, project)
    if model is None:
        messages.error(request, "Activate a moderation model first.")
    else:
        run = scoring_run_create(project=project, model=model, user=request.user)
        messages.success(
            request, f"Scoring run #{run.pk} is queued: the pairs model #{model.pk} has not scored yet."
        )
    return redirect(reverse("frontend:moderation", args=[project.slug]))
