"""export_data SLUG --format F --out PATH: build a snapshot now, with a progress bar, and copy its files."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotate.exporting import snapshot_build, snapshot_create
from annotate.exporting.storage import open_file
from annotate.models import ExportFormat, FileFormat, Project, SnapshotStatus


class Command(BaseCommand):
    help = (
        "Export a project as an immutable snapshot (beavertails, pku-saferlhf or raw), built here rather "
        "than by a worker, and copy its files (splits, README.md, manifest.json) into a folder."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the project's slug")
        parser.add_argument("--format", required=True, choices=ExportFormat.values)
        parser.add_argument("--out", required=True, type=Path, help="folder to copy the files into")
        parser.add_argument("--file-format", default=FileFormat.JSONL, choices=FileFormat.values)
        parser.add_argument("--gzip", action="store_true", help="gzip the JSON lines files")
        parser.add_argument(
            "--test-ratio", type=float, default=0.1, help="share of prompts in the test split"
        )
        parser.add_argument("--seed", type=int, default=42, help="seeds the split by prompt")
        parser.add_argument(
            "--filters", default="{}", help="JSON object of filters, e.g. '{\"min_agreement\": 0.66}'"
        )
        parser.add_argument("--license", help="licence of the dataset (default CC-BY-NC-4.0)")
        parser.add_argument("--user", help="username recorded as the snapshot's creator")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['slug']!r}.")
        out: Path = options["out"]
        if out.exists() and not out.is_dir():
            raise CommandError(f"{out} exists and is not a folder.")
        try:
            filters = json.loads(options["filters"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--filters is not valid JSON: {exc.msg}") from None
        try:
            snapshot = snapshot_create(
                project=project,
                user=self._user(options["user"]),
                format=options["format"],
                file_format=options["file_format"],
                compress=options["gzip"],
                filters=filters,
                test_ratio=options["test_ratio"],
                seed=options["seed"],
                license=options["license"],
                enqueue=False,
            )
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(problems) from None

        bar = tqdm(
            unit=" rows", unit_scale=True, dynamic_ncols=True, file=sys.stderr, disable=options["no_progress"]
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            snapshot_build(snapshot=snapshot, progress=progress)
        finally:
            bar.close()
        if snapshot.status != SnapshotStatus.SUCCEEDED:
            raise CommandError(f"snapshot {snapshot.pk} failed: {snapshot.error}")

        out.mkdir(parents=True, exist_ok=True)
        for file in snapshot.files:
            with open_file(file["path"]) as source, (out / file["name"]).open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        counts = snapshot.row_counts
        self.stdout.write(
            f"snapshot {snapshot.pk} of {project.slug} ({snapshot.format}, {snapshot.file_format}): "
            f"{counts['total']:,} rows, {counts['train']:,} train / {counts['test']:,} test, in {out}"
        )
        for file in snapshot.files:
            rows = f"{file['rows']:>10,} rows" if "rows" in file else " " * 15
            self.stdout.write(
                f"  {file['name']:<24} {rows}  {file['bytes']:>12,} bytes  sha256 {file['sha256']}"
            )
        for reason, count in counts.get("excluded", {}).items():
            self.stdout.write(f"  excluded {reason}: {count:,}")

    def _user(self, username: str | None) -> Any:
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user
