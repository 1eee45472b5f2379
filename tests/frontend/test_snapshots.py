"""The Datasets page: researchers and admins list snapshots, create one (htmx or plain form), follow its
progress through the row partial, and download its files."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate import tasks
from annotate.exporting import snapshot_build, snapshot_create
from annotate.models import Snapshot, SnapshotStatus
from tests.annotate.test_export_support import settled_qa

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def queued(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(tasks.export_snapshot, "delay", lambda snapshot_id: sent.append(snapshot_id))
    return sent


def page(project) -> str:
    return reverse("frontend:snapshots", args=[project.slug])


def status_url(project, snapshot) -> str:
    return reverse("frontend:snapshot-status", args=[project.slug, snapshot.pk])


FORM = {
    "format": "beavertails",
    "file_format": "jsonl",
    "include_gold": "on",  # a training set: expert labels asked for
    "test_ratio": "0.1",
    "seed": "42",
    "license": "CC-BY-NC-4.0",
}


def test_the_page_lists_snapshots_with_stats_and_download_links(client, project, researcher):
    settled_qa(project, ["self_harm"])
    built = snapshot_create(
        project=project, user=researcher, format="beavertails", test_ratio=0, enqueue=False
    )
    snapshot_build(snapshot=built)
    waiting = snapshot_create(project=project, user=researcher, format="raw", enqueue=False)
    client.force_login(researcher)

    response = client.get(page(project))

    html = response.content.decode()
    assert response.status_code == 200
    assert 'aria-current="page">Datasets</a>' in html
    assert f'id="snapshot-{built.pk}" data-status="succeeded"' in html
    assert (
        reverse("annotate-api:export-file", kwargs={"snapshot_id": built.pk, "name": "train.jsonl"}) in html
    )
    assert "manifest.json</a></li>" in html and "README.md</a></li>" in html  # no row count beside them
    assert 'train.jsonl</a> <span class="muted">(1 row)</span>' in html
    # The queued one polls its own row; the finished one does not.
    assert f'hx-get="{status_url(project, waiting)}" hx-trigger="every 2s"' in html
    assert f'hx-get="{status_url(project, built)}"' not in html
    assert '<form id="snapshot-form"' in html


def test_creating_with_htmx_swaps_the_panel_and_queues_the_build(
    client, project, researcher, queued, django_capture_on_commit_callbacks
):
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            page(project),
            {**FORM, "format": "pku-saferlhf", "min_agreement": "0.66", "date_from": "2026-01-01"},
            **HTMX,
        )

    snapshot = Snapshot.objects.get()
    html = response.content.decode()
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="snapshot-panel"')  # the partial, not the page
    assert f"Snapshot #{snapshot.pk} is queued" in html
    assert queued == [snapshot.pk]
    assert snapshot.created_by == researcher and snapshot.format == "pku-saferlhf"
    assert snapshot.filters["min_agreement"] == 0.66 and snapshot.filters["date_from"] == "2026-01-01"
    assert snapshot.filters["include_gold"] is True and snapshot.filters["settled_only"] is True


def test_creating_without_javascript_redirects_back_to_the_list(client, project, admin_user, queued):
    client.force_login(admin_user)
    response = client.post(
        page(project), {**FORM, "format": "raw", "settled": "settled", "file_format": "parquet"}
    )
    assert response.status_code == 302 and response["Location"] == page(project)
    snapshot = Snapshot.objects.get()
    assert snapshot.filters["settled_only"] is True and snapshot.filters["include_gold"] is True
    assert snapshot.file_format == "parquet"


def test_a_bad_form_shows_its_errors_and_creates_nothing(client, project, researcher, queued):
    client.force_login(researcher)
    response = client.post(page(project), {**FORM, "file_format": "parquet", "compress": "on"}, **HTMX)
    html = response.content.decode()
    assert "gzip applies to JSON lines" in html
    response = client.post(page(project), {**FORM, "min_agreement": "2"}, **HTMX)
    assert "less than or equal to 1" in response.content.decode()
    assert not Snapshot.objects.exists() and queued == []


def test_the_status_partial_follows_the_build(client, project, researcher):
    settled_qa(project, [])
    snapshot = snapshot_create(project=project, user=researcher, format="beavertails", enqueue=False)
    client.force_login(researcher)
    Snapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.RUNNING, progress=0.4)

    running = client.get(status_url(project, snapshot), **HTMX).content.decode()
    assert running.lstrip().startswith(f'<tr id="snapshot-{snapshot.pk}" data-status="running"')
    assert 'hx-trigger="every 2s"' in running and 'value="40"' in running

    Snapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.QUEUED, progress=0)
    snapshot.refresh_from_db()
    snapshot_build(snapshot=snapshot)
    done = client.get(status_url(project, snapshot), **HTMX).content.decode()
    assert 'data-status="succeeded"' in done and "hx-trigger" not in done
    assert "train.jsonl" in done


def test_a_failed_snapshot_shows_its_error(client, project, researcher):
    snapshot = snapshot_create(project=project, user=researcher, format="beavertails", enqueue=False)
    Snapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.FAILED, error="OSError: disk full")
    client.force_login(researcher)
    html = client.get(page(project)).content.decode()
    assert "OSError: disk full" in html


def test_it_requires_researcher_or_admin(client, project, worker, outsider, researcher, queued):
    snapshot = snapshot_create(project=project, user=researcher, format="beavertails", enqueue=False)
    client.force_login(worker)
    assert client.get(page(project)).status_code == 403
    assert client.post(page(project), FORM).status_code == 403
    assert client.get(status_url(project, snapshot)).status_code == 403
    client.force_login(outsider)
    assert client.get(page(project)).status_code == 404
    assert client.get(status_url(project, snapshot)).status_code == 404
    assert Snapshot.objects.count() == 1 and queued == []


def test_it_requires_login_anonymous(client, project):
    response = client.get(page(project))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_status_of_another_projects_snapshot_is_a_404(client, project, researcher):
    from tests.factories import ProjectFactory

    other = snapshot_create(project=ProjectFactory(), user=None, format="beavertails", enqueue=False)
    client.force_login(researcher)
    assert client.get(status_url(project, other)).status_code == 404


def test_a_snapshot_says_where_its_rows_came_from_and_why_rows_were_left_out(client, project, researcher):
    """Expert labels are an explicit choice, off by default: a gold-only item is left out and counted,
    and the page names each source and each reason."""
    settled_qa(project, ["self_harm"])
    settled_qa(project, [], settled=False, labels=[], gold=["terrorism,organized_crime"])
    default = snapshot_create(
        project=project, user=researcher, format="beavertails", test_ratio=0, enqueue=False
    )
    snapshot_build(snapshot=default)
    assert default.filters["include_gold"] is False
    assert default.row_counts["consensus_sources"] == {"workers": 1}
    assert default.row_counts["excluded"] == {"gold_not_included": 1}
    with_gold = snapshot_create(
        project=project,
        user=researcher,
        format="beavertails",
        test_ratio=0,
        filters={"include_gold": True},
        enqueue=False,
    )
    snapshot_build(snapshot=with_gold)
    assert with_gold.row_counts["consensus_sources"] == {"gold": 1, "workers": 1}
    client.force_login(researcher)
    html = client.get(page(project)).content.decode()
    assert '>1 worker consensus ·</span> <span class="nowrap">0 adjudicated ·</span>' in html
    assert ">1 expert (gold)</span>" in html and ">0 expert (gold)</span>" in html
    assert "1 only an expert label (gold not included)</span>" in html
    # The form offers expert labels unticked, and says why.
    form = html.split('name="include_gold"')[1][:80]
    assert "checked" not in form and "must not hold the expert answers" in html
