"""Reading a queryset's rows in chunks from a server-side cursor, with the next chunk fetched meanwhile.

`stream(queryset)` yields the rows of a `values_list()` queryset exactly as `.iterator()` would (the
same chunked fetch: a named cursor on PostgreSQL, the same converters), but on PostgreSQL a helper
thread fetches the next chunk while the caller writes the current one. The database builds and
sends a chunk while Python encodes the previous one (psycopg2 releases the GIL while it waits for the
server), which takes about a third off a BeaverTails-size export. At most PREFETCH_CHUNKS chunks wait,
so memory stays bounded. The thread only ever touches the cursor it was given, never the connection.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

from django.db import connections
from django.db.models import QuerySet
from django.db.models.sql.constants import MULTI

PREFETCH_CHUNKS = 1
_DONE = object()


def _chunks(queryset: QuerySet[Any, Any], chunk_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a values_list() queryset, a chunk at a time, converted and in the asked order.

    The query runs here, on the caller's thread and so on its connection and in its transaction
    (Django's connections are per thread); only the fetching of the chunks may move to another thread.
    """
    query = queryset.query
    compiler = query.get_compiler(using=queryset.db)
    results = compiler.execute_sql(MULTI, chunked_fetch=True, chunk_size=chunk_size)
    return _converted(compiler, results)


def _converted(compiler: Any, results: Any) -> Iterator[list[tuple[Any, ...]]]:
    # As ValuesListIterable (Django 5.2): the SQL selects the columns in the order values_list()
    # named them, fields and annotations alike, so only the converters are left to apply.
    expressions = [select[0] for select in compiler.select[0 : compiler.col_count]]
    converters = compiler.get_converters(expressions)
    try:
        for rows in results:
            if converters:
                rows = [tuple(row) for row in compiler.apply_converters(rows, converters)]
            yield rows
    finally:
        results.close()  # closes the server-side cursor when the caller stops early


class _Prefetcher(threading.Thread):
    def __init__(self, chunks: Iterator[list[tuple[Any, ...]]]) -> None:
        super().__init__(name="export-prefetch", daemon=True)
        self.chunks = chunks
        self.failure: BaseException | None = None
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH_CHUNKS)
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            for chunk in self.chunks:
                if not self._hand_over(chunk):
                    return
        except BaseException as exc:  # re-raised in the caller's thread
            self.failure = exc
        finally:
            self._hand_over(_DONE)
            self.chunks.close()  # type: ignore[attr-defined]

    def _hand_over(self, item: Any) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[list[tuple[Any, ...]]]:
        self.start()
        try:
            while (item := self.queue.get()) is not _DONE:
                yield item
        finally:
            self.stopping.set()
            self.join()
        if self.failure is not None:
            raise self.failure


def stream(queryset: QuerySet[Any, Any], *, chunk_size: int) -> Iterator[tuple[Any, ...]]:
    """The queryset's rows; fetched ahead on a helper thread where the database driver allows it."""
    chunks = _chunks(queryset, chunk_size)
    if connections[queryset.db].vendor == "postgresql":
        chunks = iter(_Prefetcher(chunks))
    for chunk in chunks:
        yield from chunk
