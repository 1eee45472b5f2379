"""import_data SLUG FILE --format F: counts on stdout, errors as `line N: field: message`, exit non-zero."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import ImportRecord, Prompt, QAPair

pytestmark = pytest.mark.django_db


def call(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_data", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_it_imports_a_file_and_prints_the_counts(project):
    path = settings.SHARED_DATA_DIR / "beavertails_30k_train_sample_140.csv"

    out, _ = call(project.slug, str(path), "--format", "beavertails", "--no-progress")

    assert f"imported {path.name} into {project.slug}" in out
    assert "qa_pairs_created" in out and "140" in out
    assert QAPair.objects.filter(project=project).count() == 140


def test_it_prints_each_error_and_fails(project, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "ok", "response": "ok"}) + "\n" + json.dumps({"prompt": "  "}) + "\n"
    )
    err = io.StringIO()

    with pytest.raises(CommandError, match=r"bad\.jsonl was rejected with 2 errors; nothing was stored"):
        call_command("import_data", project.slug, str(path), "--format", "qa", stderr=err)

    assert err.getvalue().splitlines() == [
        "line 2: prompt: must not be empty or only whitespace",
        "line 2: response: required field is missing",
    ]
    assert not Prompt.objects.exists()
    assert ImportRecord.objects.get().status == ImportRecord.Status.FAILED


def test_it_shows_a_progress_bar_on_stderr(project, tmp_path, capsys):
    path = tmp_path / "rows.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"p{n}", "response": f"r{n}"}) + "\n" for n in range(6_000))
    )

    call_command("import_data", project.slug, str(path), "--format", "qa", "--progress", stdout=io.StringIO())

    assert "rows/s" in capsys.readouterr().err


def test_it_names_a_missing_project_or_file(project, tmp_path):
    with pytest.raises(CommandError, match="No project with slug 'nope'"):
        call("nope", str(tmp_path / "x.jsonl"), "--format", "qa")
    with pytest.raises(CommandError, match="No such file"):
        call(project.slug, str(tmp_path / "missing.jsonl"), "--format", "qa")


def test_it_records_the_importing_user(project, researcher, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "p", "response": "r"}) + "\n")

    call(project.slug, str(path), "--format", "qa", "--user", researcher.username)

    assert ImportRecord.objects.get().created_by == researcher
