"""Training pages: the jobs list, the launch form, the live job page (htmx polling of its status
section), cancel/retry forms, and evaluation images served through the access check."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse

from annotate.models import ExportFormat
from tests.training.helpers import moderation_rows
from tests.training.job_helpers import make_job, make_pku_snapshot
from training.models import JobStatus, RegisteredModel, TrainingJob
from training.services import default_base_model
from training.trainers.config import TrainerConfig

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = tmp_path / "training"


@pytest.fixture
def snapshot(project):
    return make_pku_snapshot(project)


def form_data(snapshot, **changes):
    """What the launch form posts with its defaults."""
    data = {
        "kind": "reward",
        "snapshot": snapshot.pk,
        "base_model": "",
        "max_length": 512,
        "epochs": 2,
        "max_steps": -1,
        "per_device_batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 2e-5,
        "weight_decay": 0.1,
        "warmup_ratio": 0.03,
        "lr_scheduler": "cosine",
        "seed": 42,
        "l2_coeff": 0.001,
        "eval_steps": 0,
        "num_gpus": 1,
        "template": TrainerConfig.template,
        "extra": "",
    }
    return {**data, **changes}


class RenderedForm(HTMLParser):
    """What a browser would post for the page's form as rendered: each input's value (checked boxes
    only), each select's selected option (else its first), each textarea's text."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        name = a.get("name")
        if tag == "input" and name and a.get("type") not in ("submit", "button"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.data[name] = a.get("value") or ("on" if a.get("type") == "checkbox" else "")
        elif tag == "select" and name:
            self._select = name
        elif tag == "option" and self._select:
            if self._select not in self.data or "selected" in a:
                self.data[self._select] = a.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data


def rendered_form(page: str) -> dict[str, str]:
    parser = RenderedForm()
    parser.feed(page)
    return parser.data


def url(name, project, *args):
    return reverse(f"frontend:{name}", args=[project.slug, *args])


def test_the_training_tab_lists_jobs_and_trainable_snapshots(client, researcher, project, snapshot):
    job = make_job(snapshot, status=JobStatus.RUNNING, progress=0.25)
    client.force_login(researcher)
    page = client.get(url("training", project)).content.decode()
    assert 'aria-current="page">Training</a>' in page
    assert f"?snapshot={snapshot.pk}&amp;kind=cost" in page
    assert url("training-job", project, job.pk) in page
    assert 'value="25"' in page
    # An active job keeps the list polling; htmx gets only the list.
    assert 'hx-trigger="every 3s"' in page
    partial = client.get(url("training", project), **HTMX).content.decode()
    assert partial.lstrip().startswith('<section class="card mt-4" id="job-list"')


def test_the_form_starts_from_the_trainer_defaults(client, researcher, project, snapshot):
    client.force_login(researcher)
    page = client.get(
        url("training-new", project), {"snapshot": snapshot.pk, "kind": "cost"}
    ).content.decode()
    assert f'<option value="{snapshot.pk}" selected>' in page
    assert '<option value="cost" selected>' in page
    assert 'name="learning_rate" value="2e-05"' in page
    assert 'name="per_device_batch_size" value="16"' in page
    assert f'placeholder="{default_base_model()}"' in page


def test_a_researcher_launches_a_job_from_the_form(
    client, researcher, project, snapshot, sent, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url("training-new", project),
            form_data(snapshot, kind="cost", epochs="1", bf16="on", extra='{"save_steps": 50}'),
        )
    job = TrainingJob.objects.get()
    assert response.status_code == 302 and response["Location"] == url("training-job", project, job.pk)
    assert sent == [job.pk]
    assert (job.kind, job.config["epochs"], job.config["bf16"], job.config["save_steps"]) == (
        "cost",
        1.0,
        True,
        50,
    )
    assert job.config["base_model"] == default_base_model()
    assert job.created_by == researcher
    assert job.progress_timeout_s is None  # the platform's limit


@pytest.mark.parametrize("kind", ["reward", "cost", "moderation"])
def test_the_form_as_rendered_starts_a_job_of_each_kind(
    client, researcher, project, sent, kind, django_capture_on_commit_callbacks
):
    """What the page shows is what it posts: a field the form requires but the page leaves out would
    refuse every launch with an error on a field nobody can see."""
    if kind == "moderation":
        snapshot = make_pku_snapshot(project, format=ExportFormat.BEAVERTAILS, rows=moderation_rows)
    else:
        snapshot = make_pku_snapshot(project)
    client.force_login(researcher)
    page = client.get(url("training-new", project), {"snapshot": snapshot.pk, "kind": kind}).content.decode()
    data = rendered_form(page)
    assert data["kind"] == kind and data["snapshot"] == str(snapshot.pk)
    assert ("threshold_strategy" in data, "l2_coeff" in data) == (kind == "moderation", kind != "moderation")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url("training-new", project), data, **HTMX)
    assert "The job was not created" not in response.content.decode()
    job = TrainingJob.objects.get()
    assert response["HX-Redirect"] == url("training-job", project, job.pk)
    assert job.kind == kind and sent == [job.pk]
    if kind == "moderation":
        assert (job.config["threshold_strategy"], job.config["targets"]) == ("f1", "consensus")
        assert "eval_steps" not in data and job.config["l2_coeff"] == 0.0


def test_the_form_sets_the_jobs_progress_timeout(client, researcher, project, snapshot, sent):
    client.force_login(researcher)
    client.post(url("training-new", project), form_data(snapshot, progress_timeout_minutes="90"))
    assert TrainingJob.objects.get().progress_timeout_s == 90 * 60


def test_htmx_launch_redirects_the_client(client, researcher, project, snapshot, sent):
    client.force_login(researcher)
    response = client.post(url("training-new", project), form_data(snapshot), **HTMX)
    assert response.status_code == 200
    assert response["HX-Redirect"] == url("training-job", project, TrainingJob.objects.get().pk)


def test_trainer_errors_land_on_their_fields(client, researcher, project, snapshot, sent):
    client.force_login(researcher)
    response = client.post(
        url("training-new", project),
        form_data(snapshot, template="{prompt} only", bf16="on", fp16="on", extra='{"nonsense": 1}'),
        **HTMX,
    )
    page = response.content.decode()
    assert response.status_code == 200 and page.lstrip().startswith("<form")
    assert "The job was not created" in page
    assert "unknown field &#x27;nonsense&#x27;" in page
    assert not TrainingJob.objects.exists() and sent == []
    response = client.post(url("training-new", project), form_data(snapshot, template="{prompt} only"))
    assert "must contain {response} exactly once" in response.content.decode()
    response = client.post(url("training-new", project), form_data(snapshot, extra="[1]"))
    assert "A JSON object" in response.content.decode()


def test_a_run_shorter_than_its_logging_interval_still_fills_the_tiles(client, researcher, project, snapshot):
    """3 steps with logging every 10: no log line at all, yet the tiles show where the run ended."""
    job = make_job(
        snapshot,
        status=JobStatus.SUCCEEDED,
        progress=1.0,
        metrics=[
            {"event": "train_begin", "step": 0, "max_steps": 3, "epoch": 0.0},
            {"event": "train_summary", "step": 3, "max_steps": 3, "epoch": 1.0, "train_loss": 0.61234567},
            {"event": "train_end", "step": 3, "max_steps": 3, "epoch": 1.0},
        ],
    )
    client.force_login(researcher)
    page = client.get(url("training-job", project, job.pk)).content.decode()
    tiles = page[page.index('<dl class="stats">') : page.index("</dl>", page.index('<dl class="stats">'))]
    assert '<dt>Step</dt><dd>3<span class="muted"> / 3</span>' in tiles
    assert "<dt>Epoch</dt><dd>1</dd>" in tiles and "<dt>Loss</dt><dd>0.6123</dd>" in tiles


def test_the_running_job_page_polls_its_status(client, researcher, project, snapshot):
    job = make_job(
        snapshot,
        status=JobStatus.RUNNING,
        progress=0.4,
        log_tail="step 4 <b>loss</b>",
        metrics=[
            {
                "event": "log",
                "step": s,
                "max_steps": 10,
                "epoch": s / 10,
                "loss": 1 / s,
                "accuracy": 0.5 + s / 100,
            }
            for s in (1, 2, 3, 4)
        ],
        worker_host="gpu-1",
    )
    client.force_login(researcher)
    page = client.get(url("training-job", project, job.pk)).content.decode()
    assert 'hx-trigger="every 3s"' in page
    assert '<progress id="job-progress" max="100" value="40.0"' in page
    assert '4<span class="muted"> / 10</span>' in page
    assert "step 4 &lt;b&gt;loss&lt;/b&gt;" in page  # the log is text, never markup
    assert "Cancel job" in page and "Retry" not in page
    assert 'data-training-chart="loss"' in page and "frontend/vendor/chart.umd.min.js" in page
    assert '<noscript><meta http-equiv="refresh"' in page
    data = page.split('id="training-chart-data" type="application/json">')[1].split("</script>")[0]
    assert json.loads(data)["loss"][-1] == {"x": 4, "y": 0.25}

    partial = client.get(url("training-job", project, job.pk), **HTMX)
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="job-status"') and "<html" not in body
    assert 'id="training-chart-data"' in body


def test_a_finished_job_stops_polling_and_shows_its_model(client, researcher, project, snapshot):
    job = make_job(snapshot, status=JobStatus.SUCCEEDED, progress=1.0)
    path = default_storage.save(
        f"training/{job.pk}/score_histogram.png", ContentFile(b"\x89PNG\r\n\x1a\nimg")
    )
    job.eval_metrics = {
        "metrics": {"accuracy": 0.9375, "pairs": 16.0},
        "histogram": {"safe_mean": -1.2, "unsafe_mean": 0.8},
        "global_step": 12,
        "files": [{"name": "score_histogram.png", "path": path, "content_type": "image/png"}],
    }
    job.save()
    RegisteredModel.objects.create(
        job=job,
        kind="reward",
        path="/jobs/9/model",
        base_model="/models/tiny",
        snapshot=snapshot,
        config_hash="x",
    )
    client.force_login(researcher)
    page = client.get(url("training-job", project, job.pk), **HTMX).content.decode()
    assert "hx-trigger" not in page
    assert "/jobs/9/model" in page and "0.9375" in page
    image_url = url("training-job-file", project, job.pk, "score_histogram.png")
    assert f'src="{image_url}"' in page
    image = client.get(image_url)
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content).startswith(b"\x89PNG")
    assert client.get(url("training-job-file", project, job.pk, "secret.txt")).status_code == 404


def test_cancel_and_retry_from_the_page(client, researcher, project, snapshot, sent):
    client.force_login(researcher)
    running = make_job(snapshot, status=JobStatus.RUNNING)
    response = client.post(url("training-job-cancel", project, running.pk))
    assert response.status_code == 302
    assert TrainingJob.objects.get(pk=running.pk).cancel_requested
    page = client.get(url("training-job", project, running.pk)).content.decode()
    assert "cancelling: the trainer stops at its next step" in page and "Cancel job" not in page

    failed = make_job(snapshot, status=JobStatus.FAILED, failure_reason="The trainer was killed by SIGKILL.")
    page = client.get(url("training-job", project, failed.pk)).content.decode()
    assert "killed by SIGKILL" in page and "Retry from the last checkpoint" in page
    partial = client.post(url("training-job-retry", project, failed.pk), **HTMX).content.decode()
    assert partial.lstrip().startswith('<div id="job-status"') and "hx-trigger" in partial
    assert TrainingJob.objects.get(pk=failed.pk).status == JobStatus.QUEUED
    # Retrying it again is refused with a message, not an error page.
    response = client.post(url("training-job-retry", project, failed.pk), follow=True)
    assert "Cannot retry" in response.content.decode()


def test_retry_a_cancelled_job_from_the_page(client, researcher, project, snapshot, sent):
    client.force_login(researcher)
    cancelled = make_job(snapshot, status=JobStatus.CANCELLED, cancel_requested=True, output_dir="/jobs/3")
    page = client.get(url("training-job", project, cancelled.pk)).content.decode()
    assert "Retry from the last checkpoint" in page and 'data-testid="cancelled-retry-hint"' in page
    response = client.post(url("training-job-retry", project, cancelled.pk), follow=True)
    assert "is queued again" in response.content.decode()
    stored = TrainingJob.objects.get(pk=cancelled.pk)
    assert (stored.status, stored.output_dir, stored.cancel_requested) == (JobStatus.QUEUED, "/jobs/3", False)

    succeeded = make_job(snapshot, status=JobStatus.SUCCEEDED)
    page = client.get(url("training-job", project, succeeded.pk)).content.decode()
    assert "Retry from the last checkpoint" not in page
    response = client.post(url("training-job-retry", project, succeeded.pk), follow=True)
    assert (
        "Cannot retry" in response.content.decode()
        and "A succeeded job is final" in response.content.decode()
    )
    assert TrainingJob.objects.get(pk=succeeded.pk).status == JobStatus.SUCCEEDED


def test_it_requires_researcher_or_admin(client, worker, outsider, admin_user, project, snapshot):
    job = make_job(snapshot, status=JobStatus.FAILED)
    pages = [
        ("get", url("training", project)),
        ("get", url("training-new", project)),
        ("get", url("training-job", project, job.pk)),
        ("post", url("training-job-cancel", project, job.pk)),
        ("post", url("training-job-retry", project, job.pk)),
        ("get", url("training-job-file", project, job.pk, "score_histogram.png")),
    ]
    for user, code in ((worker, 403), (outsider, 404)):
        client.force_login(user)
        for method, address in pages:
            assert getattr(client, method)(address).status_code == code, (user, address)
    assert TrainingJob.objects.get(pk=job.pk).status == JobStatus.FAILED
    client.force_login(admin_user)
    assert client.get(url("training-job", project, job.pk)).status_code == 200
    client.logout()
    assert client.get(url("training", project)).status_code == 302  # to the login page


def test_a_job_of_another_project_is_not_found_under_this_one(client, researcher, project, snapshot):
    from tests.factories import MembershipFactory, ProjectFactory

    other = ProjectFactory(slug="other")
    MembershipFactory(project=other, user=researcher, role="researcher")
    job = make_job(snapshot)
    client.force_login(researcher)
    assert client.get(reverse("frontend:training-job", args=["other", job.pk])).status_code == 404


def test_the_tab_is_hidden_from_annotators(client, worker, project):
    client.force_login(worker)
    page = client.get(reverse("frontend:project-detail", args=[project.slug])).content.decode()
    assert url("training", project) not in page
