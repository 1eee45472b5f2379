"""Forms for the browser UI. They check input shape and ranges; the services decide the rest and their
ValidationErrors are put back on the form (see `add_service_errors`)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from annotate.importing import SUPPORTED_EXTENSIONS, SUPPORTED_FORMATS
from annotate.models import Project

# What each import format carries, shown beside the format select so nobody has to look it up.
FORMAT_HELP: dict[str, str] = {
    "qa": "Question-answer pairs to label: prompt, response, optional source (the model).",
    "prompts": "Prompts only (BeaverTails-Evaluation): prompt, category, category_id.",
    "beavertails": "Labelled QA pairs (BeaverTails): prompt, response, category (14 keys), is_safe.",
    "pku-saferlhf": "Ranked response pairs (PKU-SafeRLHF): prompt, response_0/1, safety, better/safer ids.",
}
# The format select's option labels.
FORMAT_LABELS: dict[str, str] = {
    "qa": "QA pairs to label",
    "prompts": "prompts only",
    "beavertails": "labelled QA pairs",
    "pku-saferlhf": "ranked response pairs",
}
# The file picker's filter: every plain extension the importer reads, plus .gz for compressed ones.
ACCEPTED_EXTENSIONS = ",".join(sorted({e.removesuffix(".gz") for e in SUPPORTED_EXTENSIONS} | {".gz"}))
# /projects/<slug>/ would collide with these pages.
RESERVED_SLUGS = frozenset({"new"})


def _format_label(name: str) -> str:
    return f"{name}: {FORMAT_LABELS[name]}" if name in FORMAT_LABELS else name


def _default(field: str) -> Any:
    """The model's default, so the form starts where a project made through the API would."""
    return Project._meta.get_field(field).default  # type: ignore[union-attr]


class ProjectCreateForm(forms.Form):
    slug = forms.SlugField(
        max_length=64,
        help_text="Short name for URLs and the API, like beavertails-v2: letters, digits, hyphens, underscores.",
    )
    name = forms.CharField(max_length=200, help_text="Shown to everyone on the project.")
    guidelines = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 12}),
        help_text="Markdown. Workers see it beside every task; describe what counts as each harm category.",
    )
    overlap_stage1 = forms.IntegerField(
        label="Overlap, stage 1",
        min_value=1,
        max_value=50,
        initial=_default("overlap_stage1"),
        help_text="Distinct workers who label each QA pair.",
    )
    overlap_stage2 = forms.IntegerField(
        label="Overlap, stage 2",
        min_value=1,
        max_value=50,
        initial=_default("overlap_stage2"),
        help_text="Distinct workers who rank each response pair.",
    )
    lease_seconds = forms.IntegerField(
        label="Lease (seconds)",
        min_value=30,
        max_value=86400,
        initial=_default("lease_seconds"),
        help_text="How long a claimed task stays reserved for its worker (600 = 10 minutes).",
    )
    gold_rate = forms.FloatField(
        label="Gold rate",
        min_value=0,
        max_value=1,
        initial=_default("gold_rate"),
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        help_text="Share of tasks served from gold items, 0 to 1 (0.1 = one task in ten).",
    )
    gold_min_items = forms.IntegerField(
        label="Gold items before judging",
        min_value=1,
        max_value=1000,
        initial=_default("gold_min_items"),
        help_text="Gold answers a worker gives before their gold accuracy counts.",
    )
    gold_accuracy_threshold = forms.FloatField(
        label="Gold accuracy threshold",
        min_value=0,
        max_value=1,
        initial=_default("gold_accuracy_threshold"),
        widget=forms.NumberInput(attrs={"step": "0.01"}),
        help_text="Workers below this accuracy on gold are flagged for the admin.",
    )
    max_pairs_per_prompt = forms.IntegerField(
        label="Stage-2 pairs per prompt",
        required=False,
        min_value=1,
        help_text="Cap on response pairs made from one prompt's answers. Empty = all pairs.",
    )

    def clean_slug(self) -> str:
        slug = str(self.cleaned_data["slug"]).lower()
        if slug in RESERVED_SLUGS:
            raise ValidationError(f"“{slug}” is reserved for a page of the site; choose another slug.")
        return slug


class ImportForm(forms.Form):
    file = forms.FileField(
        # The importer reports an empty file itself, with its other errors and in the import history.
        allow_empty_file=True,
        help_text="JSON lines (.jsonl), JSON array (.json), CSV or Parquet; .gz compressed is fine.",
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPTED_EXTENSIONS}),
    )
    format = forms.ChoiceField(
        choices=[("", "Choose a format…"), *((name, _format_label(name)) for name in SUPPORTED_FORMATS)],
        help_text="What each row holds; the formats are described beside this form.",
    )


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form: on its field when the form has one, else on top."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, error)


def format_choices_help() -> list[dict[str, Any]]:
    return [{"name": name, "help": FORMAT_HELP.get(name, "")} for name in SUPPORTED_FORMATS]
