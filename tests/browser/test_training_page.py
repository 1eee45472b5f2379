"""The training job page in real Chromium: live progress by htmx polling, charts redrawn in place,
and the model with its histogram once the job ends."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from tests.training.job_helpers import make_job, make_pku_snapshot
from training.models import JobStatus, RegisteredModel, TrainingJob

pytestmark = pytest.mark.browser

# A real PNG (1x1), so the browser decodes it.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cf000000020001e221bc330000000049454e44ae426082"
)


def points(last):
    return [
        {
            "event": "log",
            "step": s,
            "max_steps": 20,
            "epoch": s / 10,
            "loss": 1 / s,
            "accuracy": min(1, 0.5 + s / 40),
        }
        for s in range(1, last + 1)
    ]


def test_the_job_page_follows_a_running_job_to_its_model(
    page, project, researcher, login, shot, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    snapshot = make_pku_snapshot(project)
    job = make_job(
        snapshot,
        status=JobStatus.RUNNING,
        progress=0.2,
        metrics=points(4),
        log_tail="step 4",
        worker_host="gpu-1",
    )
    login(page, "researcher")
    page.goto(f"/projects/{project.slug}/training/jobs/{job.pk}/")
    assert page.get_by_test_id("job-progress").inner_text() == "20.0%"
    page.wait_for_function(
        "() => window.Chart && Chart.getChart(document.querySelector('canvas[data-training-chart=loss]'))"
    )
    assert (
        page.evaluate(
            "Chart.getChart(document.querySelector('canvas[data-training-chart=loss]')).data.datasets[0].data.length"
        )
        == 4
    )
    shot(page, "training-job-running")

    TrainingJob.objects.filter(pk=job.pk).update(progress=0.6, metrics=points(12), log_tail="step 12")
    page.get_by_test_id("job-progress").filter(has_text="60.0%").wait_for(timeout=15_000)
    page.wait_for_function(
        "() => Chart.getChart(document.querySelector('canvas[data-training-chart=loss]')).data.datasets[0].data.length === 12"
    )
    assert page.get_by_test_id("log-tail").inner_text() == "step 12"

    path = default_storage.save(f"training/{job.pk}/score_histogram.png", ContentFile(PNG))
    files = [{"name": "score_histogram.png", "path": path, "content_type": "image/png"}]
    TrainingJob.objects.filter(pk=job.pk).update(
        progress=1.0,
        metrics=[*points(20), {"event": "eval", "step": 20, "final": True, "test_accuracy": 0.9}],
        eval_metrics={"metrics": {"accuracy": 0.9, "pairs": 16.0}, "global_step": 20, "files": files},
    )
    RegisteredModel.objects.create(
        job=job, kind="reward", path="/jobs/1/model", base_model="/m", snapshot=snapshot, config_hash="h"
    )
    job.refresh_from_db()
    from training import state

    state.apply(job, state.SUCCEED)
    page.get_by_test_id("artifact").wait_for(timeout=15_000)
    assert page.get_by_test_id("job-status").inner_text() == "Succeeded"
    assert page.evaluate("document.querySelector('img.training-histogram').naturalWidth") == 1
    assert page.locator("#job-status[hx-trigger]").count() == 0  # polling stopped
    shot(page, "training-job-succeeded")


def test_launch_a_job_without_javascript(
    no_js_page, project, researcher, shot, settings, tmp_path, monkeypatch
):
    from training.tasks import run_job

    settings.MEDIA_ROOT = tmp_path / "media"
    monkeypatch.setattr(run_job, "delay", lambda job_id: None)
    snapshot = make_pku_snapshot(project)
    page = no_js_page
    page.goto("/login/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill("Test-pass-123")
    page.get_by_role("button", name="Log in").click()
    page.goto(f"/projects/{project.slug}/training/")
    shot(page, "training-overview")
    page.get_by_role("link", name=f"Cost model from snapshot {snapshot.pk}").click()
    page.get_by_label("Epochs").fill("1")
    shot(page, "training-new")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url("**/training/jobs/*/")
    job = TrainingJob.objects.get()
    assert job.kind == "cost" and job.config["epochs"] == 1.0
    assert page.get_by_test_id("job-status").inner_text() == "Queued"
    shot(page, "training-job-queued")
