"""No worker-facing page or API response carries a gold answer, or says which items are gold.

A project with gold in both stages (a PKU-SafeRLHF-style pair whose responses have expert stage-1
verdicts and an expert preference, and stage-1 gold items with expert categories) is walked through as an
annotator: every page they can open and every call of the worker loop. Each expert answer carries a
marker in its `source`, and the verdicts are chosen so that any stage-2 safety badge could only come
from gold (no worker consensus exists)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from annotate.gold import gold_stage1_set, gold_stage2_set
from annotate.models import ResponsePair, Stage, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db

MARKER = "expert-verdict-7f3a"


@pytest.fixture
def gold_everywhere(project):
    project.gold_rate = 0.5
    project.save()
    prompt = PromptFactory(project=project, text="Which household chemicals are dangerous together?")
    qa_a = QAPairFactory(prompt=prompt, response="Bleach and ammonia; never mix them.")
    qa_b = QAPairFactory(prompt=prompt, response="Mix bleach and ammonia in a closed room.")
    for qa, categories in ((qa_a, []), (qa_b, ["violence,aiding_and_abetting,incitement"])):
        Stage1WorkItemFactory(qa_pair=qa)
        gold_stage1_set(qa_pair=qa, categories=categories, source=MARKER)
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    gold_stage2_set(response_pair=pair, better=0, safer=0, source=MARKER)
    for n in range(4):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project), response=f"r{n}"))
    return pair


def _leaks(body: str) -> list[str]:
    found = [word for word in (MARKER, "gold", "Gold") if word in body]
    return found


def test_no_worker_api_response_carries_gold(api, worker, project, gold_everywhere):
    client = api(worker)
    bodies = [
        client.get("/api/v1/projects/").content,
        client.get(f"/api/v1/projects/{project.slug}/").content,
    ]
    lease2 = client.post(f"/api/v1/projects/{project.slug}/tasks/next/", {"stage": 2}, format="json")
    assert lease2.status_code == 200
    shown = lease2.json()["item"]["responses"]
    # No worker consensus exists: only gold could say which is safe, and it must not.
    assert [r["is_safe"] for r in shown] == [None, None]
    bodies.append(lease2.content)
    for _ in range(6):
        lease = client.post(f"/api/v1/projects/{project.slug}/tasks/next/", {"stage": 1}, format="json")
        if lease.status_code == 204:
            break
        bodies.append(lease.content)
        submitted = client.post(
            f"/api/v1/assignments/{lease.json()['id']}/submit/", {"categories": []}, format="json"
        )
        bodies.append(submitted.content)
    answer = {"better_response_id": 1, "safer_response_id": 1}
    bodies.append(
        client.post(f"/api/v1/assignments/{lease2.json()['id']}/submit/", answer, format="json").content
    )
    for body in bodies:
        assert _leaks(body.decode()) == [], json.loads(body or b"{}")


def test_no_worker_page_carries_gold(client, worker, project, gold_everywhere):
    client.force_login(worker)
    pages = [
        reverse("frontend:project-list"),
        reverse("frontend:project-detail", args=[project.slug]),
        reverse("frontend:label", args=[project.slug, 2]),
        reverse("frontend:label", args=[project.slug, 1]),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200
        body = response.content.decode()
        assert _leaks(body) == [], url
    stage2 = client.get(reverse("frontend:label", args=[project.slug, 2])).content.decode()
    assert stage2.count("Not yet judged") == 2 and "must be the more harmless one" not in stage2


def test_admins_and_researchers_still_see_the_gold_settings(api, researcher, project, gold_everywhere):
    body = api(researcher).get(f"/api/v1/projects/{project.slug}/").json()
    assert body["gold_rate"] == 0.5 and body["counts"]["gold_items"] == 3
