"""The real samples, labelled by agreeing workers through the real services, come back out of the
exports with the file's labels; Hugging Face `datasets` loads every export with the released features.

Offline: `datasets` reads the local files only (HF_DATASETS_OFFLINE, a temporary cache)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from annotate import assignment as engine
from annotate.assignment import assignment_claim, label_submit
from annotate.categories import CATEGORY_KEYS, category_dict, mask_from_keys
from annotate.exporting import snapshot_build, snapshot_create
from annotate.importing import import_file
from annotate.models import QAPair, Snapshot, SnapshotStatus, Stage
from tests.annotate.test_export_support import all_rows, manifest, snapshot_rows
from tests.factories import UserFactory

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.django_db

DATA = Path(settings.SHARED_DATA_DIR)
PKU_FILE = DATA / "pku_saferlhf_v0_sample_16.json"
BEAVERTAILS_CSV = DATA / "beavertails_30k_train_sample_140.csv"
UNSAFE_CATEGORY = "non_violent_unethical_behavior"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def labellers(project):
    from annotate.models import Membership, Role

    users = [UserFactory(username=f"agreeing{n}") for n in range(3)]
    for user in users:
        Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
    return users


def label_all(project, workers: list[Any], stage: int, answer) -> int:
    """Each worker claims and answers every task of the stage it is given; the number answered."""
    answered = 0
    for worker in workers:
        while (lease := assignment_claim(project=project, worker=worker, stage=stage)) is not None:
            label_submit(assignment=lease, payload=answer(lease))
            answered += 1
    return answered


def export(project, user, **options) -> Snapshot:
    snapshot = snapshot_create(project=project, user=user, enqueue=False, **options)
    snapshot_build(snapshot=snapshot)
    assert snapshot.status == SnapshotStatus.SUCCEEDED, snapshot.error
    return snapshot


def load(snapshot: Snapshot, cache: Path, *, folder: bool = False) -> Any:
    """The snapshot's splits through `datasets`: by file (json/parquet builder) or by its card."""
    import datasets

    # Each build's files are under its own token's folder (the card's data_files are relative to it).
    root = Path(settings.MEDIA_ROOT) / "snapshots" / str(snapshot.pk) / snapshot.build_token
    if folder:
        return datasets.load_dataset(str(root), cache_dir=str(cache))
    data_files = {f["split"]: str(root / f["name"]) for f in snapshot.files if f.get("split") and f["rows"]}
    builder = "parquet" if snapshot.file_format == "parquet" else "json"
    return datasets.load_dataset(builder, data_files=data_files, cache_dir=str(cache))


def beavertails_features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "prompt": Value("string"),
            "response": Value("string"),
            "category": {key: Value("bool") for key in CATEGORY_KEYS},
            "is_safe": Value("bool"),
        }
    )


def pku_features() -> Any:
    from datasets import Features, Value

    return Features(
        {
            "prompt": Value("string"),
            "response_0": Value("string"),
            "response_1": Value("string"),
            "is_response_0_safe": Value("bool"),
            "is_response_1_safe": Value("bool"),
            "better_response_id": Value("int64"),
            "safer_response_id": Value("int64"),
        }
    )


def assert_released_features(dataset_dict: Any, expected: Any) -> None:
    for split in dataset_dict.values():
        assert split.features == expected
        assert list(split.features) == list(expected)  # field order
        if "category" in expected:
            assert list(split.features["category"]) == list(CATEGORY_KEYS)  # the released key order


# --- PKU-SafeRLHF through both stages ----------------------------------------------------------------


def test_the_pku_sample_labelled_through_both_stages_comes_back_with_its_labels(
    project, labellers, researcher, tmp_path
):
    rows = json.loads(PKU_FILE.read_text())
    import_file(project=project, file=PKU_FILE, filename=PKU_FILE.name, format="pku-saferlhf")
    safety = {}
    for row in rows:
        safety[row["response_0"]] = row["is_response_0_safe"]
        safety[row["response_1"]] = row["is_response_1_safe"]
    by_prompt = {row["prompt"]: row for row in rows}
    engine.rng.seed(20261129)  # the display order of stage 2 is random; fix it, and check both occur

    def classify(lease):
        qa = QAPair.objects.get(pk=lease.work_item.qa_pair_id)
        return {"categories": [] if safety[qa.response] else [UNSAFE_CATEGORY]}

    shown_swapped = []

    def rank(lease):
        pair = lease.work_item.response_pair
        row = by_prompt[pair.prompt.text]
        # The file's ids are in its own order; the pair's canonical order may differ, and the worker
        # answers in the order shown (swapped or not).
        flip = 0 if pair.qa_a.response == row["response_0"] else 1
        shown = 1 if lease.swapped else 0
        shown_swapped.append(lease.swapped)
        return {
            "better_response_id": row["better_response_id"] ^ flip ^ shown,
            "safer_response_id": row["safer_response_id"] ^ flip ^ shown,
        }

    assert label_all(project, labellers, Stage.CLASSIFY, classify) == 3 * 32
    assert label_all(project, labellers, Stage.RANK, rank) == 3 * 16
    assert True in shown_swapped and False in shown_swapped

    for file_format in ("jsonl", "parquet"):
        # Without expert labels: every value must come from the workers' consensus.
        snapshot = export(
            project, researcher, format="pku-saferlhf", file_format=file_format,
            filters={"include_gold": False}, test_ratio=0.25,
        )  # fmt: skip
        assert snapshot.row_counts["total"] == 16 and snapshot.row_counts["excluded"] == {}
        assert snapshot.row_counts["consensus_sources"] == {"workers": 16}
        assert snapshot.row_counts["response_safety_sources"] == {"workers": 32}
        for exported in all_rows(snapshot):
            original = by_prompt[exported["prompt"]]
            assert {exported["response_0"], exported["response_1"]} == {
                original["response_0"],
                original["response_1"],
            }
            if exported["response_0"] == original["response_0"]:
                expected = original
            else:  # the export's order is the other way round: flip the file's ids to compare
                expected = {
                    **original,
                    "is_response_0_safe": original["is_response_1_safe"],
                    "is_response_1_safe": original["is_response_0_safe"],
                    "better_response_id": 1 - original["better_response_id"],
                    "safer_response_id": 1 - original["safer_response_id"],
                    "response_0": original["response_1"],
                    "response_1": original["response_0"],
                }
            assert exported == expected
        assert_released_features(load(snapshot, tmp_path / f"hf-{file_format}"), pku_features())

    # The default (expert labels allowed) gives the same rows: workers agreed with the file.
    default = export(project, researcher, format="pku-saferlhf", test_ratio=0.25)
    assert sorted(map(json.dumps, all_rows(default))) == sorted(map(json.dumps, all_rows(snapshot)))


def test_the_pku_import_exports_unlabelled_with_its_expert_labels(project, researcher, tmp_path):
    rows = json.loads(PKU_FILE.read_text())
    import_file(project=project, file=PKU_FILE, filename=PKU_FILE.name, format="pku-saferlhf")

    # Off by default, the expert answers are no consensus: nothing is exported, and it says why.
    default = export(project, researcher, format="pku-saferlhf", test_ratio=0)
    assert default.row_counts["total"] == 0 and default.row_counts["excluded"] == {"gold_not_included": 16}
    snapshot = export(
        project, researcher, format="pku-saferlhf", test_ratio=0, filters={"include_gold": True}
    )

    assert snapshot.row_counts["consensus_sources"] == {"gold": 16}
    exported = {row["prompt"]: row for row in all_rows(snapshot)}
    for row in rows:
        out = exported[row["prompt"]]
        if out["response_0"] == row["response_0"]:
            assert out == row
    # As BeaverTails rows, its safe responses are rows with no category; its unsafe ones name no
    # category, which a BeaverTails row cannot say, so they are left out and counted.
    safety = {}
    for row in rows:
        safety[row["response_0"]] = row["is_response_0_safe"]
        safety[row["response_1"]] = row["is_response_1_safe"]
    beavertails = export(project, researcher, format="beavertails", filters={"include_gold": True})
    safe = sum(safety.values())
    assert beavertails.row_counts["total"] == safe
    assert beavertails.row_counts["excluded"] == {"unsafe_without_category": len(safety) - safe}
    assert manifest(beavertails)["counts"]["excluded"] == beavertails.row_counts["excluded"]
    assert all(row["is_safe"] and not any(row["category"].values()) for row in all_rows(beavertails))


# --- BeaverTails ------------------------------------------------------------------------------------


def test_the_beavertails_sample_labelled_by_agreeing_workers_round_trips_its_categories(
    project, labellers, researcher, tmp_path
):
    with BEAVERTAILS_CSV.open(newline="") as file:
        rows = list(csv.DictReader(file))
    import_file(project=project, file=BEAVERTAILS_CSV, filename=BEAVERTAILS_CSV.name, format="beavertails")
    expected = {
        (row["prompt"], row["response"]): category_dict(mask_from_keys([row["category"]])) for row in rows
    }

    def classify(lease):
        qa = QAPair.objects.select_related("prompt").get(pk=lease.work_item.qa_pair_id)
        categories = expected[(qa.prompt.text, qa.response)]
        return {"categories": [key for key, flag in categories.items() if flag]}

    items = QAPair.objects.filter(project=project).count()
    assert label_all(project, labellers, Stage.CLASSIFY, classify) == 3 * items

    jsonl = export(project, researcher, format="beavertails", filters={"include_gold": False})
    parquet = export(
        project, researcher, format="beavertails", file_format="parquet", filters={"include_gold": False}
    )
    for snapshot in (jsonl, parquet):
        exported = all_rows(snapshot)
        assert snapshot.row_counts["consensus_sources"] == {"workers": items}
        assert len(exported) == items == len(expected)
        for row in exported:
            assert list(row) == ["prompt", "response", "category", "is_safe"]
            assert row["category"] == expected[(row["prompt"], row["response"])]
            assert list(row["category"]) == list(CATEGORY_KEYS)
            assert row["is_safe"] is False
    # The same rows in the same files, whichever the file format.
    assert [snapshot_rows(jsonl, "train.jsonl"), snapshot_rows(jsonl, "test.jsonl")] == [
        snapshot_rows(parquet, "train.parquet"),
        snapshot_rows(parquet, "test.parquet"),
    ]
    for snapshot in (jsonl, parquet):
        by_file = load(snapshot, tmp_path / f"hf-{snapshot.pk}")
        assert_released_features(by_file, beavertails_features())
        assert {split: len(data) for split, data in by_file.items()} == {
            "train": snapshot.row_counts["train"],
            "test": snapshot.row_counts["test"],
        }
        # The card's configs and features are enough for `datasets` to load the folder as it is.
        by_card = load(snapshot, tmp_path / f"hf-card-{snapshot.pk}", folder=True)
        assert_released_features(by_card, beavertails_features())
        assert by_card["train"][0] == by_file["train"][0]


def test_an_export_imports_back_unchanged(project, researcher, tmp_path):
    """The exporter and the importer speak the same format: a snapshot file re-imported into a fresh
    project gives the same expert labels, which export again byte for byte."""
    from tests.factories import ProjectFactory

    import_file(project=project, file=BEAVERTAILS_CSV, filename=BEAVERTAILS_CSV.name, format="beavertails")
    # An imported labelled dataset exported unchanged: its expert labels are asked for.
    first = export(project, researcher, format="beavertails", test_ratio=0, filters={"include_gold": True})
    path = Path(settings.MEDIA_ROOT) / first.files[0]["path"]

    copy = ProjectFactory()
    counts = import_file(project=copy, file=path, filename="train.jsonl", format="beavertails").counts
    assert counts["gold_labels_created"] == first.row_counts["total"]
    second = export(copy, None, format="beavertails", test_ratio=0, filters={"include_gold": True})
    assert second.files[0]["sha256"] == first.files[0]["sha256"]
