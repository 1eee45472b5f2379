"""The four import formats: which fields each row needs, their types, and the checks across fields.

A row becomes a typed record (PromptRow, QARow, PreferenceRow) with its content hashes computed, or
a list of problems, one per bad field. CSV cells are text, so booleans and ids are parsed from it
("true"/"false"/"1"/"0"); JSON and Parquet values must already have the right type.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from annotate.categories import CATEGORY_BY_KEY, HARM_CATEGORIES, NUM_CATEGORIES
from annotate.importing.errors import ImportIssue, issue
from annotate.models import QAPair

# Prompt.content_hash = sha256(prompt); QAPair.content_hash = sha256(prompt + SEP + response).
QA_HASH_SEPARATOR = b"\x1f"
SOURCE_MAX_CHARS = QAPair._meta.get_field("source").max_length or 200


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()


def qa_hash(prompt: str, response: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8") + QA_HASH_SEPARATOR + response.encode("utf-8")).hexdigest()


@dataclass(slots=True)
class PromptRow:
    line: int
    text: str
    content_hash: str
    category_id: int | None = None


@dataclass(slots=True)
class Verdict:
    """A stage-1 expert label carried by the file (BeaverTails categories, PKU-SafeRLHF is_safe)."""

    categories: int
    is_safe: bool


@dataclass(slots=True)
class QARow:
    line: int
    prompt: PromptRow
    response: str
    source: str
    content_hash: str
    gold: Verdict | None = None


@dataclass(slots=True)
class PreferenceRow:
    """A PKU-SafeRLHF row. `better` and `safer` are in the file's order: 0 = first, 1 = second."""

    line: int
    prompt: PromptRow
    first: QARow
    second: QARow
    better: int
    safer: int


ParsedRow = PromptRow | QARow | PreferenceRow

_MISSING = object()
_TRUE_TEXT = {"true", "1"}
_FALSE_TEXT = {"false", "0"}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


class FieldReader:
    """Reads typed fields from one row and records one problem per bad field."""

    def __init__(self, values: Mapping[str, Any], *, line: int, text_values: bool, max_bytes: int) -> None:
        self.values = values
        self.line = line
        self.text_values = text_values
        self.max_bytes = max_bytes
        self.problems: list[ImportIssue] = []

    def problem(self, field: str, message: str) -> None:
        self.problems.append(issue(message, line=self.line, field=field))

    def _get(self, field: str, *, required: bool) -> Any:
        value = self.values.get(field, _MISSING)
        # An empty CSV cell or a null in an optional column means "not given".
        if not required and (value is None or (self.text_values and value == "")):
            return _MISSING
        if value is _MISSING and required:
            self.problem(field, "required field is missing")
        return value

    def text(self, field: str, *, required: bool = True) -> str | None:
        """A non-blank string within the size limit (optional fields may be absent: returns "")."""
        value = self._get(field, required=required)
        if value is _MISSING:
            return "" if not required else None
        if not isinstance(value, str):
            self.problem(field, f"must be text, got {_type_name(value)}")
            return None
        if required and not value.strip():
            self.problem(field, "must not be empty or only whitespace")
            return None
        return value if self._storable(field, value) else None

    def _storable(self, field: str, value: str) -> bool:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            self.problem(field, "is not valid Unicode (it holds an unpaired surrogate such as \\ud800)")
            return False
        if size > self.max_bytes:
            self.problem(field, f"is {size} bytes in UTF-8; the limit is {self.max_bytes} bytes")
            return False
        if "\x00" in value:
            self.problem(field, "holds a NUL character (\\u0000), which the database cannot store")
            return False
        return True

    def boolean(self, field: str, *, required: bool = True) -> bool | None:
        value = self._get(field, required=required)
        if value is _MISSING:
            return None
        if self.text_values and isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE_TEXT:
                return True
            if word in _FALSE_TEXT:
                return False
        elif isinstance(value, bool):
            return value
        self.problem(
            field,
            f"must be true or false, got {value!r}"
            if isinstance(value, str)
            else f"must be true or false, got {_type_name(value)}",
        )
        return None

    def integer(self, field: str, *, low: int, high: int, required: bool = True) -> int | None:
        value = self._get(field, required=required)
        if value is _MISSING:
            return None
        if self.text_values and isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            shown = repr(value) if isinstance(value, str) else _type_name(value)
            self.problem(field, f"must be a whole number from {low} to {high}, got {shown}")
            return None
        if not low <= value <= high:
            self.problem(field, f"must be from {low} to {high}, got {value}")
            return None
        return value

    def source(self) -> str:
        value = self.text("source", required=False) or ""
        if len(value) > SOURCE_MAX_CHARS:
            self.problem("source", f"must be at most {SOURCE_MAX_CHARS} characters, got {len(value)}")
            return ""
        return value

    def categories(self, field: str = "category") -> int | None:
        """A BeaverTails category field as a mask: a {key: bool} object of the 14 keys (as released),
        a list of keys, or one key (as in CSV exports; "" = no category)."""
        value = self._get(field, required=True)
        if value is _MISSING:
            return None
        if self.text_values and isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                self.problem(field, f"is not valid JSON ({exc.msg})")
                return None
        if isinstance(value, dict):
            return self._mask_from_flags(field, value)
        if isinstance(value, list):
            return self._mask_from_keys(field, value)
        if isinstance(value, str):
            return self._mask_from_keys(field, [value.strip()] if value.strip() else [])
        self.problem(
            field, f"must be an object of the 14 category keys to true/false, got {_type_name(value)}"
        )
        return None

    def _mask_from_flags(self, field: str, flags: Mapping[str, Any]) -> int | None:
        mask = 0
        ok = True
        for key, flag in flags.items():
            category = CATEGORY_BY_KEY.get(key)
            if category is None:
                self.problem(field, f"unknown harm category {key!r}")
                ok = False
            elif (
                self.text_values
                and isinstance(flag, str)
                and flag.strip().lower() in _TRUE_TEXT | _FALSE_TEXT
            ):
                mask |= (flag.strip().lower() in _TRUE_TEXT) << category.id
            elif not isinstance(flag, bool):
                self.problem(field, f"{key!r} must be true or false, got {_type_name(flag)}")
                ok = False
            elif flag:
                mask |= 1 << category.id
        return mask if ok else None

    def _mask_from_keys(self, field: str, keys: list[Any]) -> int | None:
        mask = 0
        ok = True
        for key in keys:
            category = CATEGORY_BY_KEY.get(key) if isinstance(key, str) else None
            if category is None:
                self.problem(field, f"unknown harm category {key!r}")
                ok = False
            else:
                mask |= 1 << category.id
        return mask if ok else None


def _prompt(fields: FieldReader, text: str, category_id: int | None = None) -> PromptRow:
    return PromptRow(fields.line, text, prompt_hash(text), category_id)


def _qa(fields: FieldReader, prompt: PromptRow, response: str, source: str, gold: Verdict | None) -> QARow:
    return QARow(fields.line, prompt, response, source, qa_hash(prompt.text, response), gold)


def parse_qa(fields: FieldReader) -> QARow | None:
    prompt, response, source = fields.text("prompt"), fields.text("response"), fields.source()
    if prompt is None or response is None:
        return None
    return _qa(fields, _prompt(fields, prompt), response, source, gold=None)


def parse_prompt(fields: FieldReader) -> PromptRow | None:
    """BeaverTails-Evaluation: a prompt written for one harm category, named by key and by id."""
    prompt = fields.text("prompt")
    key = fields.text("category", required=False)
    category_id = fields.integer("category_id", low=0, high=NUM_CATEGORIES - 1, required=False)
    category = CATEGORY_BY_KEY.get(key) if key else None
    if key and category is None:
        fields.problem("category", f"unknown harm category {key!r}")
        return None
    if category is not None and category_id is not None and category.id != category_id:
        named = HARM_CATEGORIES[category_id].key
        fields.problem(
            "category_id",
            f"{category_id} is {named!r}, but category is {key!r} (id {category.id}); "
            "the ids follow the 14 keys in order",
        )
        return None
    if prompt is None or fields.problems:
        return None
    return _prompt(fields, prompt, category.id if category is not None else category_id)


def parse_beavertails(fields: FieldReader) -> QARow | None:
    prompt, response, source = fields.text("prompt"), fields.text("response"), fields.source()
    mask = fields.categories()
    is_safe = fields.boolean("is_safe", required=False)
    if mask is not None and is_safe is not None and is_safe != (mask == 0):
        fields.problem(
            "is_safe",
            f"is {str(is_safe).lower()}, but the row has {'no' if mask == 0 else 'a'} harm category; "
            "a QA pair is safe exactly when it falls in no category",
        )
        return None
    if prompt is None or response is None or mask is None:
        return None
    return _qa(fields, _prompt(fields, prompt), response, source, gold=Verdict(mask, mask == 0))


def parse_preference(fields: FieldReader) -> PreferenceRow | None:
    prompt = fields.text("prompt")
    responses = fields.text("response_0"), fields.text("response_1")
    safe = fields.boolean("is_response_0_safe"), fields.boolean("is_response_1_safe")
    better = fields.integer("better_response_id", low=0, high=1)
    safer = fields.integer("safer_response_id", low=0, high=1)
    if prompt is None or responses[0] is None or responses[1] is None:
        return None
    if safe[0] is None or safe[1] is None or better is None or safer is None:
        return None
    if responses[0] == responses[1]:
        fields.problem(
            "response_1", "is the same text as response_0; a preference needs two different responses"
        )
        return None
    if safe[0] != safe[1] and safer != (0 if safe[0] else 1):
        fields.problem(
            "safer_response_id",
            f"is {safer}, but only response_{0 if safe[0] else 1} is safe; when exactly one response is safe "
            "it must be the safer one",
        )
        return None
    prompt_row = _prompt(fields, prompt)
    # PKU-SafeRLHF gives a safe/unsafe verdict per response but no categories: unsafe with mask 0.
    first = _qa(fields, prompt_row, responses[0], "", gold=Verdict(0, safe[0]))
    second = _qa(fields, prompt_row, responses[1], "", gold=Verdict(0, safe[1]))
    return PreferenceRow(fields.line, prompt_row, first, second, better, safer)


@dataclass(frozen=True)
class ImportFormat:
    name: str
    required: tuple[str, ...]
    parse: Callable[[FieldReader], ParsedRow | None]


FORMATS: dict[str, ImportFormat] = {
    spec.name: spec
    for spec in (
        ImportFormat("qa", ("prompt", "response"), parse_qa),
        ImportFormat("prompts", ("prompt",), parse_prompt),
        ImportFormat("beavertails", ("prompt", "response", "category"), parse_beavertails),
        ImportFormat(
            "pku-saferlhf",
            (
                "prompt",
                "response_0",
                "response_1",
                "is_response_0_safe",
                "is_response_1_safe",
                "better_response_id",
                "safer_response_id",
            ),
            parse_preference,
        ),
    )
}
SUPPORTED_FORMATS: tuple[str, ...] = tuple(FORMATS)


def parse_row(
    spec: ImportFormat, values: Any, *, line: int, text_values: bool, max_bytes: int
) -> ParsedRow | list[ImportIssue]:
    """The typed record for one row, or its problems."""
    if not isinstance(values, dict):
        return [issue(f"each row must be a JSON object, got {_type_name(values)}", line=line)]
    fields = FieldReader(values, line=line, text_values=text_values, max_bytes=max_bytes)
    parsed = spec.parse(fields)
    if fields.problems or parsed is None:
        return fields.problems or [issue("the row could not be read", line=line)]
    return parsed
