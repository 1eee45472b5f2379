"""import_data SLUG FILE --format F: import a dataset file, with a progress bar for large files."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotate.importing import SUPPORTED_FORMATS, ImportRejected, import_file
from annotate.importing.errors import describe
from annotate.models import Project

# Smaller files import in well under a second; a bar would only flicker.
PROGRESS_MIN_BYTES = 1 << 20


class _ProgressBar:
    """A rows/s bar whose total is estimated from the share of the file read so far."""

    def __init__(self, file_size: int, *, enabled: bool) -> None:
        self.file_size = file_size
        self.bar = tqdm(
            unit=" rows", unit_scale=True, dynamic_ncols=True, file=sys.stderr, disable=not enabled
        )

    def __call__(self, rows_done: int, bytes_done: int) -> None:
        if self.file_size and bytes_done:
            self.bar.total = max(rows_done, round(rows_done * self.file_size / bytes_done))
        self.bar.update(rows_done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class Command(BaseCommand):
    help = "Import a dataset file (.jsonl, .json, .csv, .parquet, optionally .gz) into a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the project's slug")
        parser.add_argument("file", help="path of the file to import")
        parser.add_argument("--format", required=True, choices=SUPPORTED_FORMATS)
        parser.add_argument("--user", help="username recorded as the importer")
        progress = parser.add_mutually_exclusive_group()
        progress.add_argument("--progress", action="store_true", default=None, help="always show the bar")
        progress.add_argument("--no-progress", action="store_false", dest="progress", help="never show it")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['slug']!r}.")
        path = options["file"]
        if not os.path.isfile(path):
            raise CommandError(f"No such file: {path}")
        user = self._user(options["user"])
        size = os.path.getsize(path)
        show = options["progress"] if options["progress"] is not None else size >= PROGRESS_MIN_BYTES
        bar = _ProgressBar(size, enabled=show)
        try:
            result = import_file(
                project=project,
                file=path,
                filename=os.path.basename(path),
                format=options["format"],
                user=user,
                progress=bar,
            )
        except ImportRejected as rejected:
            bar.close()
            for problem in rejected.errors:
                self.stderr.write(describe(problem))
            count = f"{len(rejected.errors)} error{'s' if len(rejected.errors) != 1 else ''}"
            more = " (stopped at the error limit; there may be more)" if rejected.truncated else ""
            raise CommandError(
                f"{os.path.basename(path)} was rejected with {count}{more}; nothing was stored."
            ) from None
        bar.close()
        self.stdout.write(
            f"imported {os.path.basename(path)} into {project.slug} (import #{result.record.pk})"
        )
        width = max(len(key) for key in result.counts)
        for key, value in result.counts.items():
            self.stdout.write(f"  {key:<{width}}  {value:>10,}")

    def _user(self, username: str | None) -> Any:
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user
