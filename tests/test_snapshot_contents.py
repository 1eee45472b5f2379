"""Snapshots say what they contain: the mix of label sources per split and every excluded row with its
reason, on the Datasets page and in the dataset card; expert (gold) labels only when asked for.

Snapshots are requested as a researcher does (the Datasets page form, the API) and built by the export
task, run in-process where the broker would hand it to a worker."""

from __future__ import annotations

import datetime as dt

import pytest
from django.urls import reverse

from annotate import tasks
from annotate.exporting.contents import exclusions, source_totals
from annotate.exporting.split import Splitter
from annotate.models import Adjudication, Snapshot, SnapshotStatus, Stage1Label, WorkItem
from tests.annotate.test_export_support import (
    adjudicate_qa,
    all_rows,
    settled_pair,
    settled_qa,
    snapshot_file,
    workers,
)
from tests.factories import PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def built_by_the_task(monkeypatch):
    """The queued message runs the export task at once, in this process, instead of going to a broker."""
    monkeypatch.setattr(
        tasks.export_snapshot, "delay", lambda snapshot_id: tasks.export_snapshot.apply(args=[snapshot_id])
    )


@pytest.fixture
def mixed(project):
    """Two items settled by workers, one adjudicated (its workers split), one that only an expert
    labelled, one still open."""
    return {
        "workers": [settled_qa(project, ["self_harm"]), settled_qa(project, [])],
        "adjudicated": adjudicate_qa(
            settled_qa(project, [], settled=False, labels=[["self_harm"], [], ["privacy_violation"]]),
            ["privacy_violation"],
        ).work_item.qa_pair,
        "gold_only": settled_qa(project, [], settled=False, labels=[], gold=["terrorism,organized_crime"]),
        "open": settled_qa(project, [], settled=False, labels=[["self_harm"]]),
    }


def from_the_page(client, project, researcher, django_capture_on_commit_callbacks, **fields) -> Snapshot:
    """A snapshot asked for on the Datasets page (an unticked checkbox is simply not sent)."""
    form = {"format": "beavertails", "file_format": "jsonl", "test_ratio": "0", "seed": "42"}
    form["license"] = "CC-BY-NC-4.0"
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("frontend:snapshots", args=[project.slug]), {**form, **fields})
    assert response.status_code == 302
    snapshot = Snapshot.objects.latest("pk")
    assert snapshot.status == SnapshotStatus.SUCCEEDED, snapshot.error
    return snapshot


def from_the_api(api, project, researcher, django_capture_on_commit_callbacks, **payload) -> Snapshot:
    url = reverse("annotate-api:project-exports", kwargs={"slug": project.slug})
    with django_capture_on_commit_callbacks(execute=True):
        response = api(researcher).post(url, {"format": "beavertails", **payload}, format="json")
    assert response.status_code == 202, response.json()
    snapshot = Snapshot.objects.get(pk=response.json()["id"])
    assert snapshot.status == SnapshotStatus.SUCCEEDED, snapshot.error
    return snapshot


def responses(snapshot: Snapshot) -> set[str]:
    return {row["response"] for row in all_rows(snapshot)}


def test_the_default_snapshot_leaves_gold_only_rows_out_and_says_so(
    client, project, researcher, mixed, django_capture_on_commit_callbacks
):
    snapshot = from_the_page(client, project, researcher, django_capture_on_commit_callbacks)

    assert snapshot.filters["include_gold"] is False
    assert mixed["gold_only"].response not in responses(snapshot)
    counts = snapshot.row_counts
    assert counts["total"] == 3
    assert counts["excluded"] == {"gold_not_included": 1, "no_consensus": 1}
    assert counts["sources"]["train"] == {"workers": 2, "adjudication": 1, "gold": 0}
    # The keys older snapshots and API clients read are unchanged.
    assert counts["consensus_sources"] == {"adjudication": 1, "workers": 2}
    assert exclusions(counts, snapshot.filters, snapshot.format) == [
        ("gold_not_included", "only an expert label (gold not included)", 1),
        ("no_consensus", "not settled yet", 1),
    ]


def test_the_api_default_is_no_gold_too(api, project, researcher, mixed, django_capture_on_commit_callbacks):
    snapshot = from_the_api(api, project, researcher, django_capture_on_commit_callbacks, test_ratio=0)
    assert snapshot.filters["include_gold"] is False
    assert snapshot.row_counts["excluded"]["gold_not_included"] == 1

    detail = api(researcher).get(reverse("annotate-api:export-detail", kwargs={"snapshot_id": snapshot.pk}))
    assert detail.json()["row_counts"]["sources"]["train"]["gold"] == 0


def test_with_include_gold_the_gold_rows_appear_and_count_as_gold_in_their_split(
    api, project, researcher, django_capture_on_commit_callbacks
):
    for _ in range(6):
        settled_qa(project, ["self_harm"])
    gold_only = settled_qa(project, [], settled=False, labels=[], gold=["terrorism,organized_crime"])

    snapshot = from_the_api(
        api,
        project,
        researcher,
        django_capture_on_commit_callbacks,
        test_ratio=0.5,
        seed=3,
        filters={"include_gold": True},
    )

    assert gold_only.response in responses(snapshot)
    counts = snapshot.row_counts
    assert "gold_not_included" not in counts["excluded"]
    gold_split = Splitter(seed=3, test_ratio=0.5).split_of(gold_only.prompt.content_hash)
    assert counts["sources"][gold_split]["gold"] == 1
    for split in ("train", "test"):
        # Every row of a split is counted under exactly one source.
        assert sum(counts["sources"][split].values()) == counts[split]
    assert counts["sources"]["train"]["workers"] + counts["sources"]["test"]["workers"] == 6


def test_adjudicated_rows_are_counted_as_adjudicated(
    project, researcher, client, django_capture_on_commit_callbacks
):
    # Workers settled on one answer, an admin decided another: the admin's decision is the row.
    overruled = settled_qa(project, ["self_harm"])
    adjudicate_qa(overruled, [])
    prompt = PromptFactory(project=project)
    safe, unsafe = settled_qa(project, [], prompt=prompt), settled_qa(project, ["self_harm"], prompt=prompt)
    pair = settled_pair(project, safe, unsafe, better=0, safer=0)
    WorkItem.objects.filter(response_pair=pair).update(
        settled_at=None, consensus_better=None, consensus_safer=None
    )
    Adjudication.objects.create(
        work_item=pair.work_item, decided_at=dt.datetime.now(dt.UTC), better=1, safer=0
    )

    beavertails = from_the_page(client, project, researcher, django_capture_on_commit_callbacks)
    pku = from_the_page(
        client, project, researcher, django_capture_on_commit_callbacks, format="pku-saferlhf"
    )

    assert beavertails.row_counts["sources"]["train"] == {"workers": 2, "adjudication": 1, "gold": 0}
    assert pku.row_counts["sources"]["train"] == {"workers": 0, "adjudication": 1, "gold": 0}
    assert [(row["better_response_id"], row["safer_response_id"]) for row in all_rows(pku)] == [(1, 0)]


def test_every_filter_that_drops_rows_counts_under_its_own_reason(
    api, project, researcher, django_capture_on_commit_callbacks
):
    labellers = workers(3)
    settled_qa(project, ["self_harm"], labellers=labellers)
    settled_qa(project, [], labellers=labellers)
    # Two of three agree: below 0.8.
    settled_qa(project, ["self_harm"], labels=[["self_harm"], ["self_harm"], []], labellers=labellers)
    old = settled_qa(project, ["self_harm"], labellers=labellers)
    Stage1Label.objects.filter(qa_pair=old).update(guideline_version=2)
    late = settled_qa(project, [], labellers=labellers)
    WorkItem.objects.filter(qa_pair=late).update(settled_at=dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    settled_qa(project, [], settled=False, labels=[["self_harm"]])

    snapshot = from_the_api(
        api,
        project,
        researcher,
        django_capture_on_commit_callbacks,
        test_ratio=0,
        filters={"min_agreement": 0.8, "guideline_version": 1, "date_to": "2030-12-31"},
    )

    assert snapshot.row_counts["total"] == 2
    assert dict(
        (reason, label)
        for reason, label, _ in exclusions(snapshot.row_counts, snapshot.filters, "beavertails")
    ) == {
        "below_min_agreement": "below agreement 0.8",
        "guideline_version": "not under guideline version 1",
        "outside_date_range": "after 2030-12-31",
        "no_consensus": "not settled yet",
    }
    assert all(count == 1 for _, _, count in exclusions(snapshot.row_counts, snapshot.filters, "beavertails"))


def test_raw_counts_labels_on_gold_and_ordinary_items_and_why_labels_were_left_out(
    api, project, researcher, django_capture_on_commit_callbacks
):
    settled_qa(project, ["self_harm"])  # three labels
    settled_qa(project, ["self_harm"], gold=["self_harm"])  # three labels on a gold item
    settled_qa(project, [], settled=False, labels=[["self_harm"]])  # one label on an open item
    prompt = PromptFactory(project=project)
    pair = settled_pair(
        project,
        settled_qa(project, [], prompt=prompt),
        settled_qa(project, [], prompt=prompt),
        better=0,
        safer=0,
    )
    assert pair.pk

    everything = from_the_api(
        api, project, researcher, django_capture_on_commit_callbacks, format="raw", test_ratio=0
    )
    narrow = from_the_api(
        api,
        project,
        researcher,
        django_capture_on_commit_callbacks,
        format="raw",
        test_ratio=0,
        filters={"stage": 1, "settled_only": True, "include_gold": False},
    )

    # Raw rows are workers' own labels: gold items' labels are kept unless left out on purpose.
    assert everything.filters["include_gold"] is True
    assert everything.row_counts["sources"]["train"] == {"ordinary_items": 13, "gold_items": 3}
    assert everything.row_counts["excluded"] == {}
    assert narrow.row_counts["sources"]["train"] == {"ordinary_items": 9, "gold_items": 0}
    assert narrow.row_counts["excluded"] == {"other_stage": 3, "not_settled": 1, "gold_not_included": 3}
    assert [label for _, label, _ in exclusions(narrow.row_counts, narrow.filters, "raw")] == [
        "given on a gold item (gold not included)",
        "labels of the other stage",
        "on items not settled yet",
    ]
    card = snapshot_file(everything, "README.md").decode()
    assert "| labels on gold items | `gold_items` | 3 | 3 |" in card
    assert "**Labels given on gold items: included** (3; `is_gold` marks them)" in card
    assert "## Excluded labels" in card and "No labels were left out." in card
    assert (
        "**Labels given on gold items: not included** (3 left out)"
        in snapshot_file(narrow, "README.md").decode()
    )


def test_the_card_has_the_label_sources_the_exclusions_and_the_gold_choice(
    client, project, researcher, mixed, django_capture_on_commit_callbacks
):
    default = from_the_page(client, project, researcher, django_capture_on_commit_callbacks)
    with_gold = from_the_page(
        client, project, researcher, django_capture_on_commit_callbacks, include_gold="on"
    )

    card = snapshot_file(default, "README.md").decode()
    assert "## Label sources" in card and "## Excluded rows" in card
    assert "| worker consensus | `workers` | 2 | 2 |" in card
    assert "| adjudicated | `adjudication` | 1 | 1 |" in card
    assert "| expert (gold) | `gold` | 0 | 0 |" in card
    assert "| only an expert label (gold not included) | `gold_not_included` | 1 |" in card
    assert "| not settled yet | `no_consensus` | 1 |" in card
    assert "**Expert (gold) labels: not included** (the default)" in card
    assert "left out (1 row)" in card and "without holding the answer key" in card

    gold_card = snapshot_file(with_gold, "README.md").decode()
    assert "| expert (gold) | `gold` | 1 | 1 |" in gold_card
    assert (
        "**Expert (gold) labels: included.**" in gold_card
        and "do not use this dataset to measure workers" in gold_card
    )
    assert "gold_not_included" not in gold_card.split("## Excluded rows")[1].split("## Distribution")[0]


def test_the_page_shows_the_sources_and_the_exclusions(
    client, project, researcher, mixed, django_capture_on_commit_callbacks
):
    # Workers who split two to one settle an item, but below 0.8 (as does the adjudicated item's 1 of 3).
    settled_qa(project, ["self_harm"], labels=[["self_harm"], ["self_harm"], []])
    snapshot = from_the_page(
        client, project, researcher, django_capture_on_commit_callbacks, min_agreement="0.8"
    )

    html = client.get(reverse("frontend:snapshots", args=[project.slug])).content.decode()
    row = html.split(f'id="snapshot-{snapshot.pk}"')[1].split("</tr>")[0]
    assert '<span class="muted">Sources:</span> <span class="nowrap">2 worker consensus ·</span> ' in row
    assert '<span class="nowrap">0 adjudicated ·</span> <span class="nowrap">0 expert (gold)</span>' in row
    assert '<span class="muted">Excluded:</span> ' in row
    assert '<span title="below_min_agreement">2 below agreement 0.8</span>' in row
    assert '<span title="gold_not_included">1 only an expert label (gold not included)</span>' in row
    assert '<span title="no_consensus">1 not settled yet</span>' in row
    # The form asks for gold explicitly: unticked, with the reason.
    field = html.split('name="include_gold"')[1].split(">")[0]
    assert "checked" not in field
    assert "a dataset that measures workers must not hold the expert answers they are scored against" in html


def test_a_snapshot_built_before_sources_per_split_still_reads(project, researcher, client):
    old = Snapshot.objects.create(
        project=project,
        format="beavertails",
        status=SnapshotStatus.SUCCEEDED,
        filters={"settled_only": True, "include_gold": True},
        row_counts={
            "train": 5,
            "test": 0,
            "total": 5,
            "excluded": {"no_consensus": 2},
            "consensus_sources": {"gold": 1, "workers": 4},
        },
    )
    assert source_totals(old.row_counts) == [
        ("workers", "worker consensus", 4),
        ("adjudication", "adjudicated", 0),
        ("gold", "expert (gold)", 1),
    ]
    client.force_login(researcher)
    html = client.get(reverse("frontend:snapshots", args=[project.slug])).content.decode()
    assert '<span class="nowrap">4 worker consensus ·</span>' in html and "2 not settled yet" in html
