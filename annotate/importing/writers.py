"""Storing validated rows in batches: deduplication by content hash, work items and gold labels.

`BatchWriter` holds the logic and is the same on every database. It needs two bulk writes from a
`Sink` ("insert these rows and give me their ids", "insert these rows"):

- `OrmSink` (here) uses bulk_create and runs wherever Django does (the SQLite embedded default).
- `PostgresCopySink` (importing/postgres.py) uses COPY, several times faster (docs/imports.md).

Duplicates are found by content hash before inserting (see `_KnownIds`), so rows of earlier batches
of the same import count too. The import holds a lock on the project row, so no other import can add
the same hash between the check and the insert.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from annotate.importing.formats import ParsedRow, PreferenceRow, PromptRow, QARow
from annotate.models import (
    GoldStage1Label,
    GoldStage2Label,
    Project,
    Prompt,
    QAPair,
    ResponsePair,
    Stage,
    WorkItem,
)

COUNT_KEYS = (
    "rows",
    "prompts_created",
    "qa_pairs_created",
    "response_pairs_created",
    "work_items_created",
    "gold_labels_created",
    "skipped_duplicates",
)

Row = tuple[Any, ...]


class Sink(Protocol):
    def session(self) -> contextlib.AbstractContextManager[None]:
        """Around all the writes of one import (set-up and tear-down a sink may need)."""
        ...

    def insert_returning_ids(
        self, model: type[models.Model], fields: Sequence[str], rows: list[Row]
    ) -> list[int]:
        """Insert rows (values for `fields`, model defaults for the rest); their new ids, in order."""
        ...

    def insert(self, model: type[models.Model], fields: Sequence[str], rows: list[Row]) -> None: ...

    def existing_ids(
        self, model: type[Prompt] | type[QAPair], project: Project, hashes: list[str]
    ) -> dict[str, int]:
        """content_hash -> id for those of `hashes` already in the project."""
        ...


class OrmSink:
    """bulk_create: portable, and on SQLite (3.35+) and PostgreSQL it returns the new ids."""

    def __init__(self, batch_size: int = 2000) -> None:
        self.batch_size = batch_size

    def session(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def insert_returning_ids(
        self, model: type[models.Model], fields: Sequence[str], rows: list[Row]
    ) -> list[int]:
        objects = self._create(model, fields, rows)
        ids = [obj.pk for obj in objects]
        if any(pk is None for pk in ids):
            raise ImproperlyConfigured(
                "this database does not return ids from bulk inserts (SQLite 3.35+ does)"
            )
        return ids

    def insert(self, model: type[models.Model], fields: Sequence[str], rows: list[Row]) -> None:
        self._create(model, fields, rows)

    def existing_ids(
        self, model: type[Prompt] | type[QAPair], project: Project, hashes: list[str]
    ) -> dict[str, int]:
        found = model.objects.filter(project=project, content_hash__in=hashes).values_list(
            "content_hash", "id"
        )
        return dict(found)

    def _create(
        self, model: type[models.Model], fields: Sequence[str], rows: list[Row]
    ) -> list[models.Model]:
        objects = [model(**dict(zip(fields, row, strict=True))) for row in rows]
        return model._default_manager.bulk_create(objects, batch_size=self.batch_size)


def sink_for(connection: BaseDatabaseWrapper) -> Sink:
    """COPY on PostgreSQL with psycopg2, bulk_create elsewhere.

    settings.IMPORT_WRITER = "orm" forces bulk_create (the tests run both sinks on PostgreSQL).
    """
    choice = getattr(settings, "IMPORT_WRITER", "auto")
    if choice not in ("auto", "orm"):
        raise ImproperlyConfigured(f"IMPORT_WRITER must be 'auto' or 'orm', got {choice!r}")
    if choice == "auto":
        from annotate.importing.postgres import PostgresCopySink

        if PostgresCopySink.supports(connection):
            return PostgresCopySink(connection)
    return OrmSink()


def default_for(field: models.Field[Any, Any], now: Any) -> Any:
    """The value Django would give `field` on create when the importer does not set it."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    if field.has_default():
        return field.get_default()
    if field.null:
        return None
    raise ImproperlyConfigured(
        f"{field} has no default, so the importer cannot fill it; teach BatchWriter about it"
    )


class _KnownIds:
    """content_hash -> id for one table's rows in the project, as far as this import knows them.

    What the import added or looked up is kept in memory (about 250 bytes a hash), so the lookup
    query only runs for hashes not seen yet, and not at all when the project held no such rows
    when the import began: then every unseen hash is new. This saves an index probe per row.
    Past `limit` hashes the memory is dropped and every batch is looked up in the database
    instead (it sees this transaction's own rows), so memory stays bounded on any file size.
    """

    limit = 400_000

    def __init__(self, model: type[Prompt] | type[QAPair], project: Project, sink: Sink) -> None:
        self.model = model
        self.project = project
        self.sink = sink
        self.ids: dict[str, int] = {}
        self.lookups_needed = model.objects.filter(project=project).exists()

    def known(self, hashes: Iterable[str]) -> dict[str, int]:
        """The ids of those of `hashes` that already exist."""
        found: dict[str, int] = {}
        unseen: list[str] = []
        for content_hash in hashes:
            pk = self.ids.get(content_hash)
            if pk is None:
                unseen.append(content_hash)
            else:
                found[content_hash] = pk
        if unseen and self.lookups_needed:
            found.update(self.sink.existing_ids(self.model, self.project, unseen))
        return found

    def remember(self, ids: dict[str, int]) -> None:
        self.ids.update(ids)
        if len(self.ids) > self.limit:
            self.ids = {}
            self.lookups_needed = True


class BatchWriter:
    """Stores one import's rows batch by batch and keeps its counts."""

    def __init__(self, *, project: Project, sink: Sink, filename: str) -> None:
        self.project = project
        self.sink = sink
        # Labels carried by a file become gold labels with a named source (docs/imports.md).
        self.gold_source = f"import:{filename}"[: GoldStage1Label._meta.get_field("source").max_length or 200]
        self.counts: dict[str, int] = dict.fromkeys(COUNT_KEYS, 0)
        self.prompt_ids = _KnownIds(Prompt, project, sink)
        self.qa_pair_ids = _KnownIds(QAPair, project, sink)

    def write(self, rows: Sequence[ParsedRow]) -> None:
        # created[i]: row i added something; a row that added nothing is a skipped duplicate.
        created = [False] * len(rows)
        prompt_ids = self._store_prompts(rows, created)
        qa_rows = [(index, qa) for index, row in enumerate(rows) for qa in _qa_rows_of(row)]
        if qa_rows:
            qa_ids = self._store_qa_pairs(qa_rows, prompt_ids, created)
            preferences = [(index, row) for index, row in enumerate(rows) if isinstance(row, PreferenceRow)]
            if preferences:
                self._store_response_pairs(preferences, prompt_ids, qa_ids, created)
        self.counts["rows"] += len(rows)
        self.counts["skipped_duplicates"] += created.count(False)

    def _store_prompts(self, rows: Sequence[ParsedRow], created: list[bool]) -> dict[str, int]:
        first_seen: dict[str, tuple[int, PromptRow]] = {}
        for index, row in enumerate(rows):
            prompt = row if isinstance(row, PromptRow) else row.prompt
            first_seen.setdefault(prompt.content_hash, (index, prompt))
        ids = self.prompt_ids.known(first_seen)
        new = [
            (index, prompt) for content_hash, (index, prompt) in first_seen.items() if content_hash not in ids
        ]
        new_ids = self.sink.insert_returning_ids(
            Prompt,
            ("project_id", "text", "content_hash", "category_id"),
            [(self.project.pk, prompt.text, prompt.content_hash, prompt.category_id) for _, prompt in new],
        )
        for (index, prompt), pk in zip(new, new_ids, strict=True):
            ids[prompt.content_hash] = pk
            if isinstance(rows[index], PromptRow):
                created[index] = True
        self.prompt_ids.remember(ids)
        self.counts["prompts_created"] += len(new)
        return ids

    def _store_qa_pairs(
        self, qa_rows: list[tuple[int, QARow]], prompt_ids: dict[str, int], created: list[bool]
    ) -> dict[str, int]:
        first_seen: dict[str, tuple[int, QARow]] = {}
        for index, qa in qa_rows:
            first_seen.setdefault(qa.content_hash, (index, qa))
        ids = self.qa_pair_ids.known(first_seen)
        new = [(index, qa) for content_hash, (index, qa) in first_seen.items() if content_hash not in ids]
        project_id = self.project.pk
        new_ids = self.sink.insert_returning_ids(
            QAPair,
            ("project_id", "prompt_id", "response", "source", "content_hash"),
            [
                (project_id, prompt_ids[qa.prompt.content_hash], qa.response, qa.source, qa.content_hash)
                for _, qa in new
            ],
        )
        for (index, qa), pk in zip(new, new_ids, strict=True):
            ids[qa.content_hash] = pk
            created[index] = True
        self.qa_pair_ids.remember(ids)
        new_with_ids = [(qa, pk) for (_, qa), pk in zip(new, new_ids, strict=True)]
        self._queue_stage1(new_with_ids)
        self._store_stage1_gold(new_with_ids)
        self.counts["qa_pairs_created"] += len(new)
        return ids

    def _queue_stage1(self, new: list[tuple[QARow, int]]) -> None:
        project_id = self.project.pk
        self.sink.insert(
            WorkItem,
            ("project_id", "stage", "qa_pair_id", "is_gold"),
            [(project_id, int(Stage.CLASSIFY), pk, qa.gold is not None) for qa, pk in new],
        )
        self.counts["work_items_created"] += len(new)

    def _store_stage1_gold(self, new: list[tuple[QARow, int]]) -> None:
        gold = [
            (pk, qa.gold.categories, qa.gold.is_safe, self.gold_source)
            for qa, pk in new
            if qa.gold is not None
        ]
        self.sink.insert(GoldStage1Label, ("qa_pair_id", "categories", "is_safe", "source"), gold)
        self.counts["gold_labels_created"] += len(gold)

    def _store_response_pairs(
        self,
        preferences: list[tuple[int, PreferenceRow]],
        prompt_ids: dict[str, int],
        qa_ids: dict[str, int],
        created: list[bool],
    ) -> None:
        # Canonical order: qa_a is the lower id. The file's 0/1 choices flip when its first response
        # got the higher id, so the stored labels always read 0 = qa_a, 1 = qa_b.
        wanted: dict[tuple[int, int], tuple[int, int, int, int]] = {}
        for index, row in preferences:
            first, second = qa_ids[row.first.content_hash], qa_ids[row.second.content_hash]
            flip = 0 if first < second else 1
            key = (min(first, second), max(first, second))
            wanted.setdefault(
                key, (index, prompt_ids[row.prompt.content_hash], row.better ^ flip, row.safer ^ flip)
            )
        existing = set(
            ResponsePair.objects.filter(qa_a_id__in={qa_a for qa_a, _ in wanted}).values_list(
                "qa_a_id", "qa_b_id"
            )
        )
        new = [(key, value) for key, value in wanted.items() if key not in existing]
        project_id = self.project.pk
        new_ids = self.sink.insert_returning_ids(
            ResponsePair,
            ("project_id", "prompt_id", "qa_a_id", "qa_b_id"),
            [(project_id, prompt_id, qa_a, qa_b) for (qa_a, qa_b), (_, prompt_id, _, _) in new],
        )
        self.sink.insert(
            GoldStage2Label,
            ("response_pair_id", "better", "safer", "source"),
            [
                (pk, better, safer, self.gold_source)
                for (_, (_, _, better, safer)), pk in zip(new, new_ids, strict=True)
            ],
        )
        self.sink.insert(
            WorkItem,
            ("project_id", "stage", "response_pair_id", "is_gold"),
            [(project_id, int(Stage.RANK), pk, True) for pk in new_ids],
        )
        for _, (index, _, _, _) in new:
            created[index] = True
        self.counts["response_pairs_created"] += len(new)
        self.counts["gold_labels_created"] += len(new)
        self.counts["work_items_created"] += len(new)


def _qa_rows_of(row: ParsedRow) -> tuple[QARow, ...]:
    if isinstance(row, QARow):
        return (row,)
    if isinstance(row, PreferenceRow):
        return (row.first, row.second)
    return ()
