"""The Team page (admins of a project): its members with their role and what they did, adding an existing
user or creating an account, changing a role, removing a member. Every change goes through the same
services as the API (annotate.services), so leases are released and each change is audited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods

from annotate.access import MANAGE_ROLES, get_project_for_user
from annotate.exclusion import labels_exclude
from annotate.models import Membership, Project, Role
from annotate.selectors import project_members
from annotate.services import (
    membership_pause,
    membership_remove,
    membership_resume,
    membership_set,
    user_create,
)
from frontend.views import HtmxHttpRequest, _project_context, render_page


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.ANNOTATOR)
    create_account = forms.BooleanField(
        required=False,
        label="Create the account",
        help_text="Its password and API token are shown once, to hand over.",
    )
    email = forms.EmailField(required=False, label="Email")


def _team_url(project: Project) -> str:
    from django.urls import reverse

    return reverse("frontend:team", args=[project.slug])


def _page(
    request: HtmxHttpRequest, project: Project, *, form: AddMemberForm, created: Any = None
) -> HttpResponse:
    context = {
        **_project_context(project),
        "members": project_members(project),
        "form": form,
        "roles": Role.choices,
        "created": created,
    }
    return render_page(request, "frontend/team.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def team_page(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
    if request.method == "GET":
        return _page(request, project, form=AddMemberForm())
    form = AddMemberForm(request.POST)
    if not form.is_valid():
        return _page(request, project, form=form)
    data = form.cleaned_data
    try:
        with transaction.atomic():
            if data["create_account"]:
                _, password, token = user_create(
                    username=data["username"], role=data["role"], project=project, email=data["email"]
                )
                created = {"username": data["username"], "password": password, "token": token}
                # The secrets are shown on this answer only: no redirect, nothing stored to show again.
                return _page(request, project, form=AddMemberForm(), created=created)
            user = User.objects.filter(username=data["username"]).first()
            if user is None:
                raise ValidationError(f"No user {data['username']!r}: tick “Create the account” to make one.")
            if Membership.objects.filter(project=project, user=user).exists():
                raise ValidationError(f"{user.username} is already a member: change their role in the table.")
            membership_set(project=project, user=user, role=data["role"], actor=request.user)
    except ValidationError as exc:
        form.add_error(None, " ".join(exc.messages))
        return _page(request, project, form=form)
    messages.success(request, f"{data['username']} joined as {data['role']}.")
    return redirect(_team_url(project))


def _membership(request: HtmxHttpRequest, slug: str, username: str) -> tuple[Project, Membership]:
    """The caller must be an admin of the project now; the member must be in it (else 404)."""
    project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), project=project, user__username=username
    )
    return project, membership


@login_required
@require_http_methods(["POST"])
def team_member_role(request: HtmxHttpRequest, slug: str, username: str) -> HttpResponse:
    project, membership = _membership(request, slug, username)
    try:
        membership_set(
            project=project, user=membership.user, role=request.POST.get("role", ""), actor=request.user
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"{username} is now {request.POST.get('role')}.")
    return redirect(_team_url(project))


@login_required
@require_http_methods(["POST"])
def team_member_remove(request: HtmxHttpRequest, slug: str, username: str) -> HttpResponse:
    project, membership = _membership(request, slug, username)
    try:
        released = membership_remove(
            project=project,
            user=membership.user,
            actor=request.user,
            reason=request.POST.get("reason", "")[:500],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        leases = (
            f"; {released} open task{'s' if released != 1 else ''} went back to the pool" if released else ""
        )
        messages.success(request, f"{username} was removed from the project{leases}.")
    return redirect(_team_url(project))


@login_required
@require_http_methods(["POST"])
def team_member_pause(request: HtmxHttpRequest, slug: str, username: str) -> HttpResponse:
    """Pause an annotator's labelling (with a reason), or resume it."""
    project, membership = _membership(request, slug, username)
    try:
        if request.POST.get("action") == "resume":
            membership_resume(project=project, user=membership.user, actor=request.user)
            notice = f"{username} may label again."
        else:
            released = membership_pause(
                project=project,
                user=membership.user,
                actor=request.user,
                reason=request.POST.get("reason", ""),
            )
            notice = f"{username} is paused" + (
                f"; {released} open task(s) went back to the pool." if released else "."
            )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, notice)
    return redirect(_team_url(project))


@login_required
@require_http_methods(["POST"])
def team_member_exclude(request: HtmxHttpRequest, slug: str, username: str) -> HttpResponse:
    """Exclude the member's labels so far from consensus, with a reason (the form asks to confirm)."""
    project, membership = _membership(request, slug, username)
    if request.POST.get("confirm") != "yes":
        messages.error(request, f"Tick the confirmation to exclude {username}'s labels.")
        return redirect(_team_url(project))
    try:
        exclusion = labels_exclude(
            project=project, user=membership.user, actor=request.user, reason=request.POST.get("reason", "")
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        excluded = exclusion.stage1_labels + exclusion.stage2_labels
        undone = exclusion.items_reopened
        messages.success(
            request,
            f"{excluded} label{'s' if excluded != 1 else ''} of {username} no longer count: the items they "
            "held are open to other workers again"
            + (f", {undone} of them without the consensus they had" if undone else "")
            + ". The agreement report is being recomputed.",
        )
    return redirect(_team_url(project))
