"""The signed-in user's own page: who they are, their projects and role in each, and their API token
(see it, rotate it, revoke it), with the line that uses it."""

from __future__ import annotations

from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotate.models import Membership
from annotate.tokens import token_revoke, token_rotate, token_status
from frontend.views import HtmxHttpRequest, render_page


@login_required
@require_GET
def profile_page(request: HtmxHttpRequest) -> HttpResponse:
    memberships = (
        Membership.objects.filter(user_id=cast(int, request.user.pk))
        .select_related("project")
        .order_by("project__name")
    )
    context = {
        "memberships": memberships,
        "token": token_status(request.user),
        "api_root": request.build_absolute_uri("/api/v1/"),
    }
    return render_page(request, "frontend/profile.html", context)


@login_required
@require_POST
def profile_token(request: HtmxHttpRequest) -> HttpResponse:
    """Rotate (action=rotate) or revoke (action=revoke) the user's own token; nobody else's."""
    action = request.POST.get("action")
    if request.POST.get("confirm") != "yes":
        messages.error(request, "Tick the confirmation first: the current token stops working.")
    elif action == "rotate":
        token_rotate(user=request.user)
        messages.success(request, "You have a new API token; the old one no longer works.")
    elif action == "revoke":
        if token_revoke(user=request.user):
            messages.success(request, "Your API token is revoked: API calls with it are refused.")
        else:
            messages.info(request, "You had no API token.")
    else:
        messages.error(request, "Choose to rotate or to revoke the token.")
    return redirect(reverse("frontend:profile"))
