"""export_data: builds a snapshot in the foreground and copies its files into a folder."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from annotate.models import Snapshot, SnapshotStatus
from tests.annotate.test_export_support import settled_qa

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("export_data", *args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_builds_and_copies_the_files(project, researcher, tmp_path):
    settled_qa(project, ["self_harm"])
    settled_qa(project, [])
    out = tmp_path / "export"

    output = run(
        project.slug,
        "--format",
        "beavertails",
        "--out",
        str(out),
        "--test-ratio",
        "0",
        "--user",
        "researcher",
    )

    assert sorted(p.name for p in out.iterdir()) == ["README.md", "manifest.json", "train.jsonl"]
    snapshot = Snapshot.objects.get()
    assert snapshot.status == SnapshotStatus.SUCCEEDED and snapshot.created_by == researcher
    for file in snapshot.files:
        assert hashlib.sha256((out / file["name"]).read_bytes()).hexdigest() == file["sha256"]
    assert len((out / "train.jsonl").read_text().splitlines()) == 2
    assert "2 rows, 2 train / 0 test" in output
    assert json.loads((out / "manifest.json").read_text())["counts"]["total"] == 2


def test_parquet_gzip_filters_and_seed(project, tmp_path):
    for _ in range(3):
        settled_qa(project, ["self_harm"])
    run(
        project.slug,
        "--format",
        "beavertails",
        "--out",
        str(tmp_path / "p"),
        "--file-format",
        "parquet",
        "--seed",
        "3",
        "--test-ratio",
        "0.5",
    )
    run(project.slug, "--format", "raw", "--out", str(tmp_path / "g"), "--gzip", "--filters", '{"stage": 1}')

    parquet_rows = sum(
        pq.read_table(tmp_path / "p" / name).num_rows for name in ("train.parquet", "test.parquet")
    )
    assert parquet_rows == 3
    raw = gzip.decompress((tmp_path / "g" / "stage1-train.jsonl.gz").read_bytes()).decode().splitlines()
    raw += gzip.decompress((tmp_path / "g" / "stage1-test.jsonl.gz").read_bytes()).decode().splitlines()
    assert len(raw) == 9
    assert Snapshot.objects.get(format="beavertails").seed == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope", "--format", "beavertails"], "No project with slug 'nope'"),
        (["demo-project", "--format", "beavertails", "--file-format", "parquet", "--gzip"], "compress"),
        (["demo-project", "--format", "beavertails", "--filters", "{bad"], "not valid JSON"),
        (["demo-project", "--format", "beavertails", "--filters", '{"min_agreement": 2}'], "min_agreement"),
        (["demo-project", "--format", "beavertails", "--user", "ghost"], "No user 'ghost'"),
    ],
)
def test_bad_arguments_are_clear_errors(project, tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args, "--out", str(tmp_path / "x"))
