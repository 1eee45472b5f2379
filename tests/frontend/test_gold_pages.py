"""Researchers and admins mark gold items in the UI; workers cannot reach these pages."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotate.models import ResponsePair, Stage, WorkItem
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def qa(project):
    qa = QAPairFactory(
        prompt=PromptFactory(project=project, text="where can I buy a gun"), response="Try a store"
    )
    Stage1WorkItemFactory(qa_pair=qa)
    return qa


def test_researcher_marks_a_qa_pair_as_gold(client, researcher, project, qa):
    client.force_login(researcher)
    overview = client.get(reverse("frontend:gold", args=[project.slug]), {"q": "gun"})
    assert "where can I buy a gun" in overview.content.decode()
    url = reverse("frontend:gold-qa", args=[project.slug, qa.pk])
    assert client.post(url, {"categories": ["drug_abuse,weapons,banned_substance"]}).status_code == 302
    qa.refresh_from_db()
    assert qa.gold.categories == 1 << 4 and qa.gold.source == "expert:researcher"
    assert WorkItem.objects.get(qa_pair=qa).is_gold


def test_unknown_category_shows_an_error(client, admin_user, project, qa):
    client.force_login(admin_user)
    response = client.post(reverse("frontend:gold-qa", args=[project.slug, qa.pk]), {"categories": ["bogus"]})
    assert "unknown harm category" in response.content.decode()
    assert not hasattr(qa, "gold")


def test_researcher_marks_a_response_pair_as_gold(client, researcher, project):
    prompt = PromptFactory(project=project)
    pair = ResponsePair.objects.create(
        project=project, prompt=prompt, qa_a=QAPairFactory(prompt=prompt), qa_b=QAPairFactory(prompt=prompt)
    )
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    client.force_login(researcher)
    url = reverse("frontend:gold-pair", args=[project.slug, pair.pk])
    assert "Choose the more helpful" in client.post(url, {"better": "1"}).content.decode()
    client.post(url, {"better": "1", "safer": "0"})
    pair.refresh_from_db()
    assert (pair.gold.better, pair.gold.safer) == (1, 0)


def test_it_requires_researcher_or_admin(client, worker, outsider, project, qa):
    client.force_login(worker)
    assert client.get(reverse("frontend:gold", args=[project.slug])).status_code == 403
    assert client.post(reverse("frontend:gold-qa", args=[project.slug, qa.pk]), {}).status_code == 403
    client.force_login(outsider)
    assert client.get(reverse("frontend:gold", args=[project.slug])).status_code == 404


def test_a_refused_expert_preference_says_why_and_keeps_the_experts_choice(client, researcher, project):
    from annotate.gold import gold_stage1_set

    prompt = PromptFactory(project=project)
    safe, unsafe = QAPairFactory(prompt=prompt), QAPairFactory(prompt=prompt)
    gold_stage1_set(qa_pair=safe, categories=[], source="expert")
    gold_stage1_set(qa_pair=unsafe, categories=["self_harm"], source="expert")
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=safe, qa_b=unsafe)
    client.force_login(researcher)
    page = client.post(
        reverse("frontend:gold-pair", args=[project.slug, pair.pk]), {"better": "1", "safer": "1"}
    ).content.decode()
    assert "Exactly one response is safe, so it must be the more harmless one." in page
    assert 'name="safer" value="1" checked' in page and 'name="better" value="1" checked' in page
    assert page.count("badge--safe") == 1 and page.count("badge--unsafe") == 1
    assert not hasattr(ResponsePair.objects.get(pk=pair.pk), "gold")
