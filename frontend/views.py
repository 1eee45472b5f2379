"""Browser views. Thin: access through annotate.access, reads through selectors, writes through services.

Each page is one template with `{% partialdef %}` sections; an htmx request gets just the section it
swaps (`render_page`), any other request the whole page, so every link and form also works without
JavaScript.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect
from django_htmx.middleware import HtmxDetails

from annotate.access import DATA_ROLES, LABEL_ROLES, MANAGE_ROLES, get_project_for_user
from annotate.importing import ImportIssue, ImportRejected, import_file
from annotate.models import ImportRecord, Membership, Project, Role
from annotate.selectors import project_counts, projects_counts, projects_for_user
from annotate.services import project_create, user_can_create_projects
from frontend.forms import ImportForm, ProjectCreateForm, add_service_errors, format_choices_help

RECENT_IMPORTS = 20


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def render_page(
    request: HtmxHttpRequest, template: str, context: dict[str, Any], *, partial: str | None = None
) -> HttpResponse:
    """The whole page, or only its `partial` section when htmx asks (a boosted link wants the page)."""
    if partial is not None and request.htmx and not request.htmx.boosted:
        template = f"{template}#{partial}"
    return render(request, template, context)


def _project_context(project: Project) -> dict[str, Any]:
    """What every project page needs to show the right tabs and actions for the viewer's role."""
    role = project.viewer_role  # type: ignore[attr-defined]
    return {
        "project": project,
        "role": role,
        "can_manage": role in MANAGE_ROLES,
        "can_import": role in DATA_ROLES,
        "can_label": role in LABEL_ROLES,
        # Annotators see no trace of gold (how much there is, how often it comes, how they are judged).
        "sees_gold": role in DATA_ROLES,
    }


@login_required
def project_list(request: HtmxHttpRequest) -> HttpResponse:
    rows = []
    projects = list(projects_for_user(request.user))
    counts = projects_counts(projects)
    for project in projects:
        # A superuser sees every project; where they hold no membership they act as admin.
        role = project.viewer_role or (Role.ADMIN if request.user.is_superuser else None)  # type: ignore[attr-defined]
        rows.append(
            {
                "project": project,
                "role": role,
                "counts": counts[project.pk],
                "can_import": role in DATA_ROLES,
                "can_label": role in LABEL_ROLES,
                "sees_gold": role in DATA_ROLES,
            }
        )
    return render_page(
        request,
        "frontend/project_list.html",
        {
            "rows": rows,
            "can_create": user_can_create_projects(request.user),
            "show_gold": any(row["sees_gold"] for row in rows),
        },
        partial="project-table",
    )


@login_required
def project_detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug)
    context = _project_context(project)
    context["counts"] = project_counts(project)
    if context["can_manage"]:
        members = Membership.objects.filter(project=project).select_related("user").order_by("user__username")
        context["members_by_role"] = [
            (label, [m for m in members if m.role == value]) for value, label in Role.choices
        ]
    return render_page(request, "frontend/project_detail.html", context, partial="counts")


@login_required
@require_http_methods(["GET", "POST"])
def project_new(request: HtmxHttpRequest) -> HttpResponse:
    if not user_can_create_projects(request.user):
        raise PermissionDenied("Only admins and researchers can create projects.")
    form = ProjectCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            project = project_create(created_by=request.user, **form.cleaned_data)  # type: ignore[arg-type]
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Project “{project.name}” created. You are its admin.")
            url = reverse("frontend:project-detail", args=[project.slug])
            return HttpResponseClientRedirect(url) if request.htmx else redirect(url)
    return render_page(request, "frontend/project_new.html", {"form": form}, partial="project-form")


@login_required
@require_http_methods(["GET", "POST"])
def project_import(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    form = ImportForm()
    result: dict[str, Any] | None = None
    rejected: list[ImportIssue] | None = None
    truncated = False
    if request.method == "POST":
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                outcome = import_file(
                    project=project,
                    file=upload,
                    filename=upload.name,
                    format=form.cleaned_data["format"],
                    user=request.user,
                )
            except ImportRejected as exc:
                rejected = list(exc.errors)
                truncated = bool(getattr(exc, "truncated", False))
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                if not request.htmx:
                    # Post/redirect/get: a reload must not upload the file again.
                    messages.success(request, f"Imported {upload.name}.")
                    return redirect(f"{request.path}?record={outcome.record.pk}")
                result = {"filename": upload.name, "counts": outcome.counts, "record": outcome.record}
                form = ImportForm(initial={"format": form.cleaned_data["format"]})
    elif (record_id := request.GET.get("record", "")).isdigit():
        # The result page after a plain (no-JavaScript) upload: the counts come from its ImportRecord.
        record = ImportRecord.objects.filter(project=project, pk=int(record_id)).first()
        if record is not None and record.status == ImportRecord.Status.SUCCEEDED:
            result = {"filename": record.filename, "counts": record.counts, "record": record}

    imports = ImportRecord.objects.filter(project=project).select_related("created_by")
    context = _project_context(project)
    context.update(
        {
            "form": form,
            "result": result,
            "rejected": rejected,
            "truncated": truncated,
            "formats": format_choices_help(),
            "max_errors": settings.IMPORT_MAX_ERRORS,
            "field_limit_kib": settings.IMPORT_MAX_FIELD_BYTES // 1024,
            "imports": imports[:RECENT_IMPORTS],
        }
    )
    return render_page(request, "frontend/project_import.html", context, partial="import-panel")
