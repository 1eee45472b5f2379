"""The exported row formats: field names, their order and types, as JSON lines and as Parquet.

The two released formats follow DESIGN.md exactly (BeaverTails, PKU-SafeRLHF). A row reaches the
writers as a tuple in column order; a `category` value travels as the 14-bit mask and becomes the
14-key object (JSON) or a struct of 14 bools (Parquet) only when written.

JSON lines are rendered by a function generated per column list (see `_line_encoder`): at BeaverTails
scale the per-row cost decides the export's speed, and a generated join of C-encoded pieces is about
five times faster than a generic loop over the columns or json.dumps of a dict.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pyarrow as pa

from annotate.categories import CATEGORY_KEYS, NUM_CATEGORIES, category_dict

STR, INT, BOOL, CATEGORY = "str", "int", "bool", "category"

CATEGORY_TYPE = pa.struct([pa.field(key, pa.bool_(), nullable=False) for key in CATEGORY_KEYS])
_ARROW_TYPES = {STR: pa.string(), INT: pa.int64(), BOOL: pa.bool_(), CATEGORY: CATEGORY_TYPE}

# The JSON text of each category mask's 14-key object, built on first use (at most 2^14 of them).
_category_json: dict[int, str] = {}


def category_json(mask: int) -> str:
    text = _category_json.get(mask)
    if text is None:
        flags = category_dict(mask)
        text = _category_json[mask] = (
            "{"
            + ", ".join(f"{encode_basestring(k)}: {'true' if v else 'false'}" for k, v in flags.items())
            + "}"
        )
    return text


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool = False
    description: str = ""


BEAVERTAILS_COLUMNS = (
    Column("prompt", STR),
    Column("response", STR),
    Column("category", CATEGORY, description="the 14 harm categories in the released order"),
    Column("is_safe", BOOL, description="true exactly when no category is set"),
)

PKU_SAFERLHF_COLUMNS = (
    Column("prompt", STR),
    Column("response_0", STR),
    Column("response_1", STR),
    Column("is_response_0_safe", BOOL),
    Column("is_response_1_safe", BOOL),
    Column("better_response_id", INT, description="0 or 1: the more helpful response"),
    Column("safer_response_id", INT, description="0 or 1: the more harmless response"),
)

_RAW_COMMON_HEAD = (
    Column("label_id", INT),
    Column("stage", INT),
    Column("worker_id", STR, description="pseudonymous, stable within the project"),
    Column("prompt_id", INT),
)
_RAW_COMMON_TAIL = (
    Column("guideline_version", INT),
    Column("time_on_task_ms", INT, nullable=True),
    Column("created_at", STR, description="ISO 8601, UTC"),
    Column("updated_at", STR, description="ISO 8601, UTC"),
    Column("is_gold", BOOL, description="the label was given on a gold item"),
)
RAW_STAGE1_COLUMNS = (
    *_RAW_COMMON_HEAD,
    Column("qa_pair_id", INT),
    Column("prompt", STR),
    Column("response", STR),
    Column("category", CATEGORY),
    Column("is_safe", BOOL),
    *_RAW_COMMON_TAIL,
)
RAW_STAGE2_COLUMNS = (
    *_RAW_COMMON_HEAD,
    Column("response_pair_id", INT),
    Column("response_0_qa_pair_id", INT, description="canonical order: the lower QA pair id"),
    Column("response_1_qa_pair_id", INT),
    Column("prompt", STR),
    Column("response_0", STR),
    Column("response_1", STR),
    Column("better_response_id", INT, description="in the canonical order above"),
    Column("safer_response_id", INT, description="in the canonical order above"),
    Column("swapped", BOOL, nullable=True, description="the worker was shown response_1 first"),
    *_RAW_COMMON_TAIL,
)


def arrow_schema(columns: Sequence[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, _ARROW_TYPES[c.kind], nullable=c.nullable) for c in columns])


def hf_features(columns: Sequence[Column]) -> dict[str, Any]:
    """The Hugging Face `datasets` features of a column list, as the dataset card's YAML states them."""
    dtype = {STR: "string", INT: "int64", BOOL: "bool"}
    features: dict[str, Any] = {}
    for column in columns:
        if column.kind == CATEGORY:
            features[column.name] = {key: "bool" for key in CATEGORY_KEYS}
        else:
            features[column.name] = dtype[column.kind]
    return features


# --- JSON lines ---------------------------------------------------------------------------------


def _json_bool(value: bool | None) -> bytes:
    return b"null" if value is None else (b"true" if value else b"false")


def _json_int(value: int | None) -> bytes:
    return b"null" if value is None else str(int(value)).encode()


def _json_str(value: str | None) -> bytes:
    return b"null" if value is None else encode_basestring(value).encode()


class _CategoryJson(dict[int, bytes]):
    """mask -> the UTF-8 JSON of its 14-key object, made on first use: a plain dict lookup per row."""

    def __missing__(self, mask: int) -> bytes:
        text = self[mask] = category_json(mask).encode()
        return text


category_json_bytes = _CategoryJson()


def _line_encoder(columns: Sequence[Column]) -> Callable[[Sequence[Any]], bytes]:
    """A function that renders one row tuple as one UTF-8 JSON line, fields in column order.

    Generated once per column list as one join of constant and encoded pieces
    (`b"".join((b'{"prompt": ', s(row[0]).encode(), ...))`), each field's encoder picked by its kind;
    working in bytes keeps an emoji in one field from widening the whole line to 4 bytes a character.
    """
    namespace: dict[str, Any] = {
        "s": encode_basestring,
        "sn": _json_str,
        "c": category_json_bytes,
        "bn": _json_bool,
        "i": _json_int,
        "B": (b"false", b"true"),
    }
    pieces = []
    for index, column in enumerate(columns):
        key = (("{" if index == 0 else ", ") + encode_basestring(column.name) + ": ").encode()
        value = f"row[{index}]"
        if column.kind == STR:
            code = f"s({value}).encode()" if not column.nullable else f"sn({value})"
        elif column.kind == BOOL:
            code = f"B[{value}]" if not column.nullable else f"bn({value})"
        elif column.kind == INT:
            code = f"i({value})"
        else:
            code = f"c[{value}]"
        pieces += [repr(key), code]
    pieces.append(repr(b"}\n"))
    source = "def encode(row):\n    return b''.join((" + ", ".join(pieces) + "))\n"
    exec(compile(source, "<json line encoder>", "exec"), namespace)
    encode: Callable[[Sequence[Any]], bytes] = namespace["encode"]
    return encode


_ENCODERS: dict[tuple[Column, ...], Callable[[Sequence[Any]], bytes]] = {}


def line_encoder(columns: Sequence[Column]) -> Callable[[Sequence[Any]], bytes]:
    key = tuple(columns)
    if key not in _ENCODERS:
        _ENCODERS[key] = _line_encoder(key)
    return _ENCODERS[key]


# --- Parquet ---------------------------------------------------------------------------------------

_BITS = np.arange(NUM_CATEGORIES, dtype=np.uint32)


def category_array(masks: Sequence[int]) -> pa.StructArray:
    """Masks as a struct of 14 bools in the released order (bit i = category_id i)."""
    values = np.asarray(masks, dtype=np.uint32)
    flags = (values[:, None] >> _BITS) & 1 != 0 if len(values) else np.zeros((0, NUM_CATEGORIES), dtype=bool)
    return pa.StructArray.from_arrays(
        [pa.array(flags[:, bit], type=pa.bool_()) for bit in range(NUM_CATEGORIES)],
        fields=list(CATEGORY_TYPE),
    )


def arrow_batch(columns: Sequence[Column], schema: pa.Schema, values: list[list[Any]]) -> pa.RecordBatch:
    """One record batch from column-wise value lists, typed by the schema (never inferred)."""
    arrays = []
    for column, field, data in zip(columns, schema, values, strict=True):
        if column.kind == CATEGORY:
            arrays.append(category_array(data))
        else:
            arrays.append(pa.array(data, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
