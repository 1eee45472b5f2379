"""The researcher's Datasets page: the project's snapshots with their stats, a form to create one, and
download links. A queued or running snapshot's row polls its status partial until the build is done."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from annotate.access import DATA_ROLES, get_project_for_user
from annotate.exporting import snapshot_create
from annotate.exporting.contents import exclusions, source_totals
from annotate.exporting.selectors import snapshots_for_project
from annotate.models import ExportFormat, FileFormat, Snapshot, SnapshotStatus
from frontend.forms import add_service_errors
from frontend.views import HtmxHttpRequest, _project_context, render_page

RECENT_SNAPSHOTS = 50


class SnapshotForm(forms.Form):
    format = forms.ChoiceField(
        choices=ExportFormat.choices,
        help_text="BeaverTails: a row per QA pair. PKU-SafeRLHF: a row per response pair. Raw: every worker label.",
    )
    file_format = forms.ChoiceField(label="File format", choices=FileFormat.choices, initial=FileFormat.JSONL)
    compress = forms.BooleanField(label="gzip the JSON lines files", required=False)
    settled = forms.ChoiceField(
        label="Items",
        required=False,
        choices=[
            ("", "The format's default (settled consensus; raw: every label)"),
            ("settled", "Only settled items"),
            ("all", "Also unsettled items (provisional majority; raw: their labels)"),
        ],
    )
    include_gold = forms.BooleanField(
        label="Use expert (gold) labels where workers have not settled an item",
        required=False,
        initial=False,
        help_text="Off by default: a dataset that measures workers must not hold the expert answers they are "
        "scored against. Tick it for a training set. Raw: ticked keeps the workers' labels given on gold items.",
    )
    min_agreement = forms.FloatField(
        label="Minimum agreement",
        required=False,
        min_value=0,
        max_value=1,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        help_text="Share of an item's labels that agree with its consensus, 0 to 1 (0.66 = two of three).",
    )
    date_from = forms.DateField(
        label="Consensus from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="Consensus until", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    guideline_version = forms.IntegerField(label="Guideline version", required=False, min_value=1)
    test_ratio = forms.FloatField(
        label="Test share",
        min_value=0,
        max_value=0.99,
        initial=0.1,
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        help_text="Share of prompts in the test split (by prompt: no prompt is in both).",
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=42, help_text="Seeds the split.")
    license = forms.CharField(label="Licence", max_length=100, initial="CC-BY-NC-4.0")

    def service_options(self) -> dict[str, Any]:
        data = self.cleaned_data
        filters: dict[str, Any] = {"include_gold": data["include_gold"]}
        if data["settled"]:
            filters["settled_only"] = data["settled"] == "settled"
        for key in ("min_agreement", "guideline_version"):
            if data[key] is not None:
                filters[key] = data[key]
        for key in ("date_from", "date_to"):
            if data[key] is not None:
                filters[key] = data[key].isoformat()
        return {
            "format": data["format"],
            "file_format": data["file_format"],
            "compress": data["compress"],
            "filters": filters,
            "test_ratio": data["test_ratio"],
            "seed": data["seed"],
            "license": data["license"],
        }


def _rows(snapshots: Any) -> list[dict[str, Any]]:
    return [_row(snapshot) for snapshot in snapshots]


def _row(snapshot: Snapshot) -> dict[str, Any]:
    done = snapshot.status in (SnapshotStatus.SUCCEEDED, SnapshotStatus.FAILED)
    filters = {key: value for key, value in (snapshot.filters or {}).items() if value is not None}
    row_counts = snapshot.row_counts or {}
    return {
        "snapshot": snapshot,
        "done": done,
        "percent": round(100 * snapshot.progress),
        "filters": filters,
        # "Sources: 812 worker consensus · 40 adjudicated · 0 expert (gold)" and "Excluded: 120 not
        # settled yet, 8 below agreement 0.8", from the counts the build recorded.
        "sources": source_totals(row_counts),
        "excluded": exclusions(row_counts, snapshot.filters or {}, snapshot.format),
        "downloads": [
            {
                **file,
                "url": reverse(
                    "annotate-api:export-file", kwargs={"snapshot_id": snapshot.pk, "name": file["name"]}
                ),
            }
            for file in snapshot.files
        ]
        if snapshot.status == SnapshotStatus.SUCCEEDED
        else [],
    }


@login_required
@require_http_methods(["GET", "POST"])
def snapshot_list(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    form = SnapshotForm(request.POST or None)
    created: Snapshot | None = None
    if request.method == "POST" and form.is_valid():
        try:
            created = snapshot_create(project=project, user=request.user, **form.service_options())
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            if not request.htmx:
                # Post/redirect/get: a reload must not queue the snapshot again.
                messages.success(request, f"Snapshot #{created.pk} is queued; this page shows its progress.")
                return redirect(reverse("frontend:snapshots", args=[project.slug]))
            form = SnapshotForm(initial={"format": form.cleaned_data["format"]})
    context = {
        **_project_context(project),
        "form": form,
        "created": created,
        "rows": _rows(snapshots_for_project(project)[:RECENT_SNAPSHOTS]),
    }
    return render_page(request, "frontend/snapshots.html", context, partial="snapshot-panel")


@login_required
@require_GET
def snapshot_status(request: HtmxHttpRequest, slug: str, snapshot_id: int) -> HttpResponse:
    """One snapshot's row: what the list polls while the snapshot is queued or running."""
    project = get_project_for_user(request.user, slug, roles=DATA_ROLES)
    snapshot = snapshots_for_project(project).filter(pk=snapshot_id).first()
    if snapshot is None:
        raise Http404("No such snapshot in this project.")
    context = {**_project_context(project), "row": _row(snapshot)}
    return render_page(request, "frontend/snapshots_row.html", context)
