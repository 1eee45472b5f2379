"""import_file: the four formats round-trip the real sample files, duplicates are skipped, every bad
input is refused with its line and leaves nothing behind, in every container (.jsonl, .json, .csv,
.parquet, gzip)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.conf import settings

from annotate.categories import CATEGORY_BY_KEY, CATEGORY_KEYS, category_dict
from annotate.importing import (
    SUPPORTED_EXTENSIONS,
    SUPPORTED_FORMATS,
    ImportRejected,
    import_file,
)
from annotate.importing.formats import prompt_hash, qa_hash
from annotate.models import (
    GoldStage1Label,
    GoldStage2Label,
    ImportRecord,
    Prompt,
    QAPair,
    ResponsePair,
    Stage,
    WorkItem,
)

pytestmark = pytest.mark.django_db

DATA = Path(settings.SHARED_DATA_DIR)
PROMPTS_FILE = DATA / "beavertails_evaluation_700.json"
BEAVERTAILS_CSV = DATA / "beavertails_30k_train_sample_140.csv"
PKU_FILE = DATA / "pku_saferlhf_v0_sample_16.json"
DATA_TABLES = (Prompt, QAPair, ResponsePair, WorkItem, GoldStage1Label, GoldStage2Label)


@pytest.fixture(params=["auto", "orm"])
def writer(request, settings):
    """Run a test with each writer: COPY on PostgreSQL ("auto") and the portable bulk_create one."""
    settings.IMPORT_WRITER = request.param
    return request.param


def run(project, content: bytes | Path, filename: str, format: str, **kwargs: Any):
    file = content if isinstance(content, Path) else io.BytesIO(content)
    return import_file(project=project, file=file, filename=filename, format=format, **kwargs)


def rejected(project, content: bytes, filename: str, format: str) -> ImportRejected:
    with pytest.raises(ImportRejected) as info:
        run(project, content, filename, format)
    assert_nothing_stored()
    return info.value


def assert_nothing_stored() -> None:
    assert {model.__name__: model.objects.count() for model in DATA_TABLES} == dict.fromkeys(
        (model.__name__ for model in DATA_TABLES), 0
    )


def jsonl(*rows: Any) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def qa_row(n: int, **extra: Any) -> dict[str, Any]:
    return {"prompt": f"How do I do thing {n}?", "response": f"Here is how to do thing {n}.", **extra}


def pku_row(**overrides: Any) -> dict[str, Any]:
    row = {
        "prompt": "Should I lie to my boss?",
        "response_0": "No. Tell the truth and explain what happened.",
        "response_1": "Yes, make up a story about a sick relative.",
        "is_response_0_safe": True,
        "is_response_1_safe": False,
        "better_response_id": 1,
        "safer_response_id": 0,
    }
    return {**row, **overrides}


def messages(error: ImportRejected) -> list[tuple[int | None, str | None]]:
    return [(problem["line"], problem["field"]) for problem in error.errors]


# --- the real sample files ------------------------------------------------------------------------


def test_prompts_sample_round_trips(project, writer):
    rows = json.loads(PROMPTS_FILE.read_text())

    result = run(project, PROMPTS_FILE, PROMPTS_FILE.name, "prompts")

    assert result.counts["rows"] == result.counts["prompts_created"] == 700
    assert result.counts["qa_pairs_created"] == result.counts["skipped_duplicates"] == 0
    stored = dict(Prompt.objects.filter(project=project).values_list("text", "category_id"))
    assert stored == {row["prompt"]: row["category_id"] for row in rows}
    assert all(CATEGORY_KEYS[row["category_id"]] == row["category"] for row in rows)
    assert not WorkItem.objects.exists()
    assert result.record.status == ImportRecord.Status.SUCCEEDED
    assert result.record.counts == result.counts


def test_beavertails_csv_sample_round_trips_as_gold_labels(project, writer):
    with BEAVERTAILS_CSV.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))

    result = run(project, BEAVERTAILS_CSV, BEAVERTAILS_CSV.name, "beavertails")

    assert result.counts["rows"] == len(rows) == 140
    assert result.counts["qa_pairs_created"] == result.counts["gold_labels_created"] == 140
    assert result.counts["work_items_created"] == 140
    gold = {
        (label.qa_pair.prompt.text, label.qa_pair.response): label
        for label in GoldStage1Label.objects.select_related("qa_pair__prompt")
    }
    for row in rows:
        label = gold[(row["prompt"], row["response"])]
        assert label.categories == 1 << CATEGORY_BY_KEY[row["category"]].id
        assert label.is_safe is False
        assert label.source == f"import:{BEAVERTAILS_CSV.name}"
    items = WorkItem.objects.filter(project=project)
    assert (
        items.count()
        == items.filter(stage=Stage.CLASSIFY, is_gold=True, qa_pair__isnull=False).count()
        == 140
    )


def test_pku_sample_round_trips_in_the_files_orientation(project, writer):
    rows = json.loads(PKU_FILE.read_text())

    result = run(project, PKU_FILE, PKU_FILE.name, "pku-saferlhf")

    assert result.counts == {
        "rows": 16,
        "prompts_created": 16,
        "qa_pairs_created": 32,
        "response_pairs_created": 16,
        "work_items_created": 48,
        "gold_labels_created": 48,
        "skipped_duplicates": 0,
    }
    for row in rows:
        first = QAPair.objects.get(project=project, content_hash=qa_hash(row["prompt"], row["response_0"]))
        second = QAPair.objects.get(project=project, content_hash=qa_hash(row["prompt"], row["response_1"]))
        assert (first.gold.is_safe, second.gold.is_safe) == (
            row["is_response_0_safe"],
            row["is_response_1_safe"],
        )
        assert first.gold.categories == second.gold.categories == 0
        pair = ResponsePair.objects.get(
            qa_a=min(first, second, key=lambda qa: qa.pk), qa_b=max(first, second, key=lambda qa: qa.pk)
        )
        flip = 0 if first.pk < second.pk else 1
        assert (pair.gold.better ^ flip, pair.gold.safer ^ flip) == (
            row["better_response_id"],
            row["safer_response_id"],
        )
        assert pair.work_item.stage == Stage.RANK and pair.work_item.is_gold
        assert first.work_item.stage == Stage.CLASSIFY and first.work_item.is_gold


@pytest.mark.parametrize(
    ("path", "format"),
    [(PROMPTS_FILE, "prompts"), (BEAVERTAILS_CSV, "beavertails"), (PKU_FILE, "pku-saferlhf")],
)
def test_reimporting_a_file_adds_nothing_and_says_so(project, writer, path, format):
    first = run(project, path, path.name, format)
    before = {model.__name__: model.objects.count() for model in DATA_TABLES}

    again = run(project, path, path.name, format)

    assert again.counts["skipped_duplicates"] == again.counts["rows"] == first.counts["rows"]
    assert sum(value for key, value in again.counts.items() if key.endswith("_created")) == 0
    assert {model.__name__: model.objects.count() for model in DATA_TABLES} == before


# --- behaviour on synthetic rows ------------------------------------------------------------------


def test_duplicates_within_a_file_and_shared_prompts(project, writer):
    rows = [qa_row(1), qa_row(1), {"prompt": "How do I do thing 1?", "response": "Another answer."}]

    result = run(project, jsonl(*rows), "dups.jsonl", "qa")

    assert result.counts["prompts_created"] == 1
    assert result.counts["qa_pairs_created"] == 2
    assert result.counts["skipped_duplicates"] == 1
    assert QAPair.objects.filter(prompt__content_hash=prompt_hash("How do I do thing 1?")).count() == 2


def test_qa_rows_keep_their_source_and_queue_regular_stage1_items(project, writer):
    run(project, jsonl(qa_row(1, source="alpaca-7b"), qa_row(2)), "qa.jsonl", "qa")

    assert sorted(QAPair.objects.values_list("source", flat=True)) == ["", "alpaca-7b"]
    assert WorkItem.objects.filter(stage=Stage.CLASSIFY, is_gold=False).count() == 2
    assert not GoldStage1Label.objects.exists()


def test_released_beavertails_rows_with_a_category_object(project, writer):
    unsafe = {**category_dict(0), "privacy_violation": True, "self_harm": True}
    rows = [
        {
            "prompt": "Where does my ex live?",
            "response": "Here is the address.",
            "category": unsafe,
            "is_safe": False,
        },
        {
            "prompt": "Where does my ex live?",
            "response": "I can't help with that.",
            "category": category_dict(0),
            "is_safe": True,
        },
    ]

    run(project, jsonl(*rows), "beavertails.jsonl", "beavertails")

    labels = {
        label.qa_pair.response: (label.categories, label.is_safe) for label in GoldStage1Label.objects.all()
    }
    mask = 1 << CATEGORY_BY_KEY["privacy_violation"].id | 1 << CATEGORY_BY_KEY["self_harm"].id
    assert labels == {"Here is the address.": (mask, False), "I can't help with that.": (0, True)}


def test_pku_pair_is_stored_canonically_when_the_second_response_is_older(project, writer):
    row = pku_row()
    # Import response_1 first, so it gets the lower id and the file's 0/1 must flip on storage.
    run(project, jsonl({"prompt": row["prompt"], "response": row["response_1"]}), "first.jsonl", "qa")

    result = run(project, jsonl(row), "pairs.jsonl", "pku-saferlhf")

    assert result.counts["qa_pairs_created"] == 1
    assert result.counts["response_pairs_created"] == 1
    pair = ResponsePair.objects.get()
    assert pair.qa_a.response == row["response_1"] and pair.qa_b.response == row["response_0"]
    assert (pair.gold.better, pair.gold.safer) == (0, 1)
    assert pair.qa_a_id < pair.qa_b_id


def test_every_container_reads_the_same_rows(project, writer, tmp_path):
    rows = [qa_row(n, source="model-x") for n in range(3)]
    text_rows = json.dumps(rows, indent=1).encode()
    csv_buffer = io.StringIO()
    csv_writer = csv.DictWriter(csv_buffer, fieldnames=["prompt", "response", "source"])
    csv_writer.writeheader()
    csv_writer.writerows(rows)
    parquet_path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet_path)
    containers = {
        "rows.jsonl": jsonl(*rows),
        "rows.json": text_rows,
        "rows.csv": csv_buffer.getvalue().encode(),
        "rows.parquet": parquet_path.read_bytes(),
        "rows.jsonl.gz": gzip.compress(jsonl(*rows)),
        "rows.json.gz": gzip.compress(text_rows),
        "rows.csv.gz": gzip.compress(csv_buffer.getvalue().encode()),
        "rows.parquet.gz": gzip.compress(parquet_path.read_bytes()),
    }

    for number, (filename, content) in enumerate(containers.items()):
        result = run(project, content, filename, "qa")
        expected_new = 3 if number == 0 else 0
        assert result.counts["rows"] == 3, filename
        assert result.counts["qa_pairs_created"] == expected_new, filename

    assert sorted(QAPair.objects.values_list("response", "source")) == [
        (row["response"], "model-x") for row in rows
    ]


def test_gzip_is_detected_by_its_magic_bytes_too(project):
    result = run(project, gzip.compress(jsonl(qa_row(1))), "export.jsonl", "qa")

    assert result.counts["qa_pairs_created"] == 1


def test_parquet_with_typed_columns(project, tmp_path):
    beavertails = [
        {
            "prompt": "p1",
            "response": "r1",
            "category": {**category_dict(0), "animal_abuse": True},
            "is_safe": False,
        },
        {"prompt": "p2", "response": "r2", "category": category_dict(0), "is_safe": True},
    ]
    pq.write_table(pa.Table.from_pylist(beavertails), tmp_path / "bt.parquet")
    pq.write_table(pa.Table.from_pylist([pku_row()]), tmp_path / "pku.parquet")

    run(project, tmp_path / "bt.parquet", "bt.parquet", "beavertails")
    run(project, tmp_path / "pku.parquet", "pku.parquet", "pku-saferlhf")

    assert GoldStage1Label.objects.get(qa_pair__response="r1").categories == 1
    assert GoldStage1Label.objects.get(qa_pair__response="r2").is_safe is True
    assert GoldStage2Label.objects.count() == 1


def test_a_json_array_with_rows_over_several_lines(project):
    content = b'[\n  {"prompt": "a?",\n   "response": "b."},\n\n  {"prompt": "c?", "response": "d."}\n]\n'

    assert run(project, content, "rows.json", "qa").counts["qa_pairs_created"] == 2


def test_csv_booleans_and_ids_are_parsed_from_text(project):
    content = (
        b"prompt,response_0,response_1,is_response_0_safe,is_response_1_safe,better_response_id,safer_response_id\n"
        b'q?,"a, with a comma",b,True,false,1,0\n'
    )

    run(project, content, "pku.csv", "pku-saferlhf")

    pair = ResponsePair.objects.get()
    assert (pair.qa_a.response, pair.gold.better, pair.gold.safer) == ("a, with a comma", 1, 0)


def test_progress_reports_rows_and_bytes_as_it_goes(project):
    content = jsonl(*(qa_row(n) for n in range(12_000)))
    calls: list[tuple[int, int]] = []

    run(project, content, "big.jsonl", "qa", progress=lambda rows, done: calls.append((rows, done)))

    assert calls[-1] == (12_000, len(content))
    assert [rows for rows, _ in calls] == sorted(rows for rows, _ in calls)
    assert len(calls) >= 3


def test_the_importer_is_recorded(project, researcher):
    result = run(project, jsonl(qa_row(1)), "x.jsonl", "qa", user=researcher)

    assert result.record.created_by == researcher
    assert (result.record.filename, result.record.format) == ("x.jsonl", "qa")


def test_the_public_constants():
    assert set(SUPPORTED_FORMATS) == {"qa", "prompts", "beavertails", "pku-saferlhf"}
    assert {".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz", ".csv.gz"} <= set(SUPPORTED_EXTENSIONS)


# --- refused input: the documented error, the right line, and nothing stored ----------------------


def test_invalid_json_on_a_line(project):
    error = rejected(project, jsonl(qa_row(1)) + b'{"prompt": "x",\n' + jsonl(qa_row(3)), "x.jsonl", "qa")

    assert messages(error) == [(2, None)]
    assert error.errors[0]["message"].startswith("invalid JSON")


def test_invalid_json_inside_an_array_reports_the_elements_line(project):
    content = b'[\n {"prompt": "a", "response": "b"},\n {"prompt": "c",\n  "response" "d"}\n]'

    error = rejected(project, content, "x.json", "qa")

    assert messages(error) == [(4, None)]
    assert "invalid JSON" in error.errors[0]["message"]


def test_an_unclosed_array(project):
    error = rejected(project, b'[{"prompt": "a", "response": "b"},\n', "x.json", "qa")

    assert "no closing ]" in error.errors[0]["message"]


def test_missing_and_mistyped_fields(project):
    rows = [
        {"prompt": "a?"},
        {"prompt": 42, "response": "b."},
        {"prompt": "c?", "response": ["not", "text"]},
        pku_row(is_response_0_safe="yes"),
    ]

    qa_error = rejected(project, jsonl(*rows[:3]), "x.jsonl", "qa")
    pku_error = rejected(
        project,
        jsonl(pku_row(better_response_id=2), pku_row(is_response_0_safe="yes")),
        "p.jsonl",
        "pku-saferlhf",
    )

    assert messages(qa_error) == [(1, "response"), (2, "prompt"), (3, "response")]
    assert qa_error.errors[0]["message"] == "required field is missing"
    assert qa_error.errors[1]["message"] == "must be text, got a number"
    assert messages(pku_error) == [(1, "better_response_id"), (2, "is_response_0_safe")]


def test_a_row_that_is_not_an_object(project):
    error = rejected(project, b'["a", "b"]\n', "x.jsonl", "qa")

    assert error.errors[0]["message"] == "each row must be a JSON object, got an array"


def test_unknown_category_keys(project):
    bad_dict = {**category_dict(0), "jaywalking": True}
    beavertails = jsonl({"prompt": "a", "response": "b", "category": bad_dict})
    csv_content = b"prompt,response,category\na,b,jaywalking\n"
    prompts = jsonl({"prompt": "a", "category": "jaywalking", "category_id": 0})

    for content, filename, format in (
        (beavertails, "b.jsonl", "beavertails"),
        (csv_content, "b.csv", "beavertails"),
        (prompts, "p.jsonl", "prompts"),
    ):
        error = rejected(project, content, filename, format)
        assert messages(error) == [(1 if not filename.endswith(".csv") else 2, "category")]
        assert error.errors[0]["message"] == "unknown harm category 'jaywalking'"


def test_prompt_category_id_must_follow_the_14_keys(project):
    error = rejected(
        project, jsonl({"prompt": "a", "category": "child_abuse", "category_id": 0}), "p.jsonl", "prompts"
    )

    assert messages(error) == [(1, "category_id")]
    assert "'animal_abuse'" in error.errors[0]["message"]


def test_empty_and_whitespace_only_text(project):
    error = rejected(
        project, jsonl({"prompt": "", "response": "b"}, {"prompt": "a", "response": " \n\t"}), "x.jsonl", "qa"
    )

    assert messages(error) == [(1, "prompt"), (2, "response")]
    assert error.errors[0]["message"] == "must not be empty or only whitespace"


def test_a_field_over_the_size_limit_is_measured_in_utf8_bytes(project):
    limit = settings.IMPORT_MAX_FIELD_BYTES
    fits = "é" * (limit // 2)  # 2 bytes each: exactly the limit
    too_long = "é" * (limit // 2 + 1)  # fewer characters than the limit, more bytes

    assert (
        run(project, jsonl({"prompt": "a", "response": fits}), "ok.jsonl", "qa").counts["qa_pairs_created"]
        == 1
    )
    QAPair.objects.all().delete()
    WorkItem.objects.all().delete()
    Prompt.objects.all().delete()
    error = rejected(project, jsonl({"prompt": "a", "response": too_long}), "x.jsonl", "qa")

    assert messages(error) == [(1, "response")]
    assert error.errors[0]["message"] == f"is {limit + 2} bytes in UTF-8; the limit is {limit} bytes"


def test_wrong_encoding_names_the_line(project):
    content = jsonl(qa_row(1), qa_row(2)) + '{"prompt": "caf\xe9", "response": "x"}\n'.encode("latin-1")
    csv_content = b"prompt,response\na,b\n" + "caf\xe9,x\n".encode("latin-1")

    jsonl_error = rejected(project, content, "x.jsonl", "qa")
    csv_error = rejected(project, csv_content, "x.csv", "qa")
    json_error = rejected(
        project,
        b'[{"prompt": "a", "response": "b"},\n' + '{"prompt": "\xe9"}]'.encode("latin-1"),
        "x.json",
        "qa",
    )

    assert messages(jsonl_error) == [(3, None)]
    assert jsonl_error.errors[0]["message"].startswith("not valid UTF-8 (byte 0xe9")
    assert messages(csv_error) == [(3, None)]
    assert messages(json_error) == [(2, None)]


def test_unsupported_extension_and_unknown_format(project):
    extension_error = rejected(project, jsonl(qa_row(1)), "rows.txt", "qa")
    format_error = rejected(project, jsonl(qa_row(1)), "rows.jsonl", "alpaca")

    assert messages(extension_error) == [(None, "file")]
    assert "unsupported file type 'rows.txt'" in extension_error.errors[0]["message"]
    assert messages(format_error) == [(None, "format")]
    assert "unknown format 'alpaca'" in format_error.errors[0]["message"]


@pytest.mark.parametrize(
    ("content", "filename"),
    [
        (b"", "x.jsonl"),
        (b"\n\n", "x.jsonl"),
        (b"[]", "x.json"),
        (b"", "x.json"),
        (b"prompt,response\n", "x.csv"),
        (b"", "x.csv"),
    ],
)
def test_an_empty_file(project, content, filename):
    error = rejected(project, content, filename, "qa")

    assert error.errors == [{"line": None, "field": None, "message": "the file has no rows"}]


def test_an_empty_parquet_file(project, tmp_path):
    pq.write_table(
        pa.table({"prompt": pa.array([], pa.string()), "response": pa.array([], pa.string())}),
        tmp_path / "e.parquet",
    )

    error = rejected(project, (tmp_path / "e.parquet").read_bytes(), "e.parquet", "qa")

    assert error.errors[0]["message"] == "the file has no rows"


def test_is_safe_must_agree_with_the_categories(project):
    rows = [
        {"prompt": "a", "response": "b", "category": category_dict(0), "is_safe": False},
        {"prompt": "c", "response": "d", "category": "self_harm", "is_safe": True},
    ]

    error = rejected(project, jsonl(*rows), "b.jsonl", "beavertails")

    assert messages(error) == [(1, "is_safe"), (2, "is_safe")]


def test_the_safe_response_must_be_the_safer_one(project):
    error = rejected(project, jsonl(pku_row(safer_response_id=1)), "p.jsonl", "pku-saferlhf")

    assert messages(error) == [(1, "safer_response_id")]
    assert "only response_0 is safe" in error.errors[0]["message"]


def test_a_preference_needs_two_different_responses(project):
    error = rejected(project, jsonl(pku_row(response_1=pku_row()["response_0"])), "p.jsonl", "pku-saferlhf")

    assert messages(error) == [(1, "response_1")]


def test_a_missing_csv_or_parquet_column_is_one_error(project, tmp_path):
    pq.write_table(pa.Table.from_pylist([{"prompt": "a"}] * 5), tmp_path / "p.parquet")

    csv_error = rejected(project, b"prompt,answer\na,b\nc,d\n", "x.csv", "qa")
    parquet_error = rejected(project, (tmp_path / "p.parquet").read_bytes(), "p.parquet", "qa")

    assert messages(csv_error) == [(1, "response")]
    assert messages(parquet_error) == [(None, "response")]


def test_a_csv_row_with_the_wrong_number_of_cells(project):
    error = rejected(project, b"prompt,response\na,b\nc,d,e\n", "x.csv", "qa")

    assert messages(error) == [(3, None)]


def test_csv_line_numbers_count_physical_lines(project):
    content = b'prompt,response\n"multi\nline\nprompt",fine\nok,\n'

    error = rejected(project, content, "x.csv", "qa")

    assert messages(error) == [(5, "response")]


def test_damaged_gzip(project):
    error = rejected(
        project, gzip.compress(jsonl(*(qa_row(n) for n in range(100))))[:-20], "x.jsonl.gz", "qa"
    )

    assert "damaged or truncated" in error.errors[0]["message"]


def test_not_a_parquet_file(project):
    error = rejected(project, b"this is text", "x.parquet", "qa")

    assert error.errors[0]["message"].startswith("not a valid Parquet file")


def test_errors_stop_at_the_limit(project):
    rows = [{"prompt": "", "response": "x"}] * (settings.IMPORT_MAX_ERRORS + 50)

    error = rejected(project, jsonl(*rows), "x.jsonl", "qa")

    assert len(error.errors) == settings.IMPORT_MAX_ERRORS
    assert error.truncated
    assert [problem["line"] for problem in error.errors] == list(range(1, settings.IMPORT_MAX_ERRORS + 1))


def test_an_error_after_stored_batches_rolls_them_back(project, writer):
    rows = [qa_row(n) for n in range(7_000)] + [{"prompt": "late", "response": ""}]

    error = rejected(project, jsonl(*rows), "x.jsonl", "qa")

    assert messages(error) == [(7_001, "response")]


def test_a_refused_import_is_recorded_with_its_errors(project):
    with pytest.raises(ImportRejected) as info:
        run(project, jsonl({"prompt": "", "response": "x"}), "bad.jsonl", "qa")

    record = ImportRecord.objects.get()
    assert record == info.value.record
    assert record.status == ImportRecord.Status.FAILED
    assert record.errors == [
        {"line": 1, "field": "prompt", "message": "must not be empty or only whitespace"}
    ]
    assert str(info.value) == (
        "import of 'bad.jsonl' rejected, nothing stored (1 error): "
        "line 1: prompt: must not be empty or only whitespace"
    )


def test_dedup_still_holds_once_the_in_memory_hashes_are_dropped(project, writer, monkeypatch):
    from annotate.importing import service, writers

    # Small batches and a tiny memory limit: later batches must find earlier rows in the database.
    monkeypatch.setattr(service, "BATCH_ROWS", 4)
    monkeypatch.setattr(writers._KnownIds, "limit", 3)
    rows = [qa_row(n % 5) for n in range(12)]  # 5 distinct rows, repeated across 3 batches

    result = run(project, jsonl(*rows), "x.jsonl", "qa")

    assert result.counts["qa_pairs_created"] == 5
    assert result.counts["skipped_duplicates"] == 7


def test_text_is_stored_exactly(project, writer):
    tricky = 'Tabs\there, "quotes", commas, a back\\slash, \\N, a\r\nnew line and ünïcödé 🦫'

    run(project, jsonl({"prompt": tricky, "response": tricky, "source": "\\N"}), "x.jsonl", "qa")

    qa = QAPair.objects.select_related("prompt").get()
    assert (qa.prompt.text, qa.response, qa.source) == (tricky, tricky, "\\N")
    assert qa.content_hash == qa_hash(tricky, tricky)
