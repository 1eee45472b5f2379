"""snapshot_create and snapshot_build: what a snapshot selects, the exact formats, the split, the
manifest and card, immutability, failures, storage and flat memory."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import tracemalloc
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from annotate.categories import CATEGORY_KEYS, category_dict, mask_from_keys
from annotate.exporting import SnapshotRefused, snapshot_build, snapshot_create
from annotate.exporting import writers as export_writers
from annotate.exporting.sources import Pseudonyms
from annotate.models import (
    AgreementReport,
    Prompt,
    QAPair,
    Snapshot,
    SnapshotStatus,
    Stage,
    Stage1Label,
    WorkItem,
)
from tests.annotate.test_export_support import (
    adjudicate_qa,
    all_rows,
    manifest,
    settled_pair,
    settled_qa,
    snapshot_file,
    snapshot_rows,
    workers,
)
from tests.factories import ProjectFactory, PromptFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def build(project, user=None, **options):
    options.setdefault("format", "beavertails")
    snapshot = snapshot_create(project=project, user=user, enqueue=False, **options)
    snapshot_build(snapshot=snapshot)
    assert snapshot.status == SnapshotStatus.SUCCEEDED, snapshot.error
    return snapshot


def by_response(snapshot):
    return {row["response"]: row for row in all_rows(snapshot)}


# --- snapshot_create ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"format": "alpaca"}, "format"),
        ({"format": "beavertails", "file_format": "csv"}, "file_format"),
        ({"format": "beavertails", "file_format": "parquet", "compress": True}, "compress"),
        ({"format": "beavertails", "test_ratio": 1.0}, "test_ratio"),
        ({"format": "beavertails", "test_ratio": -0.1}, "test_ratio"),
        ({"format": "beavertails", "seed": -1}, "seed"),
        ({"format": "beavertails", "filters": {"colour": "red"}}, "filters"),
        ({"format": "beavertails", "filters": {"stage": 2}}, "filters"),
        ({"format": "beavertails", "filters": {"min_agreement": 1.5}}, "filters"),
        ({"format": "beavertails", "filters": {"date_from": "yesterday"}}, "filters"),
        (
            {"format": "beavertails", "filters": {"date_from": "2026-02-01", "date_to": "2026-01-01"}},
            "filters",
        ),
        ({"format": "beavertails", "filters": {"guideline_version": 0}}, "filters"),
        ({"format": "raw", "filters": {"min_agreement": 0.5}}, "filters"),
        ({"format": "beavertails", "filters": {"settled_only": "yes"}}, "filters"),
    ],
)
def test_a_bad_request_is_refused_with_the_field(project, researcher, options, field):
    with pytest.raises(ValidationError) as info:
        snapshot_create(project=project, user=researcher, enqueue=False, **options)
    assert field in info.value.message_dict
    assert not Snapshot.objects.exists()


def test_the_filters_are_stored_in_full(project, researcher):
    snapshot = snapshot_create(
        project=project,
        user=researcher,
        format="pku-saferlhf",
        filters={"min_agreement": 0.66},
        enqueue=False,
    )
    assert snapshot.filters == {
        "stage": 2,
        "settled_only": True,
        "include_gold": False,  # off unless asked for (a dataset that measures workers)
        "min_agreement": 0.66,
        "date_from": None,
        "date_to": None,
        "guideline_version": None,
    }
    assert snapshot.status == SnapshotStatus.QUEUED and snapshot.created_by == researcher
    raw = snapshot_create(project=project, user=researcher, format="raw", filters={"stage": 1}, enqueue=False)
    assert raw.filters["stage"] == 1 and raw.filters["settled_only"] is False


def test_the_build_is_queued_after_commit(
    project, researcher, monkeypatch, django_capture_on_commit_callbacks
):
    from annotate import tasks

    queued = []
    monkeypatch.setattr(tasks.export_snapshot, "delay", lambda snapshot_id: queued.append(snapshot_id))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        snapshot = snapshot_create(project=project, user=researcher, format="beavertails")
    assert queued == []  # nothing is sent before the snapshot row is committed
    for callback in callbacks:
        callback()
    assert queued == [snapshot.pk]


# --- the beavertails format -------------------------------------------------------------------------


def test_beavertails_rows_have_the_released_fields_in_order(project):
    settled_qa(project, ["self_harm", "animal_abuse"])
    settled_qa(project, [])
    snapshot = build(project, test_ratio=0)

    lines = snapshot_file(snapshot, "train.jsonl").decode().splitlines()
    assert len(lines) == 2
    for line in lines:
        row = json.loads(line)
        assert list(row) == ["prompt", "response", "category", "is_safe"]
        assert list(row["category"]) == list(CATEGORY_KEYS)
        assert all(isinstance(flag, bool) for flag in row["category"].values())
        assert row["is_safe"] is not any(row["category"].values())
    unsafe = json.loads(lines[0])
    assert unsafe["category"] == category_dict(mask_from_keys(["self_harm", "animal_abuse"]))
    assert unsafe["is_safe"] is False
    assert [f["name"] for f in snapshot.files] == ["train.jsonl", "README.md", "manifest.json"]


def test_the_consensus_comes_from_adjudication_then_workers_then_gold(project):
    adjudicated = settled_qa(project, [], settled=False, labels=[["self_harm"], [], ["privacy_violation"]])
    adjudicate_qa(adjudicated, ["privacy_violation"])
    # Workers settled on one answer; the expert said another: the workers' consensus is the row.
    workers_over_gold = settled_qa(project, ["animal_abuse"], gold=["child_abuse"])
    gold_only = settled_qa(project, [], settled=False, labels=[], gold=["terrorism,organized_crime"])
    unsettled = settled_qa(project, [], settled=False, labels=[["self_harm"]])

    snapshot = build(project, test_ratio=0, filters={"include_gold": True})

    rows = by_response(snapshot)
    assert rows[adjudicated.response]["category"]["privacy_violation"] is True
    assert rows[workers_over_gold.response]["category"] == category_dict(mask_from_keys(["animal_abuse"]))
    assert rows[gold_only.response]["category"]["terrorism,organized_crime"] is True
    assert unsettled.response not in rows
    counts = snapshot.row_counts
    assert counts["consensus_sources"] == {"adjudication": 1, "gold": 1, "workers": 1}
    assert counts["excluded"] == {"no_consensus": 1}


def test_without_gold_only_worker_and_adjudicated_consensus_counts(project):
    settled_qa(project, ["self_harm"], gold=["self_harm"])
    gold_only = settled_qa(project, [], settled=False, labels=[], gold=["self_harm"])
    snapshot = build(project, test_ratio=0, filters={"include_gold": False})
    assert gold_only.response not in by_response(snapshot)
    assert snapshot.row_counts["total"] == 1
    # Left out for want of gold, and counted so.
    assert snapshot.row_counts["excluded"] == {"gold_not_included": 1}


def test_an_expert_unsafe_verdict_without_category_is_left_out_of_beavertails(project):
    # What a PKU-SafeRLHF import gives stage 1: unsafe, with no category a BeaverTails row could show.
    qa = settled_qa(project, [], settled=False, labels=[], gold_unsafe_without_category=True)
    snapshot = build(project, test_ratio=0, filters={"include_gold": True})
    assert qa.response not in by_response(snapshot)
    assert snapshot.row_counts["excluded"] == {"unsafe_without_category": 1}


def test_settled_only_off_adds_a_provisional_majority(project):
    two_agree = settled_qa(project, [], settled=False, labels=[["self_harm"], ["self_harm"]])
    split = settled_qa(project, [], settled=False, labels=[["self_harm"], []])
    settled = settled_qa(project, ["animal_abuse"])

    snapshot = build(project, test_ratio=0, filters={"settled_only": False})

    rows = by_response(snapshot)
    assert rows[two_agree.response]["category"]["self_harm"] is True
    assert split.response not in rows
    assert settled.response in rows
    assert snapshot.row_counts["consensus_sources"] == {"provisional": 1, "workers": 1}
    assert snapshot.row_counts["excluded"] == {"no_consensus": 1}


def test_min_agreement_keeps_items_whose_labels_agree_enough(project):
    unanimous = settled_qa(project, ["self_harm"])
    two_of_three = settled_qa(project, ["self_harm"], labels=[["self_harm"], ["self_harm"], []])
    # Two say self-harm; the third adds a category: two of three agree on the exact set.
    superset = settled_qa(
        project, ["self_harm"], labels=[["self_harm"], ["self_harm", "animal_abuse"], ["self_harm"]]
    )
    expert_only = settled_qa(project, [], settled=False, labels=[], gold=["self_harm"])

    loose = build(project, test_ratio=0, filters={"min_agreement": 0.66, "include_gold": True})
    strict = build(project, test_ratio=0, filters={"min_agreement": 1.0, "include_gold": True})

    assert set(by_response(loose)) == {unanimous.response, two_of_three.response, superset.response}
    assert set(by_response(strict)) == {unanimous.response}
    assert strict.row_counts["excluded"] == {"below_min_agreement": 2, "no_worker_labels": 1}
    assert expert_only.response not in by_response(loose)


def test_guideline_version_keeps_rows_whose_labels_all_used_it(project):
    labellers = workers(3)
    current = settled_qa(project, ["self_harm"], labellers=labellers, version=2)
    old = settled_qa(project, ["self_harm"], labellers=labellers, version=1)
    mixed = settled_qa(project, ["self_harm"], labellers=labellers, version=2)
    Stage1Label.objects.filter(qa_pair=mixed, worker=labellers[0]).update(guideline_version=1)

    snapshot = build(project, test_ratio=0, filters={"guideline_version": 2})

    assert set(by_response(snapshot)) == {current.response}
    assert old.response not in by_response(snapshot)
    assert snapshot.row_counts["excluded"] == {"guideline_version": 2}


def test_the_date_range_applies_to_when_the_consensus_was_reached(project):
    early = settled_qa(project, ["self_harm"])
    late = settled_qa(project, [])
    WorkItem.objects.filter(qa_pair=early).update(settled_at=dt.datetime(2026, 1, 10, 12, tzinfo=dt.UTC))
    WorkItem.objects.filter(qa_pair=late).update(settled_at=dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC))

    january = build(project, test_ratio=0, filters={"date_from": "2026-01-01", "date_to": "2026-01-10"})
    later = build(project, test_ratio=0, filters={"date_from": "2026-02-01T00:00:00Z"})

    assert set(by_response(january)) == {early.response}  # date_to is inclusive of the whole day
    assert set(by_response(later)) == {late.response}
    assert january.row_counts["excluded"] == {"outside_date_range": 1}


# --- the pku-saferlhf format ------------------------------------------------------------------------


def test_pku_rows_are_in_canonical_order_with_safety_from_stage_1(project):
    prompt = PromptFactory(project=project)
    safe = settled_qa(project, [], prompt=prompt)
    unsafe = settled_qa(project, ["self_harm"], prompt=prompt)
    settled_pair(project, safe, unsafe, better=1, safer=0)

    snapshot = build(project, format="pku-saferlhf", test_ratio=0)

    (row,) = snapshot_rows(snapshot, "train.jsonl")
    assert list(row) == [
        "prompt",
        "response_0",
        "response_1",
        "is_response_0_safe",
        "is_response_1_safe",
        "better_response_id",
        "safer_response_id",
    ]
    assert row == {
        "prompt": prompt.text,
        "response_0": safe.response,  # the lower QA pair id
        "response_1": unsafe.response,
        "is_response_0_safe": True,
        "is_response_1_safe": False,
        "better_response_id": 1,
        "safer_response_id": 0,
    }
    assert snapshot.row_counts["response_safety_sources"] == {"workers": 2}


def test_rows_breaking_the_stage_2_invariant_are_excluded_and_counted(project):
    prompt = PromptFactory(project=project)
    safe = settled_qa(project, [], prompt=prompt)
    unsafe = settled_qa(project, ["self_harm"], prompt=prompt)
    other = settled_qa(project, ["animal_abuse"], prompt=prompt)
    # The safe response is qa_a (0), but the consensus ranks the unsafe one as more harmless.
    settled_pair(project, safe, unsafe, better=0, safer=1)
    # Both unsafe: any choice is fine.
    kept = settled_pair(project, unsafe, other, better=0, safer=1)

    snapshot = build(project, format="pku-saferlhf", test_ratio=0)

    rows = all_rows(snapshot)
    assert [(r["response_0"], r["response_1"]) for r in rows] == [(kept.qa_a.response, kept.qa_b.response)]
    assert snapshot.row_counts["excluded"] == {"invariant_broken": 1}
    assert manifest(snapshot)["excluded_reasons"]["invariant_broken"].startswith(
        "exactly one response is safe"
    )


def test_a_pair_needs_the_safety_of_both_responses(project):
    prompt = PromptFactory(project=project)
    known = settled_qa(project, [], prompt=prompt)
    unknown = settled_qa(project, [], prompt=prompt, settled=False, labels=[])
    settled_pair(project, known, unknown, better=0, safer=0)
    gold_safety = settled_qa(
        project, [], prompt=prompt, settled=False, labels=[], gold_unsafe_without_category=True
    )
    settled_pair(project, known, gold_safety, better=0, safer=0)

    with_gold = build(project, format="pku-saferlhf", test_ratio=0, filters={"include_gold": True})
    without_gold = build(project, format="pku-saferlhf", test_ratio=0, filters={"include_gold": False})

    (row,) = all_rows(with_gold)
    assert (row["is_response_0_safe"], row["is_response_1_safe"]) == (True, False)
    assert with_gold.row_counts["excluded"] == {"response_safety_unknown": 1}
    assert with_gold.row_counts["response_safety_sources"] == {"gold": 1, "workers": 1}
    # Without gold, one response's safety is unknown; the other's is only an expert's.
    assert without_gold.row_counts["excluded"] == {"gold_not_included": 1, "response_safety_unknown": 1}


def test_pku_min_agreement_counts_stage_2_and_the_responses_safety_labels(project):
    prompt = PromptFactory(project=project)
    safe = settled_qa(project, [], prompt=prompt)
    unsafe = settled_qa(project, ["self_harm"], prompt=prompt, labels=[["self_harm"], ["self_harm"], []])
    settled_pair(project, safe, unsafe, better=1, safer=0)

    assert (
        build(project, format="pku-saferlhf", test_ratio=0, filters={"min_agreement": 0.66}).row_counts[
            "total"
        ]
        == 1
    )
    strict = build(project, format="pku-saferlhf", test_ratio=0, filters={"min_agreement": 0.9})
    assert strict.row_counts["excluded"] == {"below_min_agreement": 1}


# --- raw labels ---------------------------------------------------------------------------------------


def test_raw_has_every_label_with_pseudonymous_workers(project):
    labellers = [UserFactory(username=name) for name in ("alice", "bob", "carol")]
    prompt = PromptFactory(project=project)
    a = settled_qa(project, ["self_harm"], prompt=prompt, labellers=labellers)
    b = settled_qa(project, [], prompt=prompt, labellers=labellers)
    unsettled = settled_qa(
        project, [], prompt=prompt, settled=False, labels=[["animal_abuse"]], labellers=labellers
    )
    settled_pair(project, a, b, better=1, safer=1, labellers=labellers)

    snapshot = build(project, format="raw", test_ratio=0)

    assert [f["name"] for f in snapshot.files if f.get("split")] == [
        "stage1-train.jsonl",
        "stage2-train.jsonl",
    ]
    stage1 = snapshot_rows(snapshot, "stage1-train.jsonl")
    stage2 = snapshot_rows(snapshot, "stage2-train.jsonl")
    assert len(stage1) == 7 and len(stage2) == 3  # every label, settled or not
    assert {row["qa_pair_id"] for row in stage1} == {a.pk, b.pk, unsettled.pk}
    pseudonyms = Pseudonyms(project)
    assert {row["worker_id"] for row in stage1} == {pseudonyms(user.pk) for user in labellers}
    text = b"".join(snapshot_file(snapshot, f["name"]) for f in snapshot.files)
    assert b"alice" not in text and b"bob" not in text and b"carol" not in text
    label = Stage1Label.objects.get(qa_pair=a, worker=labellers[0])
    row = next(r for r in stage1 if r["label_id"] == label.pk)
    assert row["stage"] == 1 and row["category"]["self_harm"] is True and row["is_safe"] is False
    assert row["guideline_version"] == 1 and row["is_gold"] is False
    assert dt.datetime.fromisoformat(row["created_at"]) == label.created_at
    assert {(r["better_response_id"], r["safer_response_id"]) for r in stage2} == {(1, 1)}
    assert stage2[0]["response_0_qa_pair_id"] < stage2[0]["response_1_qa_pair_id"]
    assert snapshot.row_counts["workers"] == {"stage1": 3, "stage2": 3}


def test_pseudonyms_are_stable_in_a_project_and_differ_across_projects(project):
    user = UserFactory()
    other = ProjectFactory()
    assert Pseudonyms(project)(user.pk) == Pseudonyms(project)(user.pk)
    assert Pseudonyms(project)(user.pk) != Pseudonyms(other)(user.pk)
    assert re.fullmatch(r"w-[0-9a-f]{16}", Pseudonyms(project)(user.pk))
    assert Pseudonyms(project)(user.pk) != Pseudonyms(project)(UserFactory().pk)


def test_raw_filters_by_stage_and_settled_items(project):
    prompt = PromptFactory(project=project)
    settled_qa(project, [], prompt=prompt)
    settled_qa(project, [], prompt=prompt, settled=False, labels=[["self_harm"]])
    snapshot = build(project, format="raw", test_ratio=0, filters={"stage": 1, "settled_only": True})
    assert [f["name"] for f in snapshot.files if f.get("split")] == ["stage1-train.jsonl"]
    assert snapshot.row_counts["total"] == 3
    assert snapshot.row_counts["excluded"] == {"not_settled": 1}


# --- the split ------------------------------------------------------------------------------------------


def _many_prompts(project, count, responses=2, padding=""):
    """count prompts with `responses` settled QA pairs each, in bulk."""
    start = Prompt.objects.filter(project=project).count()
    prompts = Prompt.objects.bulk_create(
        [
            Prompt(
                project=project,
                text=f"prompt {n}?",
                content_hash=hashlib.sha256(f"p{n}".encode()).hexdigest(),
            )
            for n in range(start, start + count)
        ]
    )
    pairs = QAPair.objects.bulk_create(
        [
            QAPair(
                project=project,
                prompt=p,
                response=f"answer {r} to {p.text}{padding}",
                content_hash=f"{p.pk}-{r}",
            )
            for p in prompts
            for r in range(responses)
        ]
    )
    now = timezone.now()
    WorkItem.objects.bulk_create(
        [
            WorkItem(
                project=project, stage=Stage.CLASSIFY, qa_pair=qa, taken=3, labels_count=3, is_open=False,
                settled_at=now, consensus_categories=(qa.pk % 3) << 2, consensus_safe=qa.pk % 3 == 0,
            )
            for qa in pairs
        ]
    )  # fmt: skip
    return prompts


def test_the_split_is_by_prompt_deterministic_and_near_the_ratio(project):
    _many_prompts(project, 400)
    first = build(project, test_ratio=0.25, seed=7)
    again = build(project, test_ratio=0.25, seed=7)
    other_seed = build(project, test_ratio=0.25, seed=8)

    train = {row["prompt"] for row in snapshot_rows(first, "train.jsonl")}
    test = {row["prompt"] for row in snapshot_rows(first, "test.jsonl")}
    assert not train & test
    assert len(train | test) == 400
    assert 0.18 < len(test) / 400 < 0.32
    assert first.row_counts["test"] == 2 * len(test)  # both responses of a prompt on the same side
    assert [f["sha256"] for f in first.files[:2]] == [f["sha256"] for f in again.files[:2]]
    assert {row["prompt"] for row in snapshot_rows(other_seed, "test.jsonl")} != test


def test_a_zero_test_ratio_makes_only_a_train_split(project):
    settled_qa(project, [])
    snapshot = build(project, test_ratio=0)
    assert snapshot.row_counts["train"] == 1 and snapshot.row_counts["test"] == 0
    assert [f["name"] for f in snapshot.files] == ["train.jsonl", "README.md", "manifest.json"]


# --- files, manifest, card ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file_format", "compress", "names"),
    [
        ("jsonl", False, ["train.jsonl", "test.jsonl"]),
        ("jsonl", True, ["train.jsonl.gz", "test.jsonl.gz"]),
        ("parquet", False, ["train.parquet", "test.parquet"]),
    ],
)
def test_the_manifest_hashes_every_file(project, file_format, compress, names):
    _many_prompts(project, 30)
    AgreementReport.objects.create(
        project=project, computed_at=timezone.now(), stage1_labels=90, stage2_labels=0, duration_ms=5,
        payload={"computed_at": "2026-11-29T22:10:00Z", "stage1": {"is_safe": {"alpha": {"value": 0.71}}},
                 "workers": [{"username": "alice"}]},
    )  # fmt: skip
    snapshot = build(project, file_format=file_format, compress=compress, test_ratio=0.3)

    assert [f["name"] for f in snapshot.files] == [*names, "README.md", "manifest.json"]
    for entry in snapshot.files:
        content = snapshot_file(snapshot, entry["name"])
        assert hashlib.sha256(content).hexdigest() == entry["sha256"]
        assert len(content) == entry["bytes"]
        assert entry["path"] == f"snapshots/{snapshot.pk}/{snapshot.build_token}/{entry['name']}"
        assert default_storage.exists(entry["path"])
    described = manifest(snapshot)
    assert [f["name"] for f in described["files"]] == [*names, "README.md"]
    assert {f["name"]: f["sha256"] for f in described["files"]} == {
        f["name"]: f["sha256"] for f in snapshot.files if f["name"] != "manifest.json"
    }
    assert described["counts"]["total"] == 60 == sum(len(snapshot_rows(snapshot, n)) for n in names)
    assert described["project"] == {"slug": project.slug, "name": project.name}
    assert (described["format"], described["file_format"], described["license"]) == (
        "beavertails",
        file_format,
        "CC-BY-NC-4.0",
    )
    assert described["agreement"]["stage1"]["is_safe"]["alpha"] == 0.71
    assert "alice" not in json.dumps(described)  # the stored report names workers; the dataset does not
    assert snapshot.agreement["workers"] == [{"username": "alice"}]
    stats = described["statistics"]["default"]["all"]
    assert stats["rows"] == 60 and stats["safe"] + stats["unsafe"] == 60
    assert list(stats["categories"]["counts"]) == list(CATEGORY_KEYS)


def test_gzip_output_is_reproducible(project):
    _many_prompts(project, 20)
    first = build(project, compress=True)
    second = build(project, compress=True)
    assert [f["sha256"] for f in first.files[:2]] == [f["sha256"] for f in second.files[:2]]


def test_the_card_has_front_matter_for_datasets_and_the_exact_filter(project):
    import yaml

    _many_prompts(project, 20)
    snapshot = build(project, filters={"min_agreement": None}, test_ratio=0.2, license="CC-BY-4.0")
    card = snapshot_file(snapshot, "README.md").decode()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "cc-by-4.0"
    assert front["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "train.jsonl"},
                {"split": "test", "path": "test.jsonl"},
            ],
        }
    ]
    (info,) = front["dataset_info"]
    assert [f["name"] for f in info["features"]] == ["prompt", "response", "category", "is_safe"]
    assert [f["name"] for f in info["features"][2]["struct"]] == list(CATEGORY_KEYS)
    assert sum(s["num_examples"] for s in info["splits"]) == 40
    assert '"settled_only": true' in card and '"seed": 42' in card
    assert "Licence:** CC-BY-4.0" in card
    assert "self_harm" not in card or "| `self_harm` |" in card


# --- immutability and failures -----------------------------------------------------------------------


def test_a_built_snapshot_is_never_rebuilt(project):
    settled_qa(project, ["self_harm"])
    snapshot = build(project)
    files = list(snapshot.files)
    settled_qa(project, [])  # the project moves on

    with pytest.raises(SnapshotRefused):
        snapshot_build(snapshot=Snapshot.objects.get(pk=snapshot.pk))

    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.SUCCEEDED and snapshot.files == files
    assert snapshot.row_counts["total"] == 1


def test_a_running_snapshot_is_not_built_twice(project):
    snapshot = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    Snapshot.objects.filter(pk=snapshot.pk).update(status=SnapshotStatus.RUNNING)
    with pytest.raises(SnapshotRefused, match="is running"):
        snapshot_build(snapshot=snapshot)


def test_a_snapshot_abandoned_while_running_may_be_built_again(project):
    settled_qa(project, [])
    snapshot = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    Snapshot.objects.filter(pk=snapshot.pk).update(
        status=SnapshotStatus.RUNNING, started_at=timezone.now() - dt.timedelta(hours=7)
    )
    snapshot_build(snapshot=snapshot)
    assert snapshot.status == SnapshotStatus.SUCCEEDED and snapshot.row_counts["total"] == 1


def test_a_failed_build_records_the_error_and_leaves_no_files(project, monkeypatch, media):
    settled_qa(project, ["self_harm"])

    def broken(self):
        raise OSError("disk full")

    monkeypatch.setattr(export_writers.JsonLinesWriter, "_flush", broken)
    snapshot = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    snapshot_build(snapshot=snapshot)

    snapshot.refresh_from_db()
    assert snapshot.status == SnapshotStatus.FAILED
    assert "disk full" in snapshot.error
    assert snapshot.files == [] and snapshot.finished_at is not None
    assert not list((media / "snapshots").glob(f"{snapshot.pk}/*"))
    assert not list((media / "snapshots" / ".building").iterdir())

    monkeypatch.undo()
    snapshot_build(snapshot=snapshot)  # a failed snapshot may be built again
    assert snapshot.status == SnapshotStatus.SUCCEEDED


def test_progress_is_reported(project):
    _many_prompts(project, 10)
    seen = []
    snapshot = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    snapshot_build(snapshot=snapshot, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (20, 20)
    snapshot.refresh_from_db()
    assert snapshot.progress == 1.0 and snapshot.started_at <= snapshot.finished_at


def test_any_django_storage_works(project, settings):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    settled_qa(project, ["self_harm"])
    snapshot = build(project, test_ratio=0)
    content = snapshot_file(snapshot, "train.jsonl")
    assert hashlib.sha256(content).hexdigest() == snapshot.files[0]["sha256"]
    assert json.loads(content)["category"]["self_harm"] is True


# --- streaming ----------------------------------------------------------------------------------------


def test_memory_stays_flat_as_the_project_grows(project, monkeypatch):
    """Peak Python memory of a build does not grow with the number of rows (small buffers make the
    comparison sharp on a few thousand rows)."""
    from annotate.exporting import selectors

    monkeypatch.setattr(selectors, "CHUNK_ROWS", 100)
    monkeypatch.setattr(export_writers, "BATCH_ROWS", 100)
    monkeypatch.setattr(export_writers, "ROW_GROUP_ROWS", 500)

    def peak_for(file_format):
        snapshot = snapshot_create(
            project=project, user=None, format="beavertails", file_format=file_format, enqueue=False
        )
        tracemalloc.start()
        snapshot_build(snapshot=snapshot)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert snapshot.status == SnapshotStatus.SUCCEEDED, snapshot.error
        return peak, snapshot.row_counts["total"]

    padding = " and so on" * 50  # rows of about BeaverTails size, so that holding them would show
    _many_prompts(project, 500, padding=padding)
    for fmt in ("jsonl", "parquet"):
        peak_for(fmt)  # the first build of a process also pays for imports and caches
    small = {fmt: peak_for(fmt) for fmt in ("jsonl", "parquet")}
    _many_prompts(project, 2000, padding=padding)  # five times the rows
    large = {fmt: peak_for(fmt) for fmt in ("jsonl", "parquet")}
    for fmt in ("jsonl", "parquet"):
        assert (small[fmt][1], large[fmt][1]) == (1000, 5000)
        assert large[fmt][0] < small[fmt][0] * 1.3, (fmt, small[fmt][0], large[fmt][0])


def test_rows_come_in_id_order(project):
    for n in range(5):
        settled_qa(project, ["self_harm"] if n % 2 else [])
    snapshot = build(project, test_ratio=0)
    responses = [row["response"] for row in all_rows(snapshot)]
    assert responses == list(QAPair.objects.order_by("pk").values_list("response", flat=True))
    assert Counter(row["is_safe"] for row in all_rows(snapshot)) == {True: 3, False: 2}


# --- Two builds of one snapshot -----------------------------------------------------------------------


def test_a_build_given_up_for_dead_cannot_touch_the_build_that_replaced_it(project, settings):
    """The first build is slow, not dead: after ABANDONED_AFTER a redelivered message claims the snapshot
    again and finishes. When the first one ends it must neither record its result nor delete the second
    build's files, which are the snapshot now."""
    from annotate.exporting import services as export_services

    _many_prompts(project, 12)
    snapshot = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    second: dict[str, Snapshot] = {}

    def meanwhile(done, total):
        if second:
            return
        Snapshot.objects.filter(pk=snapshot.pk).update(
            started_at=timezone.now() - export_services.ABANDONED_AFTER - dt.timedelta(minutes=1)
        )
        second["built"] = snapshot_build(snapshot=Snapshot.objects.get(pk=snapshot.pk))

    first = snapshot_build(snapshot=snapshot, progress=meanwhile)
    assert second["built"].status == SnapshotStatus.SUCCEEDED
    stored = Snapshot.objects.get(pk=snapshot.pk)
    assert stored.status == SnapshotStatus.SUCCEEDED and stored.build_token == second["built"].build_token
    assert stored.files == second["built"].files
    for entry in stored.files:  # the second build's files are all there, under its own folder
        assert default_storage.exists(entry["path"]) and stored.build_token in entry["path"]
    # The first build's files are gone: it cleaned up only its own folder.
    assert first.build_token != stored.build_token
    assert not default_storage.exists(f"snapshots/{snapshot.pk}/{first.build_token}/README.md")


def test_a_snapshot_no_worker_took_in_time_is_failed(project, settings):
    from annotate.exporting.services import snapshots_fail_expired

    settings.SNAPSHOT_QUEUE_EXPIRY_S = 3600
    old = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    new = snapshot_create(project=project, user=None, format="beavertails", enqueue=False)
    Snapshot.objects.filter(pk=old.pk).update(created_at=timezone.now() - dt.timedelta(hours=2))
    assert snapshots_fail_expired() == [old.pk]
    old.refresh_from_db()
    assert old.status == SnapshotStatus.FAILED and "queue message expired" in old.error
    assert Snapshot.objects.get(pk=new.pk).status == SnapshotStatus.QUEUED
