"""Snapshot files go to MEDIA_ROOT by default, or to an S3-compatible bucket when STORAGE_S3_BUCKET is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
CODE = """
import django, json
django.setup()
from django.core.files.storage import storages
s = storages["default"]
print(json.dumps({"class": type(s).__name__, "bucket": getattr(s, "bucket_name", None),
                  "endpoint": getattr(s, "endpoint_url", None), "location": str(s.location)}))
"""


def storage_with(tmp_path: Path, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_S3_", "AWS_", "MEDIA_ROOT"))}
    clean.update(DJANGO_SETTINGS_MODULE="config.settings", BEAVERLAB_VAR_DIR=str(tmp_path / "var"), **env)
    result = subprocess.run(
        [sys.executable, "-c", CODE], cwd=BASE_DIR, env=clean, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_default_storage_is_the_media_folder(tmp_path):
    storage = storage_with(tmp_path)
    assert storage["class"] == "FileSystemStorage"
    assert storage["location"] == str(tmp_path / "var" / "media")


def test_a_bucket_is_used_when_configured(tmp_path):
    storage = storage_with(
        tmp_path,
        STORAGE_S3_BUCKET="datasets",
        STORAGE_S3_ENDPOINT_URL="http://minio.internal:9000",
        STORAGE_S3_PREFIX="beaverlab",
        AWS_ACCESS_KEY_ID="key",
        AWS_SECRET_ACCESS_KEY="secret",
    )
    assert storage == {
        "class": "S3Storage",
        "bucket": "datasets",
        "endpoint": "http://minio.internal:9000",
        "location": "beaverlab",
    }
