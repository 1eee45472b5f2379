"""Bulk writes for PostgreSQL: COPY ... FROM STDIN, with ids drawn from the table's sequence first.

Why this shape (measured, see docs/imports.md): the database is the bottleneck of a large import,
and plain COPY into the final tables is the least work for it. Staging the rows in a temporary table
and moving them with `INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING` did about twice the
database work per row (speculative insertion, a second pass over every row). Taking ids with
`nextval()` beforehand gives the client the ids it needs for the next table (QA pairs point at
prompts, work items at QA pairs) without a round trip per row. Rows are rendered by hand in COPY's
text format: csv.writer spent about 15 us quoting a 500-character field (str methods take about 2),
and the server parses the text format with about 5% less CPU than CSV.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from annotate.importing.writers import Row, default_for
from annotate.models import Project, Prompt, QAPair

Encoder = Callable[[Any], str]


_TEXT_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _escaped(value: Any) -> str:
    # COPY's text format: \N is NULL; backslash, tab, newline and carriage return are escaped.
    if value is None:
        return "\\N"
    text = str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return text.translate(_TEXT_ESCAPES)
    return text


def _plain(value: Any) -> str:
    return "\\N" if value is None else str(value)


def _boolean(value: Any) -> str:
    return "\\N" if value is None else ("t" if value else "f")


_NOT_NULL_BOOLEAN: dict[Any, str] = {True: "t", False: "f"}


def _encoder_for(field: models.Field[Any, Any]) -> Encoder:
    # Builtins where the column cannot be NULL: this runs for every value of every row.
    if isinstance(field, models.BooleanField):
        return _boolean if field.null else _NOT_NULL_BOOLEAN.__getitem__
    if isinstance(field, models.IntegerField | models.ForeignKey | models.AutoField):
        return _plain if field.null else str
    return _escaped  # text, dates, JSON


COPY_CHUNK_CHARS = 1 << 16


class _LinesFile(io.TextIOBase):
    """A read-only file over lines made on demand. COPY reads it a chunk at a time, so the server
    inserts the first rows while the client still renders the last ones (two processes, two cores)
    instead of waiting for a whole batch rendered up front."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._pending = ""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            text, self._pending = self._pending + "".join(self._lines), ""
            return text
        parts = [self._pending]
        have = len(self._pending)
        for line in self._lines:
            parts.append(line)
            have += len(line)
            if have >= size:
                break
        text = "".join(parts)
        text, self._pending = text[:size], text[size:]
        return text


@dataclass(frozen=True)
class _CopyPlan:
    sql: str
    encoders: tuple[Encoder, ...]
    # The columns the caller does not give (created_at, taken, is_open...) get the model default.
    default_fields: tuple[models.Field[Any, Any], ...]


class PostgresCopySink:
    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self._plans: dict[tuple[type[models.Model], tuple[str, ...]], _CopyPlan] = {}
        self._sequences: dict[type[models.Model], str] = {}

    @staticmethod
    def supports(connection: BaseDatabaseWrapper) -> bool:
        if connection.vendor != "postgresql":
            return False
        with connection.cursor() as cursor:
            return hasattr(cursor.cursor, "copy_expert")  # psycopg2; with psycopg 3 the ORM sink is used

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        # Django's foreign keys are DEFERRABLE INITIALLY DEFERRED: left so, every check of the
        # import (five per QA row) would run at COMMIT, serially, after the last batch. Checked at
        # the end of each COPY instead, they run while the reader thread parses the next batch:
        # the same work, a third less wall time on a 150,000-row import. Deferred again afterwards
        # (the default for every Django foreign key) for the rest of the caller's transaction.
        with self.connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        yield
        with self.connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")

    def insert_returning_ids(
        self, model: type[models.Model], fields: Sequence[str], rows: list[Row]
    ) -> list[int]:
        if not rows:
            return []
        pk = model._meta.pk
        assert pk is not None
        with self.connection.cursor() as cursor:
            # nextval() hands out unique ids however many sessions insert at once. A constant
            # regclass (not pg_get_serial_sequence per row) makes this five times faster.
            cursor.execute(
                "SELECT nextval(%s::regclass) FROM generate_series(1, %s)", [self._sequence(model), len(rows)]
            )
            ids = [pk_value for (pk_value,) in cursor.fetchall()]
        self._copy(
            model, (pk.attname, *fields), [(pk_value, *row) for pk_value, row in zip(ids, rows, strict=True)]
        )
        return ids

    def insert(self, model: type[models.Model], fields: Sequence[str], rows: list[Row]) -> None:
        if rows:
            self._copy(model, tuple(fields), rows)

    def existing_ids(
        self, model: type[Prompt] | type[QAPair], project: Project, hashes: list[str]
    ) -> dict[str, int]:
        # One probe of the (project, content_hash) unique index per hash, whatever the statistics
        # say: `content_hash IN (...)` let the planner, misled by the rows this very transaction
        # inserted, scan the whole project per batch (quadratic on a 330,000-row re-import).
        table = self.connection.ops.quote_name(model._meta.db_table)
        with self.connection.cursor() as cursor:
            cursor.execute(
                f"SELECT wanted.hash, (SELECT t.id FROM {table} t WHERE t.project_id = %s AND t.content_hash = wanted.hash)"
                " FROM unnest(%s::text[]) AS wanted(hash)",
                [project.pk, hashes],
            )
            return {content_hash: pk for content_hash, pk in cursor.fetchall() if pk is not None}

    def _sequence(self, model: type[models.Model]) -> str:
        if model not in self._sequences:
            pk = model._meta.pk
            assert pk is not None
            with self.connection.cursor() as cursor:
                cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, pk.column])
                (name,) = cursor.fetchone()
            self._sequences[model] = name
        return self._sequences[model]

    def _copy(self, model: type[models.Model], fields: tuple[str, ...], rows: list[Row]) -> None:
        plan = self._plan(model, fields)
        now = timezone.now()
        defaults = [
            _encoder_for(field)(_copy_value(default_for(field, now))) for field in plan.default_fields
        ]
        tail = "".join("\t" + value for value in defaults) + "\n"
        encoders = plan.encoders
        lines = (
            "\t".join([encode(value) for encode, value in zip(encoders, row, strict=True)]) + tail
            for row in rows
        )
        with self.connection.cursor() as cursor:
            cursor.cursor.copy_expert(plan.sql, _LinesFile(lines), size=COPY_CHUNK_CHARS)

    def _plan(self, model: type[models.Model], fields: tuple[str, ...]) -> _CopyPlan:
        key = (model, fields)
        if key not in self._plans:
            by_attname = {field.attname: field for field in model._meta.concrete_fields}
            given = [by_attname[name] for name in fields]
            rest = tuple(
                field
                for field in model._meta.concrete_fields
                if field.attname not in fields and not field.primary_key
            )
            quote = self.connection.ops.quote_name
            columns = ", ".join(quote(field.column) for field in (*given, *rest))
            self._plans[key] = _CopyPlan(
                sql=f"COPY {quote(model._meta.db_table)} ({columns}) FROM STDIN",
                encoders=tuple(_encoder_for(field) for field in given),
                default_fields=rest,
            )
        return self._plans[key]


def _copy_value(value: Any) -> Any:
    """A default as COPY reads it: JSON as text, datetimes in ISO form (str() is fine for the rest)."""
    import json

    if isinstance(value, dict | list):
        return json.dumps(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
