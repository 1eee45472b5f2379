"""The Settings page (admins of a project): guidelines, overlap, leases, gold and the agreement alert.

Saving goes through annotate.services.project_settings_update, as the API's PATCH does: a new guideline
version when the text changes, the queue recomputed when an overlap changes, the agreement report
recomputed when a figure it depends on changes, and each change in the audit log."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from annotate.access import MANAGE_ROLES, get_project_for_user
from annotate.models import Project
from annotate.services import project_settings_update
from frontend.views import HtmxHttpRequest, _project_context, render_page

SETTINGS_FIELDS = (
    "name",
    "guidelines",
    "overlap_stage1",
    "overlap_stage2",
    "lease_seconds",
    "max_pairs_per_prompt",
    "gold_rate",
    "gold_min_items",
    "gold_accuracy_threshold",
    "agreement_alert_threshold",
    "annotators_may_moderate",
)


class ProjectSettingsForm(forms.ModelForm):
    # The same bounds as the API's PATCH (annotate.api.projects), said on the field that breaks them.
    overlap_stage1 = forms.IntegerField(min_value=1, max_value=50, label="Workers per QA pair (stage 1)")
    overlap_stage2 = forms.IntegerField(
        min_value=1, max_value=50, label="Workers per response pair (stage 2)"
    )
    lease_seconds = forms.IntegerField(min_value=30, max_value=86400, label="Task reservation (seconds)")
    max_pairs_per_prompt = forms.IntegerField(
        min_value=1,
        required=False,
        label="Stage-2 pairs per prompt (at most)",
        help_text="Empty: every pair.",
    )
    gold_rate = forms.FloatField(min_value=0, max_value=1, help_text="Share of tasks served from gold items.")
    gold_min_items = forms.IntegerField(min_value=1, max_value=1000)
    gold_accuracy_threshold = forms.FloatField(min_value=0, max_value=1)
    agreement_alert_threshold = forms.FloatField(min_value=-1, max_value=1)

    class Meta:
        model = Project
        fields = SETTINGS_FIELDS
        widgets = {"guidelines": forms.Textarea(attrs={"rows": 12})}


def changed_settings(project: Project, cleaned: dict[str, Any]) -> dict[str, Any]:
    return {name: cleaned[name] for name in SETTINGS_FIELDS if cleaned[name] != getattr(project, name)}


@login_required
@require_http_methods(["GET", "POST"])
def project_settings_page(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=MANAGE_ROLES)
    if request.method == "POST":
        # The form validates on a copy: the project itself changes only through the service.
        form = ProjectSettingsForm(request.POST, instance=Project.objects.get(pk=project.pk))
        if form.is_valid():
            changes = changed_settings(project, form.cleaned_data)
            try:
                project_settings_update(project=project, changes=changes, actor=request.user)
            except ValidationError as exc:
                form.add_error(None, " ".join(exc.messages))
            else:
                names = ", ".join(str(form.fields[name].label or name) for name in changes) or "nothing"
                messages.success(request, f"Saved. Changed: {names}.")
                return redirect(reverse("frontend:project-settings", args=[project.slug]))
    else:
        form = ProjectSettingsForm(instance=project)
    context = {**_project_context(project), "form": form}
    return render_page(request, "frontend/project_settings.html", context)
