"""File writers for one snapshot file: JSON lines (optionally gzip) or Parquet, written as rows come.

Both buffer a bounded number of rows and then write them out, so memory does not grow with the size
of the export. JSON lines are written, compressed and hashed on a helper thread while the next rows
are encoded; Parquet is written in row groups, typed by an explicit schema. Each writer knows its
file's row count, size and sha256 when closed.
"""

from __future__ import annotations

import gzip
import hashlib
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from annotate.exporting.formats import Column, arrow_batch, arrow_schema, line_encoder

# Rows per JSON-lines write and per conversion of Parquet values to Arrow. Python holds a row's text
# at up to 4 bytes a character (one emoji makes the whole string so), so this, not the row group,
# bounds the memory: 2,000 rows of BeaverTails size are a few megabytes.
BATCH_ROWS = 2000
# Rows per Parquet row group, held as Arrow (UTF-8) until written: about 30 MB at BeaverTails sizes.
ROW_GROUP_ROWS = 25_000
# Encoded chunks waiting for the write-behind thread (a few megabytes each).
WRITE_BEHIND_CHUNKS = 3
# zlib's default: gzip -6 sizes at about three times the speed of -9.
GZIP_LEVEL = 6
HASH_CHUNK_BYTES = 1 << 20


class _HashingFile:
    """A binary file that hashes what is written to it: the sha256 of the file without reading it back."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")  # noqa: SIM115
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _WriteBehind(threading.Thread):
    """Writes (and compresses and hashes) on a helper thread while the caller encodes the next rows.

    zlib, hashlib and file writes release the GIL on large buffers, so this work runs beside the
    encoding on another core. At most WRITE_BEHIND_CHUNKS chunks wait.
    """

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        super().__init__(name="export-write", daemon=True)
        self.write = write
        self.failure: BaseException | None = None
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_BEHIND_CHUNKS)
        self.start()

    def run(self) -> None:
        try:
            while (data := self.queue.get()) is not None:
                self.write(data)
        except BaseException as exc:  # re-raised in the caller's thread
            self.failure = exc

    def put(self, data: bytes | None) -> None:
        while self.is_alive():
            try:
                self.queue.put(data, timeout=0.1)
                return
            except queue.Full:
                continue
        if self.failure is not None:
            raise self.failure

    def finish(self) -> None:
        self.put(None)
        self.join()
        if self.failure is not None:
            raise self.failure


class JsonLinesWriter:
    def __init__(self, path: Path, columns: Sequence[Column], *, compress: bool) -> None:
        self.path = path
        self.encode = line_encoder(columns)
        self.rows = 0
        self.sha256 = ""
        self.bytes = 0
        self._pending: list[bytes] = []
        self._file = _HashingFile(path)
        # mtime=0 and no file name in the header: the same rows give the same bytes, and sha256.
        self._out: _HashingFile | gzip.GzipFile = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self._file, compresslevel=GZIP_LEVEL, mtime=0)
            if compress
            else self._file
        )
        self._writer = _WriteBehind(self._out.write)

    def write(self, row: Sequence[Any]) -> None:
        pending = self._pending
        pending.append(self.encode(row))
        if len(pending) >= BATCH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.put(b"".join(self._pending))
            self.rows += len(self._pending)
            self._pending = []

    def close(self) -> None:
        try:
            self._flush()
            self._writer.finish()
            if self._out is not self._file:
                self._out.close()
        finally:
            self._file.close()
        self.sha256, self.bytes = self._file.hexdigest(), self._file.size


class ParquetFileWriter:
    def __init__(self, path: Path, columns: Sequence[Column]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.schema = arrow_schema(columns)
        self.rows = 0
        self.sha256 = ""
        self.bytes = 0
        self._pending: list[list[Any]] = [[] for _ in self.columns]
        self._count = 0
        self._batches: list[pa.RecordBatch] = []
        self._batched_rows = 0
        # Snappy: fast to write and read, and what pandas and `datasets` write by default.
        self._writer = pq.ParquetWriter(str(path), self.schema, compression="snappy")

    def write(self, row: Sequence[Any]) -> None:
        for values, value in zip(self._pending, row, strict=True):
            values.append(value)
        self._count += 1
        if self._count >= BATCH_ROWS:
            self._convert()

    def _convert(self) -> None:
        if self._count:
            self._batches.append(arrow_batch(self.columns, self.schema, self._pending))
            self._batched_rows += self._count
            self._pending = [[] for _ in self.columns]
            self._count = 0
            if self._batched_rows >= ROW_GROUP_ROWS:
                self._write_row_group()

    def _write_row_group(self) -> None:
        if self._batches:
            table = pa.Table.from_batches(self._batches, schema=self.schema)
            self._writer.write_table(table, row_group_size=max(ROW_GROUP_ROWS, table.num_rows))
            self.rows += table.num_rows
            self._batches = []
            self._batched_rows = 0

    def close(self) -> None:
        try:
            self._convert()
            self._write_row_group()
        finally:
            self._writer.close()
        self.sha256, self.bytes = sha256_of(self.path), self.path.stat().st_size


FileWriter = JsonLinesWriter | ParquetFileWriter


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
