"""Helpers shared by the export tests (no tests here): settled items built directly, and reading a
snapshot's files back."""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pyarrow.parquet as pq
from django.core.files.storage import default_storage
from django.utils import timezone

from annotate.categories import mask_from_keys
from annotate.models import (
    Adjudication,
    GoldStage1Label,
    GoldStage2Label,
    Project,
    QAPair,
    ResponsePair,
    Snapshot,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)
from tests.factories import PromptFactory, QAPairFactory, UserFactory


def workers(count: int, prefix: str = "labeller") -> list[Any]:
    return [UserFactory(username=f"{prefix}{n}") for n in range(count)]


def settled_qa(
    project: Project,
    categories: list[str],
    *,
    prompt: Any = None,
    labels: list[list[str]] | None = None,
    labellers: list[Any] | None = None,
    version: int = 1,
    settled: bool = True,
    gold: list[str] | None = None,
    gold_unsafe_without_category: bool = False,
) -> QAPair:
    """A QA pair whose stage-1 item settled on `categories` (labels default to three agreeing ones)."""
    prompt = prompt or PromptFactory(project=project)
    qa = QAPairFactory(prompt=prompt, project=project)
    mask = mask_from_keys(categories)
    item = WorkItem.objects.create(
        project=project,
        stage=Stage.CLASSIFY,
        qa_pair=qa,
        taken=3,
        labels_count=3,
        is_open=False,
        is_gold=gold is not None or gold_unsafe_without_category,
        settled_at=timezone.now() if settled else None,
        consensus_categories=mask if settled else None,
        consensus_safe=(mask == 0) if settled else None,
    )
    labels = labels if labels is not None else [categories] * 3
    labellers = labellers or workers(len(labels))
    for labeller, keys in zip(labellers, labels, strict=False):
        label_mask = mask_from_keys(keys)
        Stage1Label.objects.create(
            qa_pair=qa,
            worker=labeller,
            categories=label_mask,
            is_safe=label_mask == 0,
            guideline_version=version,
        )
    item.labels_count = len(labels)
    item.save(update_fields=["labels_count"])
    if gold is not None:
        gold_mask = mask_from_keys(gold)
        GoldStage1Label.objects.create(
            qa_pair=qa, categories=gold_mask, is_safe=gold_mask == 0, source="test"
        )
    if gold_unsafe_without_category:
        GoldStage1Label.objects.create(qa_pair=qa, categories=0, is_safe=False, source="pku")
    return qa


def adjudicate_qa(qa: QAPair, categories: list[str]) -> Adjudication:
    mask = mask_from_keys(categories)
    return Adjudication.objects.create(
        work_item=qa.work_item, decided_at=timezone.now(), categories=mask, is_safe=mask == 0
    )


def settled_pair(
    project: Project,
    qa_a: QAPair,
    qa_b: QAPair,
    *,
    better: int,
    safer: int,
    labels: list[tuple[int, int]] | None = None,
    labellers: list[Any] | None = None,
    settled: bool = True,
    gold: tuple[int, int] | None = None,
    version: int = 1,
) -> ResponsePair:
    first, second = sorted([qa_a, qa_b], key=lambda qa: qa.pk)
    pair = ResponsePair.objects.create(project=project, prompt=qa_a.prompt, qa_a=first, qa_b=second)
    WorkItem.objects.create(
        project=project,
        stage=Stage.RANK,
        response_pair=pair,
        taken=3,
        labels_count=3,
        is_open=False,
        is_gold=gold is not None,
        settled_at=timezone.now() if settled else None,
        consensus_better=better if settled else None,
        consensus_safer=safer if settled else None,
    )
    labels = labels if labels is not None else [(better, safer)] * 3
    labellers = labellers or workers(len(labels), prefix="ranker")
    for labeller, (b, s) in zip(labellers, labels, strict=False):
        Stage2Label.objects.create(
            response_pair=pair, worker=labeller, better=b, safer=s, guideline_version=version
        )
    if gold is not None:
        GoldStage2Label.objects.create(response_pair=pair, better=gold[0], safer=gold[1], source="test")
    return pair


def snapshot_file(snapshot: Snapshot, name: str) -> bytes:
    entry = next(f for f in snapshot.files if f["name"] == name)
    with default_storage.open(entry["path"], "rb") as file:
        return bytes(file.read())


def snapshot_rows(snapshot: Snapshot, name: str) -> list[dict[str, Any]]:
    """A data file's rows as dicts, in file order (JSON lines, gzip or Parquet)."""
    content = snapshot_file(snapshot, name)
    if name.endswith(".parquet"):
        return list(pq.read_table(io.BytesIO(content)).to_pylist())
    if name.endswith(".gz"):
        content = gzip.decompress(content)
    return [json.loads(line) for line in content.decode("utf-8").splitlines() if line]


def all_rows(snapshot: Snapshot) -> list[dict[str, Any]]:
    return [row for f in snapshot.files if f.get("split") for row in snapshot_rows(snapshot, f["name"])]


def manifest(snapshot: Snapshot) -> dict[str, Any]:
    return dict(json.loads(snapshot_file(snapshot, "manifest.json")))
