"""What an import reports when it refuses a file: a list of `{line, field, message}` problems."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from annotate.models import ImportRecord


class ImportIssue(TypedDict):
    """One problem with the file. `line` is None for problems of the whole file (its type, its format)."""

    line: int | None
    field: str | None
    message: str


def issue(message: str, *, line: int | None = None, field: str | None = None) -> ImportIssue:
    return {"line": line, "field": field, "message": message}


def describe(problem: ImportIssue) -> str:
    """`line 4: response: must not be empty`, leaving out the parts a file-wide problem lacks."""
    parts = []
    if problem["line"] is not None:
        parts.append(f"line {problem['line']}")
    if problem["field"]:
        parts.append(problem["field"])
    parts.append(problem["message"])
    return ": ".join(parts)


class ImportRejected(Exception):
    """The file was refused and nothing was stored. `.errors` lists the first problems found."""

    def __init__(self, errors: list[ImportIssue], *, filename: str = "", truncated: bool = False) -> None:
        self.errors = errors
        self.filename = filename
        # True when reading stopped at the error limit: the file may hold more problems than listed.
        self.truncated = truncated
        self.record: ImportRecord | None = None
        super().__init__(self._summary())

    def _summary(self) -> str:
        subject = f"import of {self.filename!r}" if self.filename else "import"
        count = (
            f"{len(self.errors)}{'+' if self.truncated else ''} error{'s' if len(self.errors) != 1 else ''}"
        )
        shown = "; ".join(describe(problem) for problem in self.errors[:3])
        more = f"; and {len(self.errors) - 3} more" if len(self.errors) > 3 else ""
        return f"{subject} rejected, nothing stored ({count}): {shown}{more}"


class SourceError(Exception):
    """A problem that stops reading the file (not JSON at all, truncated gzip, a broken array...)."""

    def __init__(self, problem: ImportIssue) -> None:
        super().__init__(describe(problem))
        self.problem = problem


class ErrorLog:
    """Collects problems up to a limit; past it the import stops reading (the list says so)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.errors: list[ImportIssue] = []
        self.truncated = False

    def add(self, problem: ImportIssue) -> None:
        if len(self.errors) < self.limit:
            self.errors.append(problem)
        else:
            self.truncated = True

    def extend(self, problems: list[ImportIssue]) -> None:
        for problem in problems:
            self.add(problem)

    @property
    def full(self) -> bool:
        return len(self.errors) >= self.limit

    def __bool__(self) -> bool:
        return bool(self.errors)
