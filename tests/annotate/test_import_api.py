"""POST /api/v1/projects/{slug}/imports/: 201 with counts, or 400 with the errors and nothing stored."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotate.models import ImportRecord, Prompt, QAPair, WorkItem

pytestmark = pytest.mark.django_db


def url(project) -> str:
    return reverse("annotate-api:project-imports", kwargs={"slug": project.slug})


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def qa_file(*responses: str) -> bytes:
    return "".join(
        json.dumps({"prompt": "Is this safe?", "response": text}) + "\n" for text in responses
    ).encode()


@pytest.mark.parametrize("user_fixture", ["admin_user", "researcher"])
def test_admins_and_researchers_import_a_file(request, api, project, user_fixture):
    user = request.getfixturevalue(user_fixture)

    response = api(user).post(
        url(project), {"file": upload("qa.jsonl", qa_file("Yes.", "No.")), "format": "qa"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["counts"]["rows"] == 2
    assert body["counts"]["qa_pairs_created"] == 2
    assert body["counts"]["skipped_duplicates"] == 0
    assert (body["filename"], body["format"], body["status"]) == ("qa.jsonl", "qa", "succeeded")
    assert ImportRecord.objects.get(pk=body["id"]).created_by == user
    assert QAPair.objects.filter(project=project).count() == 2


def test_a_real_sample_file_through_the_api(api, project, researcher):
    path = settings.SHARED_DATA_DIR / "pku_saferlhf_v0_sample_16.json"

    response = api(researcher).post(
        url(project), {"file": upload(path.name, path.read_bytes()), "format": "pku-saferlhf"}
    )

    assert response.status_code == 201
    assert response.json()["counts"]["response_pairs_created"] == 16


def test_a_bad_file_is_refused_with_its_errors_and_nothing_stored(api, project, researcher):
    content = qa_file("Fine.") + b"{broken\n" + json.dumps({"prompt": "", "response": "x"}).encode() + b"\n"

    response = api(researcher).post(url(project), {"file": upload("bad.jsonl", content), "format": "qa"})

    assert response.status_code == 400
    body = response.json()
    assert [(error["line"], error["field"]) for error in body["errors"]] == [(2, None), (3, "prompt")]
    assert body["errors"][0]["message"].startswith("invalid JSON")
    assert "rejected, nothing stored" in body["detail"]
    assert not Prompt.objects.exists() and not QAPair.objects.exists() and not WorkItem.objects.exists()
    assert ImportRecord.objects.get().status == ImportRecord.Status.FAILED


def test_an_unsupported_file_type_is_a_400(api, project, researcher):
    response = api(researcher).post(url(project), {"file": upload("notes.txt", b"hello"), "format": "qa"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "file"


def test_a_missing_file_or_unknown_format_is_a_400_in_the_same_shape(api, project, researcher):
    response = api(researcher).post(url(project), {"format": "alpaca"})

    assert response.status_code == 400
    fields = {error["field"] for error in response.json()["errors"]}
    assert fields == {"file", "format"}
    assert all(error["line"] is None for error in response.json()["errors"])


def test_reimporting_says_what_was_skipped(api, project, admin_user):
    client = api(admin_user)
    client.post(url(project), {"file": upload("qa.jsonl", qa_file("Yes.")), "format": "qa"})

    response = client.post(url(project), {"file": upload("qa.jsonl", qa_file("Yes.")), "format": "qa"})

    assert response.status_code == 201
    assert response.json()["counts"]["skipped_duplicates"] == 1
    assert response.json()["counts"]["qa_pairs_created"] == 0


def test_it_requires_an_admin_or_researcher_role(api, project, worker):
    response = api(worker).post(url(project), {"file": upload("qa.jsonl", qa_file("Yes.")), "format": "qa"})

    assert response.status_code == 403
    assert not QAPair.objects.exists()


def test_it_requires_membership(api, project, outsider):
    response = api(outsider).post(url(project), {"file": upload("qa.jsonl", qa_file("Yes.")), "format": "qa"})

    assert response.status_code == 404


def test_it_requires_authentication(api, project):
    response = api().post(url(project), {"file": upload("qa.jsonl", qa_file("Yes.")), "format": "qa"})

    assert response.status_code == 401


def test_the_endpoint_is_in_the_openapi_schema(api, researcher):
    response = api(researcher).get("/api/v1/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert "/api/v1/projects/{slug}/imports/" in response.json()["paths"]


def test_large_and_binary_uploads_stream_from_disk(api, project, researcher, tmp_path, settings):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Past FILE_UPLOAD_MAX_MEMORY_SIZE Django spools the upload to a temporary file.
    rows = [{"prompt": f"Question {n}?", "response": "An answer. " * 30} for n in range(12_000)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    big = "".join(json.dumps(row) + "\n" for row in rows).encode()
    assert len(big) > settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    client = api(researcher)

    jsonl_response = client.post(url(project), {"file": upload("rows.jsonl", big), "format": "qa"})
    parquet_response = client.post(
        url(project),
        {"file": upload("rows.parquet", (tmp_path / "rows.parquet").read_bytes()), "format": "qa"},
    )

    assert jsonl_response.status_code == 201
    assert jsonl_response.json()["counts"]["qa_pairs_created"] == 12_000
    assert parquet_response.status_code == 201
    assert parquet_response.json()["counts"]["skipped_duplicates"] == 12_000
