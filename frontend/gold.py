"""Gold quality control pages for admins and researchers: expert labels and each worker's gold accuracy."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotate.access import DATA_ROLES, get_project_for_user
from annotate.assignment import known_safety
from annotate.categories import UnknownCategoryError, keys_from_mask
from annotate.gold import gold_history, gold_scores, gold_stage1_set, gold_stage2_set
from annotate.models import QAPair, ResponsePair
from annotate.selectors import qa_pairs_for_gold_review, response_pairs_for_gold_review
from frontend.labelling import categories_with_keys
from frontend.views import HtmxHttpRequest, _project_context, render_page

PAGE_SIZE = 25


@login_required
def gold_overview(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Worker accuracy on gold (flags first) and a searchable list of QA pairs to mark as gold."""
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    query = request.GET.get("q", "").strip()
    page = Paginator(qa_pairs_for_gold_review(project=project, search=query), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    context = {
        **_project_context(project),
        "scores": gold_scores(project),
        "page": page,
        "query": query,
        "pairs": Paginator(response_pairs_for_gold_review(project=project, search=query), PAGE_SIZE).get_page(
            request.GET.get("pairs_page")
        ),
    }
    return render_page(request, "frontend/gold.html", context, partial="qa-list")


@login_required
@require_http_methods(["GET", "POST"])
def gold_qa_edit(request: HtmxHttpRequest, slug: str, qa_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    qa = get_object_or_404(QAPair.objects.select_related("prompt", "gold"), pk=qa_id, project=project)
    error = None
    if request.method == "POST":
        try:
            gold_stage1_set(
                qa_pair=qa,
                categories=request.POST.getlist("categories"),
                source=f"expert:{request.user.get_username()}",
                changed_by=request.user,
            )
        except UnknownCategoryError as exc:
            error = str(exc)
        else:
            messages.success(request, f"QA pair #{qa.pk} is now a gold item.")
            return redirect(reverse("frontend:gold", args=[project.slug]))
    current = keys_from_mask(qa.gold.categories) if hasattr(qa, "gold") else []
    context = {
        **_project_context(project),
        "qa": qa,
        "categories": categories_with_keys(current),
        "error": error,
        "history": gold_history(project=project, qa_pair_id=qa.pk),
    }
    return render_page(request, "frontend/gold_qa.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def gold_pair_edit(request: HtmxHttpRequest, slug: str, pair_id: int) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    pair = get_object_or_404(
        ResponsePair.objects.select_related("prompt", "qa_a", "qa_b"), pk=pair_id, project=project
    )
    error = None
    if request.method == "POST":
        better, safer = (request.POST.get(name, "") for name in ("better", "safer"))
        try:
            if better not in ("0", "1") or safer not in ("0", "1"):
                raise ValidationError("Choose the more helpful and the more harmless response.")
            gold_stage2_set(
                response_pair=pair,
                better=int(better),
                safer=int(safer),
                source=f"expert:{request.user.get_username()}",
                changed_by=request.user,
            )
        except ValidationError as exc:
            error = " ".join(exc.messages)
        else:
            messages.success(request, f"Response pair #{pair.pk} is now a gold item.")
            return redirect(reverse("frontend:gold", args=[project.slug]))
    gold = getattr(pair, "gold", None)
    # What the form shows checked: a refused answer as the expert gave it, else the stored one.
    shown = (
        {"better": request.POST.get("better"), "safer": request.POST.get("safer")}
        if error
        else {"better": str(gold.better), "safer": str(gold.safer)}
        if gold
        else {}
    )
    safety = known_safety([pair.qa_a_id, pair.qa_b_id])
    context = {
        **_project_context(project),
        "pair": pair,
        "gold": gold,
        "shown": shown,
        "safe_a": safety.get(pair.qa_a_id),
        "safe_b": safety.get(pair.qa_b_id),
        "error": error,
        "history": gold_history(project=project, response_pair_id=pair.pk),
    }
    return render_page(request, "frontend/gold_pair.html", context)
