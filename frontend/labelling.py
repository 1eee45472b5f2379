"""The worker's labelling screen for both stages.

One page per stage. The task area is the `task` partial: a submit or skip posted by htmx answers with
the next task's partial (no full page load); without JavaScript the same forms post, then redirect
back to the page (post/redirect/get), which claims or re-shows the worker's lease.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from annotate.access import LABEL_ROLES, get_assignment_for_worker, get_project_for_user
from annotate.assignment import assignment_claim, assignment_skip, label_submit
from annotate.categories import HARM_CATEGORIES, SHORT_LABELS
from annotate.models import Assignment, AssignmentStatus, Project, Stage, WorkItem
from annotate.selectors import (
    assignment_view,
    submitted_answer,
    worker_last_submission,
    worker_progress,
    worker_recent_answers,
)
from frontend.markdown import render_markdown
from frontend.views import HtmxHttpRequest, render_page

# Stage-1 shortcut keys: a..n for the 14 categories in their released order. The other keys the
# screen uses (s safe, x skip, u revise, ? guidelines, Enter submit) stay outside that range.
CATEGORY_KEYS = "abcdefghijklmn"
STAGE_TITLES = {Stage.CLASSIFY: "Stage 1 · Harm classification", Stage.RANK: "Stage 2 · Preference ranking"}


def _stage(stage: int) -> int:
    if stage not in Stage.values:
        raise Http404("No such stage.")
    return stage


def categories_with_keys(chosen: list[str] | None = None) -> list[dict[str, Any]]:
    chosen_set = set(chosen or [])
    return [
        {"key": c.key, "label": c.label, "short_label": SHORT_LABELS[c.id], "description": c.description,
         "shortcut": CATEGORY_KEYS[c.id], "checked": c.key in chosen_set}
        for c in HARM_CATEGORIES
    ]  # fmt: skip


def _task_context(
    request: HtmxHttpRequest,
    project: Project,
    stage: int,
    assignment: Assignment | None,
    *,
    error: str | None = None,
    answer: dict[str, Any] | None = None,
    revising: bool = False,
    confirm_change: dict[str, str] | None = None,
) -> dict[str, Any]:
    answer = answer or {}
    return {
        "confirm_change": confirm_change,
        "project": project,
        "stage": stage,
        "stage_title": STAGE_TITLES[Stage(stage)],
        "assignment": assignment,
        "task": assignment_view(assignment) if assignment is not None else None,
        "categories": categories_with_keys(answer.get("categories")),
        "answer": answer,
        "error": error,
        "revising": revising,
        "progress": worker_progress(project=project, worker=request.user, stage=stage),
        # Nothing to show: is the stage done for this worker, or has nothing been imported yet?
        "stage_is_empty": assignment is None
        and not WorkItem.objects.filter(project=project, stage=stage).exists(),
        "can_revise": not revising
        and worker_last_submission(project=project, worker=request.user, stage=stage) is not None,
    }


def _page(request: HtmxHttpRequest, context: dict[str, Any], *, status: int = 200) -> HttpResponse:
    context["guidelines_html"] = render_markdown(context["project"].guidelines)
    response = render_page(request, "frontend/label.html", context, partial="task")
    response.status_code = status
    return response


def _label_url(project: Project, stage: int) -> str:
    return reverse("frontend:label", args=[project.slug, stage])


@login_required
def label_page(request: HtmxHttpRequest, slug: str, stage: int) -> HttpResponse:
    """Show the worker's current task in a stage, claiming the next one when they hold none."""
    project = get_project_for_user(request.user, slug, roles=LABEL_ROLES)
    stage = _stage(stage)
    assignment = assignment_claim(project=project, worker=request.user, stage=stage)
    return _page(request, _task_context(request, project, stage, assignment))


def _answer_from_form(request: HtmxHttpRequest, stage: int) -> dict[str, Any]:
    if stage == Stage.CLASSIFY:
        categories = request.POST.getlist("categories")
        if not categories and request.POST.get("safe") != "1":
            raise ValidationError("Choose at least one harm category, or mark the answer safe (key s).")
        return {"categories": categories}
    answer: dict[str, Any] = {}
    for field in ("better_response_id", "safer_response_id"):
        value = request.POST.get(field)
        if value not in ("0", "1"):
            question = "more helpful" if field.startswith("better") else "more harmless"
            raise ValidationError(f"Choose which response is {question}.")
        answer[field] = int(value)
    return answer


def _choices_as_posted(request: HtmxHttpRequest, stage: int) -> dict[str, Any]:
    """What the worker had chosen, valid or not, so that a refused submit shows it again."""
    if stage == Stage.CLASSIFY:
        return {"categories": request.POST.getlist("categories")}
    return {
        field: int(value)
        for field in ("better_response_id", "safer_response_id")
        if (value := request.POST.get(field)) in ("0", "1")
    }


def answer_summary(stage: int, answer: dict[str, Any]) -> str:
    """An answer in words, as the worker saw the task (for their history and the change confirmation)."""
    if stage == Stage.CLASSIFY:
        labels = {c.key: c.label for c in HARM_CATEGORIES}
        chosen = [labels.get(key, key) for key in answer.get("categories", [])]
        return "Safe: no category" if not chosen else "; ".join(chosen)
    names = ("A", "B")
    better, safer = answer.get("better_response_id"), answer.get("safer_response_id")
    return (
        f"{names[better] if better in (0, 1) else '?'} more helpful, "
        f"{names[safer] if safer in (0, 1) else '?'} more harmless"
    )


def _same_answer(stage: int, one: dict[str, Any], other: dict[str, Any]) -> bool:
    if stage == Stage.CLASSIFY:
        return set(one.get("categories", [])) == set(other.get("categories", []))
    return all(one.get(f) == other.get(f) for f in ("better_response_id", "safer_response_id"))


def _next_after_post(request: HtmxHttpRequest, project: Project, stage: int) -> HttpResponse:
    if not request.htmx:
        return redirect(_label_url(project, stage))
    assignment = assignment_claim(project=project, worker=request.user, stage=stage)
    return _page(request, _task_context(request, project, stage, assignment))


def _own_assignment(request: HtmxHttpRequest, slug: str, stage: int, assignment_id: int) -> Assignment:
    assignment = get_assignment_for_worker(request.user, assignment_id)
    if assignment.project.slug != slug or assignment.stage != stage:
        raise Http404("No such assignment.")
    return assignment


@login_required
@require_POST
def label_submit_view(request: HtmxHttpRequest, slug: str, stage: int, assignment_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=LABEL_ROLES)
    stage = _stage(stage)
    assignment = _own_assignment(request, slug, stage, assignment_id)
    revising = assignment.status == AssignmentStatus.SUBMITTED
    try:
        answer = _answer_from_form(request, stage)
        if revising and request.POST.get("confirm") != "1":
            previous = submitted_answer(assignment)
            if _same_answer(stage, answer, previous):
                return _next_after_post(request, project, stage)
            # A revision replaces an answer given earlier, often minutes ago: ask before changing it.
            change = {"old": answer_summary(stage, previous), "new": answer_summary(stage, answer)}
            context = _task_context(
                request, project, stage, assignment, answer=answer, revising=True, confirm_change=change
            )
            return _page(request, context)
        label_submit(assignment=assignment, payload=answer)
    except ValidationError as exc:
        answer = _choices_as_posted(request, stage)
        context = _task_context(
            request,
            project,
            stage,
            assignment,
            error=" ".join(exc.messages),
            answer=answer,
            revising=revising,
        )
        # htmx swaps only 2xx answers by default; the error is part of the re-rendered task.
        return _page(request, context, status=200 if request.htmx else 400)
    return _next_after_post(request, project, stage)


@login_required
@require_POST
def label_skip_view(request: HtmxHttpRequest, slug: str, stage: int, assignment_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=LABEL_ROLES)
    stage = _stage(stage)
    assignment = _own_assignment(request, slug, stage, assignment_id)
    try:
        assignment_skip(assignment=assignment, reason=request.POST.get("reason", ""))
    except ValidationError as exc:
        context = _task_context(request, project, stage, assignment, error=" ".join(exc.messages))
        return _page(request, context, status=200 if request.htmx else 400)
    return _next_after_post(request, project, stage)


@login_required
@require_http_methods(["GET"])
def label_revise_view(request: HtmxHttpRequest, slug: str, stage: int) -> HttpResponse:
    """One of the worker's submissions, pre-filled, while its item has not settled: the one named by
    ?assignment= (from their history list), else the last one (key u)."""
    project = get_project_for_user(request.user, slug, roles=LABEL_ROLES)
    stage = _stage(stage)
    chosen = request.GET.get("assignment", "")
    if chosen.isdigit():
        target = _own_assignment(request, slug, stage, int(chosen))
        if target.status != AssignmentStatus.SUBMITTED:
            raise Http404("No such answer.")
        if target.work_item.settled_at is not None or target.work_item.needs_adjudication:
            context = _task_context(
                request,
                project,
                stage,
                assignment_claim(project=project, worker=request.user, stage=stage),
                error="That item has settled since: its answers can no longer be changed.",
            )
            return _page(request, context)
    else:
        last = worker_last_submission(project=project, worker=request.user, stage=stage)
        if last is None:
            return redirect(_label_url(project, stage))
        target = get_assignment_for_worker(request.user, last.pk)
    context = _task_context(request, project, stage, target, answer=submitted_answer(target), revising=True)
    return _page(request, context)


@login_required
@require_http_methods(["GET"])
def label_history_view(request: HtmxHttpRequest, slug: str, stage: int) -> HttpResponse:
    """The worker's latest answers in the stage, each with a Revise link while its item is unsettled
    (loaded when the worker opens the list, so it costs the labelling loop nothing)."""
    project = get_project_for_user(request.user, slug, roles=LABEL_ROLES)
    stage = _stage(stage)
    answers = worker_recent_answers(project=project, worker=request.user, stage=stage)
    for entry in answers:
        entry["summary"] = answer_summary(stage, entry["answer"])
    context = {"project": project, "stage": stage, "answers": answers}
    return render_page(request, "frontend/label_history.html", context, partial="history")
