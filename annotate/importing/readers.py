"""Streaming readers: one row at a time from .jsonl, .json (an array), .csv and .parquet, gzip or not.

Every row carries the line it starts on (the JSON-lines line, the line where a JSON array element
opens, the CSV physical line, the Parquet row number + 1), so that errors point into the file. No
reader holds more than one chunk (or one Parquet record batch) of the file in memory.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import json
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from annotate.importing.errors import ImportIssue, SourceError, issue

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20
# A JSON value or CSV/JSONL line longer than this is refused instead of buffered: rows are a few
# fields of at most IMPORT_MAX_FIELD_BYTES each, so only a broken file (say a minified array saved
# as .jsonl) gets near it, and buffering it would defeat streaming.
MAX_RECORD_BYTES = 16 << 20

KIND_BY_EXTENSION = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = (
    *KIND_BY_EXTENSION,
    *(f"{extension}.gz" for extension in KIND_BY_EXTENSION),
)


@dataclass(slots=True)
class SourceRow:
    """One row as read: its values, or the problem that kept it from being read."""

    line: int
    values: Any = None
    problem: ImportIssue | None = None


@dataclass
class Source:
    """An opened file: its rows, its columns when the format has a header, and how far reading got."""

    rows: Iterator[SourceRow]
    # CSV cells are text, so typed fields (booleans, ids) are parsed from it.
    text_values: bool = False
    columns: tuple[str, ...] | None = None
    bytes_read: Callable[[], int] = field(default=lambda: 0)


def kind_for_filename(filename: str) -> tuple[str | None, bool]:
    """('jsonl' | 'json' | 'csv' | 'parquet' | None, whether the name says gzip)."""
    name = filename.lower()
    gzipped = name.endswith(".gz")
    if gzipped:
        name = name[: -len(".gz")]
    for extension, kind in KIND_BY_EXTENSION.items():
        if name.endswith(extension):
            return kind, gzipped
    return None, gzipped


class _CountingReader(io.RawIOBase):
    """Counts the bytes taken from the underlying (maybe compressed) file, for progress bars."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        size = len(data)
        buffer[:size] = data
        self.count += size
        return size


def _is_gzip(file: IO[bytes]) -> bool:
    if not file.seekable():
        return False
    position = file.tell()
    head = file.read(2)
    file.seek(position)
    return head == GZIP_MAGIC


# The decompressed bytes of the file, buffered (readline, read).
ByteStream = io.BufferedIOBase


@contextlib.contextmanager
def open_source(file: IO[bytes], *, kind: str, gzipped_by_name: bool) -> Iterator[Source]:
    """The rows of `file` read as `kind`; gzip is detected by the name or the magic bytes."""
    counter = _CountingReader(file)
    buffered = io.BufferedReader(counter, buffer_size=CHUNK_BYTES)
    gzipped = gzipped_by_name or _is_gzip(file)
    stream: ByteStream = gzip.GzipFile(fileobj=buffered, mode="rb") if gzipped else buffered
    if kind != "parquet":
        source = _TEXT_SOURCES[kind](stream)
        source.bytes_read = lambda: counter.count
        yield source
    elif not gzipped and file.seekable():
        yield _parquet_source(file, reported_size=_size_of(file))
    else:
        # Parquet reads its footer first and needs random access: unpack to a temporary file.
        with tempfile.TemporaryFile() as spool:
            with _read_errors(None):
                shutil.copyfileobj(stream, spool, CHUNK_BYTES)
            spool.seek(0)
            yield _parquet_source(spool, reported_size=_size_of(file))


def _damaged(exc: Exception, line: int | None) -> SourceError:
    return SourceError(issue(f"the compressed file is damaged or truncated ({exc})", line=line))


@contextlib.contextmanager
def _read_errors(line: int | None) -> Iterator[None]:
    """Turn a damaged container (bad gzip, truncated stream) into one file-level problem."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _damaged(exc, line) from None


# --- text decoding ----------------------------------------------------------------------------------


def _encoding_problem(line: int, data: bytes, start: int) -> ImportIssue:
    column = start - (data.rfind(b"\n", 0, start) + 1) + 1
    return issue(
        f"not valid UTF-8 (byte 0x{data[start]:02x} at column {column}); save the file as UTF-8",
        line=line,
    )


def _bounded_lines(stream: ByteStream) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) per physical line; None for a line past MAX_RECORD_BYTES (skipped)."""
    number = 0
    # One handler around the loop, not a context manager per line: this runs 330,000 times.
    try:
        while data := stream.readline(MAX_RECORD_BYTES):
            number += 1
            if number == 1 and data.startswith(codecs.BOM_UTF8):
                data = data[len(codecs.BOM_UTF8) :]
            if len(data) >= MAX_RECORD_BYTES and not data.endswith(b"\n"):
                while data and not data.endswith(b"\n"):
                    data = stream.readline(CHUNK_BYTES)
                yield number, None
            else:
                yield number, data
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise _damaged(exc, number + 1) from None


def _too_long(line: int) -> ImportIssue:
    return issue(f"the line is longer than {MAX_RECORD_BYTES} bytes", line=line)


# --- JSON lines -------------------------------------------------------------------------------------


def _jsonl_rows(stream: ByteStream) -> Iterator[SourceRow]:
    for number, data in _bounded_lines(stream):
        if data is None:
            yield SourceRow(number, problem=_too_long(number))
            continue
        if not data.strip():
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield SourceRow(number, problem=_encoding_problem(number, data, exc.start))
            continue
        try:
            yield SourceRow(number, values=json.loads(text))
        except json.JSONDecodeError as exc:
            yield SourceRow(
                number, problem=issue(f"invalid JSON: {exc.msg} (column {exc.colno})", line=number)
            )


def _jsonl_source(stream: ByteStream) -> Source:
    return Source(rows=_jsonl_rows(stream))


# --- JSON (a top-level array) -----------------------------------------------------------------------


def _decoded_chunks(stream: ByteStream) -> Iterator[str]:
    """The file as UTF-8 text in chunks; a decoding error stops reading with its line number."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    first = True
    while True:
        with _read_errors(newlines + 1):
            data = stream.read(CHUNK_BYTES)
        if first and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        first = False
        try:
            text = decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            # The decoder holds back at most an incomplete character, never a newline, so the
            # newlines seen so far plus those before the bad byte give its line.
            good = exc.object[: exc.start]
            yield good.decode("utf-8")
            line = newlines + good.count(b"\n") + 1
            raise SourceError(_encoding_problem(line, exc.object, exc.start)) from None
        newlines += text.count("\n")
        if text:
            yield text
        if not data:
            return


_WHITESPACE = re.compile(r"[ \t\r\n]*")
_DECODER = json.JSONDecoder()


class _JsonStream:
    """An incremental JSON reader over text chunks: values are decoded one at a time with
    `raw_decode`, so an array of 330,000 objects is never held whole."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._buffer = ""
        self._position = 0
        self.line = 1  # the line of self._buffer[self._position]
        self._eof = False

    def _read_more(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            self._eof = True
            return False
        self._buffer = self._buffer[self._position :] + chunk
        self._position = 0
        return True

    def _advance(self, end: int) -> None:
        self.line += self._buffer.count("\n", self._position, end)
        self._position = end

    def peek(self) -> str | None:
        """The next non-blank character (not consumed), or None at the end of the file."""
        while True:
            match = _WHITESPACE.match(self._buffer, self._position)
            assert match is not None  # the pattern matches the empty string
            self._advance(match.end())
            if self._position < len(self._buffer):
                return self._buffer[self._position]
            if not self._read_more():
                return None

    def take(self) -> None:
        self._advance(self._position + 1)

    def error(self, message: str) -> SourceError:
        return SourceError(issue(f"invalid JSON: {message}", line=self.line))

    def value(self) -> tuple[int, Any]:
        """(line where it starts, value) for the JSON value at the current position."""
        start_line = self.line
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buffer, self._position)
            except json.JSONDecodeError as exc:
                if self._eof or len(self._buffer) - self._position > MAX_RECORD_BYTES:
                    line = start_line + self._buffer.count("\n", self._position, exc.pos)
                    raise SourceError(issue(f"invalid JSON: {exc.msg}", line=line)) from None
            else:
                # A number or literal that ends with the buffer may go on in the next chunk.
                if end < len(self._buffer) or self._eof or isinstance(value, dict | list | str):
                    self._advance(end)
                    return start_line, value
            self._read_more()


def _json_rows(stream: ByteStream) -> Iterator[SourceRow]:
    reader = _JsonStream(_decoded_chunks(stream))
    opening = reader.peek()
    if opening is None:
        return
    if opening == "{":
        # Objects one after another (JSON lines saved as .json, as `datasets` writes them).
        while reader.peek() is not None:
            yield SourceRow(*reader.value())
        return
    if opening != "[":
        raise SourceError(
            issue(
                "a .json file must hold an array of objects ([{...}, {...}]); use .jsonl for one per line",
                line=1,
            )
        )
    reader.take()
    if reader.peek() == "]":
        reader.take()
    else:
        yield from _array_elements(reader)
    if reader.peek() is not None:
        raise reader.error("extra data after the closing ]")


def _array_elements(reader: _JsonStream) -> Iterator[SourceRow]:
    while True:
        if reader.peek() is None:
            raise reader.error("the file ends inside the array (no closing ])")
        yield SourceRow(*reader.value())
        separator = reader.peek()
        if separator == ",":
            reader.take()
        elif separator == "]":
            reader.take()
            return
        elif separator is None:
            raise reader.error("the file ends inside the array (no closing ])")
        else:
            raise reader.error("expecting ',' or ']' after an array element")


def _json_source(stream: ByteStream) -> Source:
    return Source(rows=_json_rows(stream))


# --- CSV --------------------------------------------------------------------------------------------


class _CsvLines:
    """Decoded physical lines for csv.reader, remembering which lines were not UTF-8."""

    def __init__(self, stream: ByteStream) -> None:
        self._lines = _bounded_lines(stream)
        self.bad: dict[int, ImportIssue] = {}

    def __iter__(self) -> Iterator[str]:
        for number, data in self._lines:
            if data is None:
                self.bad[number] = _too_long(number)
                yield "\n"
                continue
            try:
                yield data.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.bad[number] = _encoding_problem(number, data, exc.start)
                yield data.decode("utf-8", errors="replace")

    def problem_between(self, first: int, last: int) -> ImportIssue | None:
        for number in range(first, last + 1):
            if number in self.bad:
                return self.bad.pop(number)
        return None


def _csv_problem(exc: csv.Error, line: int) -> SourceError:
    message = str(exc)
    if "field larger than field limit" in message:
        message = f"a field is larger than the CSV reader's limit ({csv.field_size_limit()} characters)"
    return SourceError(issue(f"invalid CSV: {message}", line=line))


def _csv_source(stream: ByteStream) -> Source:
    lines = _CsvLines(stream)
    reader = csv.reader(iter(lines))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _csv_problem(exc, 1) from None
    bad_header = lines.problem_between(1, reader.line_num)
    if bad_header is not None:
        raise SourceError(bad_header)
    if header is None:
        return Source(rows=iter(()), text_values=True, columns=())
    columns = tuple(name.strip() for name in header)
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise SourceError(issue(f"the header names a column twice: {', '.join(duplicated)}", line=1))
    return Source(rows=_csv_rows(reader, lines, columns), text_values=True, columns=columns)


def _csv_rows(reader: Any, lines: _CsvLines, columns: tuple[str, ...]) -> Iterator[SourceRow]:
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            raise _csv_problem(exc, start) from None
        if cells is None:
            return
        problem = lines.problem_between(start, reader.line_num)
        if problem is not None:
            yield SourceRow(problem["line"] or start, problem=problem)
        elif not cells:
            continue  # a blank line
        elif len(cells) != len(columns):
            message = f"expected {len(columns)} columns ({', '.join(columns)}), found {len(cells)}"
            yield SourceRow(start, problem=issue(message, line=start))
        else:
            yield SourceRow(start, values=dict(zip(columns, cells, strict=True)))


_TEXT_SOURCES: dict[str, Callable[[ByteStream], Source]] = {
    "jsonl": _jsonl_source,
    "json": _json_source,
    "csv": _csv_source,
}

# --- Parquet ----------------------------------------------------------------------------------------

PARQUET_BATCH_ROWS = 4096


def _parquet_source(file: IO[bytes], *, reported_size: int) -> Source:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as exc:
        raise SourceError(issue(f"not a valid Parquet file ({exc})")) from None
    total_rows = parquet.metadata.num_rows
    done = {"rows": 0}

    def rows() -> Iterator[SourceRow]:
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for values in batch.to_pylist():
                    done["rows"] += 1
                    yield SourceRow(done["rows"], values=values)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(issue(f"the Parquet file is damaged ({exc})", line=done["rows"] + 1)) from None

    def bytes_read() -> int:
        # Parquet is read by row groups, not front to back; the share of rows read is the honest figure.
        return reported_size * done["rows"] // total_rows if total_rows else reported_size

    columns = tuple(parquet.schema_arrow.names)
    return Source(rows=rows(), columns=columns, bytes_read=bytes_read)


def _size_of(file: IO[bytes]) -> int:
    if not file.seekable():
        return 0
    position = file.tell()
    size = file.seek(0, io.SEEK_END)
    file.seek(position)
    return size
