"""`manage.py agreement SLUG [--json]`."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from annotate.models import AgreementReport
from tests.annotate.labelled_project import build

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command("agreement", *args, stdout=out)
    return out.getvalue()


def test_it_prints_a_summary_and_stores_the_report(project):
    build(project)
    text = _run(project.slug)
    report = AgreementReport.objects.get(project=project)
    alpha = report.payload["stage1"]["is_safe"]["alpha"]["value"]
    assert "Stage 1: 22 labels on 8 items by 3 workers" in text
    line = next(line for line in text.splitlines() if line.startswith("stage 1 is_safe"))
    assert f"{alpha:.3f}" in line
    assert "animal_abuse" in text and "no variation" in text
    assert "stage 1 category set (MASI)" in text
    worker_lines = [line for line in text.splitlines() if line.split()[:1] in (["ann"], ["bob"], ["cat"])]
    assert len(worker_lines) == 3
    assert "FLAG" in next(line for line in worker_lines if line.startswith("bob"))


def test_json_prints_the_stored_payload(project):
    build(project)
    payload = json.loads(_run(project.slug, "--json"))
    assert payload == AgreementReport.objects.get(project=project).payload
    assert payload["stage1"]["labels"] == 22


def test_an_empty_project_prints_reasons_not_errors(project):
    text = _run(project.slug)
    assert "no data" in text and "No workers yet." in text and "No alerts." in text


def test_alerts_are_listed(project, monkeypatch):
    import annotate.agreement_report as report

    build(project)
    project.agreement_alert_threshold = 0.99
    project.save()
    # Eight items are too few to alert on; with the minimum lowered, the alert is listed with its n.
    assert "No alerts." in _run(project.slug)
    monkeypatch.setattr(report, "ALERT_MIN_UNITS", 1)
    text = _run(project.slug)
    assert "Alerts:\n  Stage 1 · Is safe · alpha" in text and "(n = " in text


def test_an_unknown_project_is_an_error(db):
    with pytest.raises(CommandError, match="No project"):
        _run("nope")
