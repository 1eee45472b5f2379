"""Snapshot files in the media storage: snapshots/<id>/<name> through Django's default storage.

That is MEDIA_ROOT on the local disk by default, or an S3-compatible bucket when settings configure
django-storages (docs/exports.md). Files are built in a local work folder and then handed to the
storage; on the local disk that is a rename, not a copy, when the work folder is on the same disk.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage

CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".jsonl.gz": "application/gzip",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
}


# A work folder this old belongs to no running build (builds take minutes at most).
LEFTOVER_AFTER_S = 24 * 3600


class StorageRefused(Exception):
    """The storage did not keep a file under the name it was given (a name clash it renamed around)."""


def content_type_for(name: str) -> str:
    for suffix in sorted(CONTENT_TYPES, key=len, reverse=True):
        if name.endswith(suffix):
            return CONTENT_TYPES[suffix]
    return "application/octet-stream"


def storage() -> Storage:
    return default_storage


def snapshot_path(snapshot_id: int, name: str, token: str) -> str:
    """Where one build of a snapshot keeps a file: under the build's token, so that two builds of the
    same snapshot (one given up for dead, then claimed again) never write or delete each other's."""
    return f"snapshots/{snapshot_id}/{token}/{name}"


def work_folder(snapshot_id: int) -> Path:
    """A fresh local folder to build a snapshot's files in: beside the media files when they are on the
    local disk (so storing them is a rename), else the system's temporary folder."""
    target = storage()
    parent: Path | None = None
    if isinstance(target, FileSystemStorage):
        parent = Path(target.location) / "snapshots" / ".building"
        parent.mkdir(parents=True, exist_ok=True)
        _sweep(parent)
    return Path(tempfile.mkdtemp(prefix=f"{snapshot_id}-", dir=parent))


def _sweep(parent: Path) -> None:
    """Remove work folders a killed build left behind (a build removes its own when it ends)."""
    cutoff = time.time() - LEFTOVER_AFTER_S
    for folder in parent.iterdir():
        with contextlib.suppress(OSError):
            if folder.is_dir() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)


class _BuiltFile(File):
    """A finished local file. `temporary_file_path` tells FileSystemStorage it may move the file
    instead of copying it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        super().__init__(path.open("rb"), name=path.name)

    def temporary_file_path(self) -> str:
        return str(self._path)


def store(snapshot_id: int, local: Path, token: str) -> str:
    """Hand a finished local file to the storage under snapshots/<id>/<token>/<its name>; its storage
    name."""
    target = storage()
    name = snapshot_path(snapshot_id, local.name, token)
    if target.exists(name):
        target.delete(name)
    built = _BuiltFile(local)
    try:
        stored = target.save(name, built)
    finally:
        built.close()
    if stored != name:
        target.delete(stored)
        raise StorageRefused(f"the storage saved {name} as {stored}")
    return stored


def delete(names: list[str]) -> None:
    target = storage()
    for name in names:
        if target.exists(name):
            target.delete(name)


def open_file(name: str) -> IO[Any]:
    return storage().open(name, "rb")
