"""The training job API: launch, read, cancel, retry, evaluation files; who may do each."""

from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from annotate.models import ExportFormat
from tests.factories import ProjectFactory
from tests.training.job_helpers import make_job, make_pku_snapshot
from training.models import JobStatus, RegisteredModel, TrainingJob

URL = "/api/v1/training-jobs/"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = tmp_path / "training"


@pytest.fixture
def snapshot(project, media):
    return make_pku_snapshot(project)


def launch(client, snapshot, **body):
    return client.post(
        URL, {"snapshot": snapshot.pk, "kind": "reward", "config": {"epochs": 1}, **body}, format="json"
    )


@pytest.fixture
def succeeded_job(snapshot):
    job = make_job(snapshot, status=JobStatus.SUCCEEDED, progress=1.0)
    path = default_storage.save(
        f"training/{job.pk}/score_histogram.png", ContentFile(b"\x89PNG\r\n\x1a\nimage")
    )
    job.eval_metrics = {
        "metrics": {"accuracy": 0.875, "pairs": 16.0},
        "histogram": {"safe_n": 9, "unsafe_n": 23},
        "files": [{"name": "score_histogram.png", "path": path, "content_type": "image/png", "bytes": 13}],
    }
    job.metrics = [{"event": "log", "step": 1, "loss": 0.69, "accuracy": 0.5}]
    job.save()
    RegisteredModel.objects.create(
        job=job, kind=job.kind, path="/jobs/1/model", base_model="/models/tiny", snapshot=snapshot,
        config_hash=job.config_hash, eval_metrics=job.eval_metrics,
    )  # fmt: skip
    return job


# --- create -----------------------------------------------------------------------------------------


def test_a_researcher_launches_a_job(api, researcher, snapshot, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = launch(api(researcher), snapshot, kind="cost", config={"epochs": 1, "max_steps": 50})
    assert response.status_code == 201, response.json()
    body = response.json()
    job = TrainingJob.objects.get()
    assert sent == [job.pk]
    assert body["id"] == job.pk and body["status"] == "queued" and body["kind"] == "cost"
    assert body["url"].endswith(f"{URL}{job.pk}/")
    assert body["snapshot"] == {
        "id": snapshot.pk,
        "project": "demo-project",
        "format": "pku-saferlhf",
        "created_at": body["snapshot"]["created_at"],
    }
    assert body["config"]["max_steps"] == 50 and body["config"]["kind"] == "cost"
    assert body["config_hash"] == job.config_hash
    assert body["actions"] == ["cancel"] and body["artifact"] is None and body["created_by"] == "researcher"


def test_a_job_may_set_its_own_progress_timeout(api, researcher, snapshot, sent):
    client = api(researcher)
    body = {"snapshot": snapshot.pk, "kind": "reward", "config": {}, "progress_timeout_s": 7200}
    response = client.post(URL, body, format="json")
    assert response.status_code == 201 and response.json()["progress_timeout_s"] == 7200
    assert TrainingJob.objects.get().progress_timeout_s == 7200
    too_short = client.post(URL, {**body, "progress_timeout_s": 5}, format="json")
    assert too_short.status_code == 400 and "progress_timeout_s" in too_short.json()


def test_it_requires_researcher_or_admin_to_launch(api, admin_user, snapshot, sent):
    assert launch(api(admin_user), snapshot).status_code == 201


def test_it_requires_a_data_role_annotators_get_403(api, worker, snapshot, sent):
    response = launch(api(worker), snapshot)
    assert response.status_code == 403
    assert not TrainingJob.objects.exists() and sent == []


def test_it_requires_membership_outsiders_get_404(api, outsider, snapshot, sent):
    assert launch(api(outsider), snapshot).status_code == 404
    assert not TrainingJob.objects.exists()


def test_it_requires_authentication(api, snapshot, sent):
    assert launch(api(), snapshot).status_code == 401


def test_a_researcher_of_another_project_gets_404(api, researcher, media, sent):
    other = make_pku_snapshot(ProjectFactory(slug="other"))
    assert launch(api(researcher), other).status_code == 404


def test_an_invalid_config_is_a_400_naming_each_problem(api, researcher, snapshot, sent):
    response = launch(api(researcher), snapshot, config={"learning_rate": 5, "frobnicate": True})
    assert response.status_code == 400
    assert response.json() == {"config": ["unknown field 'frobnicate'"]}
    response = launch(api(researcher), snapshot, config={"learning_rate": 5, "max_length": 2})
    assert response.status_code == 400
    assert response.json()["config"] == [
        "max_length: must be between 8 and 32768, got 2",
        "learning_rate: must be in (0, 1], got 5",
    ]
    assert not TrainingJob.objects.exists() and sent == []


def test_a_snapshot_in_the_wrong_format_is_a_400(api, researcher, project, media, sent):
    snap = make_pku_snapshot(project, format=ExportFormat.BEAVERTAILS)
    response = launch(api(researcher), snap)
    assert response.status_code == 400 and "pku-saferlhf" in response.json()["snapshot"][0]


def test_an_unknown_kind_or_snapshot_is_a_400_or_404(api, researcher, snapshot, sent):
    assert launch(api(researcher), snapshot, kind="poetry").status_code == 400
    assert api(researcher).post(URL, {"snapshot": 999999, "kind": "reward"}, format="json").status_code == 404


# --- read -------------------------------------------------------------------------------------------


def test_the_job_shows_progress_metrics_eval_log_and_artifact(
    api, researcher, succeeded_job, django_assert_max_num_queries
):
    client = api(researcher)
    with django_assert_max_num_queries(6):
        response = client.get(f"{URL}{succeeded_job.pk}/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["progress"] == 1.0
    assert body["metrics"] == [{"event": "log", "step": 1, "loss": 0.69, "accuracy": 0.5}]
    assert body["eval"]["metrics"] == {"accuracy": 0.875, "pairs": 16.0}
    assert "files" not in body["eval"]
    assert body["files"][0]["name"] == "score_histogram.png"
    assert body["files"][0]["url"].endswith(f"{URL}{succeeded_job.pk}/files/score_histogram.png")
    assert body["artifact"]["path"] == "/jobs/1/model" and body["artifact"]["base_model"] == "/models/tiny"
    assert body["actions"] == []
    for key in (
        "log_tail",
        "heartbeat_at",
        "worker_host",
        "failure_reason",
        "attempts",
        "started_at",
        "finished_at",
    ):
        assert key in body


@pytest.mark.parametrize(("persona", "code"), [("worker", 403), ("outsider", 404), (None, 401)])
def test_it_requires_a_data_role_to_read(api, request, succeeded_job, persona, code):
    user = request.getfixturevalue(persona) if persona else None
    assert api(user).get(f"{URL}{succeeded_job.pk}/").status_code == code
    assert api(user).get(f"{URL}{succeeded_job.pk}/files/score_histogram.png").status_code == code


def test_the_evaluation_image_downloads_through_the_access_check(api, researcher, succeeded_job):
    response = api(researcher).get(f"{URL}{succeeded_job.pk}/files/score_histogram.png")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    assert api(researcher).get(f"{URL}{succeeded_job.pk}/files/..%2Fsecret").status_code == 404
    assert api(researcher).get(f"{URL}{succeeded_job.pk}/files/model.safetensors").status_code == 404


def test_the_project_job_list(api, researcher, snapshot, worker):
    jobs = [make_job(snapshot), make_job(snapshot, status=JobStatus.FAILED)]
    response = api(researcher).get(URL, {"project": "demo-project"})
    assert response.status_code == 200
    assert [j["id"] for j in response.json()] == [jobs[1].pk, jobs[0].pk]
    assert response.json()[0]["actions"] == ["retry"]
    assert api(researcher).get(URL).status_code == 400
    assert api(worker).get(URL, {"project": "demo-project"}).status_code == 403


# --- cancel and retry -------------------------------------------------------------------------------


def test_cancel_a_queued_job(api, researcher, snapshot):
    job = make_job(snapshot)
    response = api(researcher).post(f"{URL}{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_cancel_a_running_job_requests_a_stop(api, admin_user, snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING)
    response = api(admin_user).post(f"{URL}{job.pk}/cancel/")
    assert response.status_code == 200
    assert response.json()["status"] == "running" and response.json()["cancel_requested"] is True
    assert response.json()["actions"] == []


def test_cancel_a_finished_job_is_a_400(api, researcher, succeeded_job):
    response = api(researcher).post(f"{URL}{succeeded_job.pk}/cancel/")
    assert response.status_code == 400
    assert "it is succeeded" in response.json()["detail"]


@pytest.mark.parametrize(("persona", "code"), [("worker", 403), ("outsider", 404), (None, 401)])
def test_it_requires_a_data_role_to_cancel_or_retry(api, request, snapshot, persona, code):
    user = request.getfixturevalue(persona) if persona else None
    job = make_job(snapshot, status=JobStatus.FAILED)
    assert api(user).post(f"{URL}{job.pk}/cancel/").status_code == code
    assert api(user).post(f"{URL}{job.pk}/retry/").status_code == code
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.FAILED


def test_retry_a_failed_job(api, researcher, snapshot, sent, django_capture_on_commit_callbacks):
    job = make_job(snapshot, status=JobStatus.FAILED, failure_reason="no heartbeat")
    with django_capture_on_commit_callbacks(execute=True):
        response = api(researcher).post(f"{URL}{job.pk}/retry/")
    assert response.status_code == 202
    assert response.json()["status"] == "queued" and response.json()["attempts"] == 1
    assert sent == [job.pk]
    assert api(researcher).post(f"{URL}{job.pk}/retry/").status_code == 400


def test_retry_a_cancelled_job(api, researcher, snapshot, sent, django_capture_on_commit_callbacks):
    job = make_job(snapshot, status=JobStatus.CANCELLED, cancel_requested=True, output_dir="/jobs/7")
    listed = api(researcher).get(URL, {"project": "demo-project"}).json()
    assert [j["actions"] for j in listed if j["id"] == job.pk] == [["retry"]]
    with django_capture_on_commit_callbacks(execute=True):
        response = api(researcher).post(f"{URL}{job.pk}/retry/")
    assert response.status_code == 202
    body = response.json()
    assert (body["status"], body["attempts"], body["cancel_requested"]) == ("queued", 1, False)
    assert body["output_dir"] == "/jobs/7" and body["actions"] == ["cancel"]
    assert sent == [job.pk]


def test_retry_a_succeeded_job_is_a_400(api, researcher, succeeded_job, sent):
    response = api(researcher).post(f"{URL}{succeeded_job.pk}/retry/")
    assert response.status_code == 400
    assert "it is succeeded" in response.json()["detail"]
    assert "A succeeded job is final" in response.json()["detail"]
    assert TrainingJob.objects.get(pk=succeeded_job.pk).status == JobStatus.SUCCEEDED
    assert sent == []


def test_the_schema_documents_the_endpoints(api, researcher):
    response = api(researcher).get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in (URL, f"{URL}{{job_id}}/", f"{URL}{{job_id}}/cancel/", f"{URL}{{job_id}}/retry/"):
        assert path in paths, sorted(paths)
