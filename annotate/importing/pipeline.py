"""Reading and validating on a background thread while the caller's thread writes to the database.

A large import spends most of its time waiting for the database (psycopg2 releases the GIL while
it waits), so parsing the next batch meanwhile comes almost free. The reader never touches the
database: the writes stay on the caller's thread, inside its transaction. At most two batches wait
in the queue, so memory stays bounded whatever the file size.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

from annotate.importing.errors import ErrorLog
from annotate.importing.formats import ImportFormat, ParsedRow, parse_row
from annotate.importing.readers import Source

QUEUED_BATCHES = 2


@dataclass(slots=True)
class Batch:
    rows: list[ParsedRow]
    rows_read: int
    bytes_read: int


class RowReader(threading.Thread):
    """Reads the source's rows, validates them into `errors`, and hands valid rows over in batches.

    Once a problem is found no more batches are handed over (nothing will be stored), but reading
    goes on until the error log is full, so the caller can report up to its limit.
    """

    def __init__(
        self, source: Source, spec: ImportFormat, errors: ErrorLog, *, batch_rows: int, max_bytes: int
    ) -> None:
        super().__init__(name="import-reader", daemon=True)
        self.source = source
        self.spec = spec
        self.errors = errors
        self.batch_rows = batch_rows
        self.max_bytes = max_bytes
        self.rows_read = 0
        self.failure: BaseException | None = None
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=QUEUED_BATCHES)
        self._stopping = threading.Event()

    def __enter__(self) -> RowReader:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stopping.set()
        self.join()
        if exc is None and self.failure is not None:
            raise self.failure

    def batches(self) -> Iterator[Batch]:
        while (batch := self._queue.get()) is not None:
            yield batch

    def run(self) -> None:
        try:
            self._read()
        except BaseException as exc:  # re-raised on the caller's thread by __exit__
            self.failure = exc
        finally:
            self._hand_over(None)

    def _read(self) -> None:
        batch: list[ParsedRow] = []
        text_values = self.source.text_values
        for row in self.source.rows:
            if self._stopping.is_set():
                return
            self.rows_read += 1
            if row.problem is not None:
                self.errors.add(row.problem)
            else:
                parsed = parse_row(
                    self.spec, row.values, line=row.line, text_values=text_values, max_bytes=self.max_bytes
                )
                if isinstance(parsed, list):
                    self.errors.extend(parsed)
                elif not self.errors:
                    batch.append(parsed)
            if self.errors.full:
                self.errors.truncated = True
                return
            if len(batch) >= self.batch_rows:
                self._hand_over(Batch(batch, self.rows_read, self.source.bytes_read()))
                batch = []
        if batch and not self.errors:
            self._hand_over(Batch(batch, self.rows_read, self.source.bytes_read()))

    def _hand_over(self, item: Batch | None) -> None:
        # Wait for room, but give up once the caller has stopped listening (it failed or finished).
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
