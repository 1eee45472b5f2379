"""The export API: create (202, queued), list, read with the manifest, download files as attachments;
only the project's researchers and admins."""

from __future__ import annotations

import hashlib

import pytest
from django.urls import reverse

from annotate import tasks
from annotate.exporting import snapshot_build, snapshot_create
from annotate.models import Snapshot, SnapshotStatus
from tests.annotate.test_export_support import settled_qa

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def queued(monkeypatch):
    """The task ids the API queued (the broker is not touched)."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.export_snapshot, "delay", lambda snapshot_id: sent.append(snapshot_id))
    return sent


@pytest.fixture
def built(project, researcher):
    settled_qa(project, ["self_harm"])
    settled_qa(project, [])
    snapshot = snapshot_create(project=project, user=researcher, format="beavertails", enqueue=False)
    snapshot_build(snapshot=snapshot)
    assert snapshot.status == SnapshotStatus.SUCCEEDED
    return snapshot


def exports_url(project) -> str:
    return reverse("annotate-api:project-exports", kwargs={"slug": project.slug})


def detail_url(snapshot) -> str:
    return reverse("annotate-api:export-detail", kwargs={"snapshot_id": snapshot.pk})


def file_url(snapshot, name: str) -> str:
    return reverse("annotate-api:export-file", kwargs={"snapshot_id": snapshot.pk, "name": name})


@pytest.mark.parametrize("user_fixture", ["researcher", "admin_user"])
def test_researchers_and_admins_create_a_snapshot(
    request, api, project, user_fixture, queued, django_capture_on_commit_callbacks
):
    user = request.getfixturevalue(user_fixture)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(user).post(
            exports_url(project),
            {
                "format": "pku-saferlhf",
                "file_format": "parquet",
                "filters": {"min_agreement": 0.66},
                "seed": 7,
            },
            format="json",
        )

    assert response.status_code == 202, response.json()
    body = response.json()
    snapshot = Snapshot.objects.get(pk=body["id"])
    assert queued == [snapshot.pk]
    assert body["status"] == "queued" and body["files"] == []
    assert body["url"].endswith(detail_url(snapshot))
    assert (body["format"], body["file_format"], body["seed"], body["test_ratio"]) == (
        "pku-saferlhf",
        "parquet",
        7,
        0.1,
    )
    assert body["filters"]["min_agreement"] == 0.66 and body["filters"]["settled_only"] is True
    assert snapshot.created_by == user and body["created_by"] == user.username


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"format": "csv"}, "format"),
        ({"format": "beavertails", "file_format": "parquet", "compress": True}, "compress"),
        ({"format": "beavertails", "filters": {"colour": 1}}, "filters"),
        ({"format": "beavertails", "test_ratio": 1}, "test_ratio"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(api, project, researcher, queued, payload, field):
    response = api(researcher).post(exports_url(project), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Snapshot.objects.exists() and queued == []


def test_the_list_shows_the_projects_snapshots_newest_first(api, project, researcher, built):
    newer = snapshot_create(project=project, user=researcher, format="raw", enqueue=False)
    response = api(researcher).get(exports_url(project))
    assert response.status_code == 200
    body = response.json()
    assert [s["id"] for s in body] == [newer.pk, built.pk]
    assert body[1]["row_counts"]["total"] == 2
    assert [f["name"] for f in body[1]["files"]] == [
        "train.jsonl",
        "test.jsonl",
        "README.md",
        "manifest.json",
    ]


def test_the_detail_has_status_counts_manifest_and_file_urls(api, project, researcher, built):
    response = api(researcher).get(detail_url(built))
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "succeeded" and body["progress"] == 1.0
    assert body["manifest"]["counts"]["total"] == 2
    assert body["manifest"]["files"][0]["sha256"] == built.files[0]["sha256"]
    files = {f["name"]: f for f in body["files"]}
    assert files["train.jsonl"]["url"].endswith(file_url(built, "train.jsonl"))
    assert files["manifest.json"]["content_type"] == "application/json"


def test_a_queued_snapshot_has_no_manifest_or_files_yet(api, project, researcher):
    snapshot = snapshot_create(project=project, user=researcher, format="beavertails", enqueue=False)
    body = api(researcher).get(detail_url(snapshot)).json()
    assert (body["status"], body["manifest"], body["files"]) == ("queued", None, [])
    assert api(researcher).get(file_url(snapshot, "train.jsonl")).status_code == 404


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("train.jsonl", "application/x-ndjson"),
        ("README.md", "text/markdown; charset=utf-8"),
        ("manifest.json", "application/json"),
    ],
)
def test_files_download_as_attachments_with_their_type(api, researcher, built, name, content_type):
    response = api(researcher).get(file_url(built, name))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'
    content = b"".join(response.streaming_content)
    entry = next(f for f in built.files if f["name"] == name)
    assert hashlib.sha256(content).hexdigest() == entry["sha256"]


@pytest.mark.parametrize(
    ("options", "name", "content_type"),
    [
        ({"compress": True}, "train.jsonl.gz", "application/gzip"),
        ({"file_format": "parquet"}, "train.parquet", "application/vnd.apache.parquet"),
    ],
)
def test_gzip_and_parquet_content_types(api, project, researcher, options, name, content_type):
    settled_qa(project, [])
    snapshot = snapshot_create(
        project=project, user=researcher, format="beavertails", test_ratio=0, enqueue=False, **options
    )
    snapshot_build(snapshot=snapshot)
    response = api(researcher).get(file_url(snapshot, name))
    assert response.status_code == 200 and response["Content-Type"] == content_type
    assert response["Content-Disposition"] == f'attachment; filename="{name}"'


def test_an_unknown_file_name_is_a_404(api, researcher, built):
    assert api(researcher).get(file_url(built, "secrets.txt")).status_code == 404
    assert api(researcher).get(file_url(built, "..")).status_code == 404


# --- access -------------------------------------------------------------------------------------------


def _all_endpoints(client, project, snapshot):
    return [
        client.post(exports_url(project), {"format": "beavertails"}, format="json").status_code,
        client.get(exports_url(project)).status_code,
        client.get(detail_url(snapshot)).status_code,
        client.get(file_url(snapshot, "train.jsonl")).status_code,
    ]


def test_it_requires_researcher_or_admin_not_annotator(api, project, worker, built, queued):
    assert _all_endpoints(api(worker), project, built) == [403, 403, 403, 403]
    assert Snapshot.objects.count() == 1 and queued == []


def test_it_requires_membership_outsider(api, project, outsider, built, queued):
    assert _all_endpoints(api(outsider), project, built) == [404, 404, 404, 404]


def test_it_requires_authentication_anonymous(api, project, built, queued):
    assert _all_endpoints(api(), project, built) == [401, 401, 401, 401]


def test_it_requires_the_snapshots_own_project(api, project, researcher, built):
    from annotate.models import Membership, Role
    from tests.factories import ProjectFactory

    other = ProjectFactory()
    stranger = Membership.objects.create(project=other, user=researcher, role=Role.RESEARCHER).user
    foreign = snapshot_create(project=other, user=stranger, format="beavertails", enqueue=False)
    # A researcher of both projects sees both; a researcher of one only does not see the other's.
    assert api(researcher).get(detail_url(foreign)).status_code == 200
    Membership.objects.filter(project=other).delete()
    assert api(researcher).get(detail_url(foreign)).status_code == 404


def test_the_schema_describes_the_export_endpoints(api, researcher):
    response = api(researcher).get(reverse("api-schema"), {"format": "json"})
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/projects/{slug}/exports/" in paths
    assert "/api/v1/exports/{snapshot_id}/files/{name}" in paths
