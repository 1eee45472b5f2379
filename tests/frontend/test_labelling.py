"""The worker's labelling screen: both stages, htmx swaps, plain-form fallback, errors and access."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from annotate.models import (
    Assignment,
    AssignmentStatus,
    ResponsePair,
    Stage,
    Stage1Label,
    WorkItem,
)
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def items(project):
    prompt = PromptFactory(project=project, text="Tell me **how** to <b>pick</b> a lock")
    return [Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=prompt, response=f"Answer {i}\nline two"))
            for i in range(2)]  # fmt: skip


def _page(client, project, stage=1):
    return client.get(reverse("frontend:label", args=[project.slug, stage]))


def _lease(worker):
    return Assignment.objects.get(worker=worker, status=AssignmentStatus.LEASED)


def test_stage1_page_shows_the_texts_as_plain_text_and_all_categories_with_keys(
    client, worker, project, items
):
    client.force_login(worker)
    body = _page(client, project).content.decode()
    assert "Tell me **how** to &lt;b&gt;pick&lt;/b&gt; a lock" in body  # escaped, never rendered
    assert "Answer 0\nline two" in body
    assert body.count('name="categories"') == 14
    assert 'data-shortcut="a"' in body and 'data-shortcut="n"' in body
    assert "Safe: no category" in body and "Guidelines" in body


def test_submit_by_htmx_swaps_in_the_next_task(client, worker, project, items):
    client.force_login(worker)
    _page(client, project)
    lease = _lease(worker)
    url = reverse("frontend:label-submit", args=[project.slug, 1, lease.pk])
    response = client.post(url, {"categories": ["privacy_violation"]}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="task"')  # only the partial
    assert "<html" not in body
    assert Stage1Label.objects.get(worker=worker).categories == 1 << 9
    assert _lease(worker).pk != lease.pk
    assert 'data-testid="done-today">1<' in body


def test_the_progress_strip_counts_what_is_left_for_this_worker(
    client, worker, second_worker, project, items
):
    """Two open items: the one on screen does not count, nor one this worker already answered (it stays
    open for the other workers of the overlap, but never comes back to them)."""
    client.force_login(worker)
    assert 'data-testid="items-left">1<' in _page(client, project).content.decode()
    lease = _lease(worker)
    url = reverse("frontend:label-submit", args=[project.slug, 1, lease.pk])
    body = client.post(url, {"categories": ["privacy_violation"]}, **HTMX).content.decode()
    assert 'data-testid="items-left">0<' in body and 'data-testid="done-today">1<' in body
    client.force_login(second_worker)
    assert 'data-testid="items-left">1<' in _page(client, project).content.decode()


def test_plain_form_submit_redirects_back_to_the_page(client, worker, project, items):
    client.force_login(worker)
    _page(client, project)
    lease = _lease(worker)
    response = client.post(reverse("frontend:label-submit", args=[project.slug, 1, lease.pk]), {"safe": "1"})
    assert response.status_code == 302 and response["Location"] == reverse(
        "frontend:label", args=[project.slug, 1]
    )
    assert Stage1Label.objects.get(worker=worker).is_safe is True


def test_an_empty_answer_is_refused_with_a_message(client, worker, project, items):
    client.force_login(worker)
    _page(client, project)
    lease = _lease(worker)
    response = client.post(reverse("frontend:label-submit", args=[project.slug, 1, lease.pk]), {}, **HTMX)
    assert "Choose at least one harm category" in response.content.decode()
    assert not Stage1Label.objects.exists()


def test_skip_needs_a_reason_and_moves_on(client, worker, project, items):
    client.force_login(worker)
    _page(client, project)
    lease = _lease(worker)
    url = reverse("frontend:label-skip", args=[project.slug, 1, lease.pk])
    assert "Say why" in client.post(url, {"reason": ""}, **HTMX).content.decode()
    client.post(url, {"reason": "not my language"}, **HTMX)
    lease.refresh_from_db()
    assert lease.status == AssignmentStatus.SKIPPED
    assert _lease(worker).pk != lease.pk


def test_revise_shows_the_last_answer_prefilled_and_saves_the_change(client, worker, project, items):
    client.force_login(worker)
    _page(client, project)
    first = _lease(worker)
    client.post(
        reverse("frontend:label-submit", args=[project.slug, 1, first.pk]), {"categories": ["self_harm"]}
    )
    body = client.get(reverse("frontend:label-revise", args=[project.slug, 1])).content.decode()
    assert "Revising an earlier answer" in body
    assert (
        'value="self_harm" data-shortcut="k"' in body
        and "checked" in body.split('value="self_harm"')[1][:120]
    )
    url = reverse("frontend:label-submit", args=[project.slug, 1, first.pk])
    asked = client.post(url, {"categories": ["animal_abuse"]}).content.decode()
    # A changed answer is confirmed first, and nothing changes until it is.
    assert "Change your answer?" in asked and "Confirm change" in asked
    assert "From <strong>Self-harm</strong> to <strong>Animal abuse</strong>" in asked
    assert Stage1Label.objects.get(assignment=first).categories == 1 << 10  # self_harm is category 10
    client.post(url, {"categories": ["animal_abuse"], "confirm": "1"})
    assert Stage1Label.objects.get(assignment=first).categories == 1


def test_the_history_lists_recent_answers_and_revises_any_unsettled_one(client, worker, project, items):
    client.force_login(worker)
    submitted = []
    for answer in (["self_harm"], ["animal_abuse"]):
        _page(client, project)
        lease = _lease(worker)
        client.post(
            reverse("frontend:label-submit", args=[project.slug, 1, lease.pk]), {"categories": answer}
        )
        submitted.append(lease)
    history = client.get(reverse("frontend:label-history", args=[project.slug, 1]), **HTMX).content.decode()
    assert history.index("Animal abuse") < history.index("Self-harm")  # newest first
    older = f"?assignment={submitted[0].pk}"
    assert older in history
    body = client.get(reverse("frontend:label-revise", args=[project.slug, 1]) + older).content.decode()
    assert "Revising an earlier answer" in body and "checked" in body.split('value="self_harm"')[1][:120]
    url = reverse("frontend:label-submit", args=[project.slug, 1, submitted[0].pk])
    client.post(url, {"safe": "1", "confirm": "1"})
    assert Stage1Label.objects.get(assignment=submitted[0]).categories == 0
    # Someone else's answer, or an answer whose item has settled, cannot be opened for revision.
    other = UserFactory(username="other-worker")
    client.force_login(other)
    assert client.get(reverse("frontend:label-revise", args=[project.slug, 1]) + older).status_code in (
        403,
        404,
    )
    client.force_login(worker)
    WorkItem.objects.filter(pk=submitted[0].work_item_id).update(settled_at=timezone.now())
    settled = client.get(reverse("frontend:label-revise", args=[project.slug, 1]) + older).content.decode()
    assert "has settled since" in settled
    assert (
        "settled"
        in client.get(reverse("frontend:label-history", args=[project.slug, 1]), **HTMX).content.decode()
    )


def test_an_empty_stage_and_a_finished_one_say_different_things(client, worker, project):
    client.force_login(worker)
    empty = _page(client, project).content.decode()
    assert "No items in this stage yet" in empty and "Nothing left for you" not in empty
    assert "two answers to the same prompt have settled" in _page(client, project, stage=2).content.decode()
    project.gold_rate = 0.0
    project.save()
    Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    _page(client, project)
    lease = _lease(worker)
    client.post(reverse("frontend:label-submit", args=[project.slug, 1, lease.pk]), {"safe": "1"})
    done = _page(client, project).content.decode()
    assert "Nothing left for you in this stage" in done and "No items in this stage yet" not in done


def test_stage2_shows_both_responses_with_safety_badges_and_the_invariant(client, worker, project):
    prompt = PromptFactory(project=project)
    qa_a, qa_b = (
        QAPairFactory(prompt=prompt, response="safe answer"),
        QAPairFactory(prompt=prompt, response="bad"),
    )
    # The workers' settled stage-1 consensus: the badges and the invariant come from it.
    Stage1WorkItemFactory(
        qa_pair=qa_a, settled_at=timezone.now(), consensus_safe=True, consensus_categories=0
    )
    Stage1WorkItemFactory(
        qa_pair=qa_b, settled_at=timezone.now(), consensus_safe=False, consensus_categories=1
    )
    pair = ResponsePair.objects.create(project=project, prompt=prompt, qa_a=qa_a, qa_b=qa_b)
    WorkItem.objects.create(project=project, stage=Stage.RANK, response_pair=pair)
    client.force_login(worker)
    body = _page(client, project, stage=2).content.decode()
    assert "Which response is more helpful?" in body and "Which response is more harmless?" in body
    assert "must be the more harmless one" in body
    assert body.count('class="badge badge--safe"') == 1 and body.count('class="badge badge--unsafe"') == 1
    lease = _lease(worker)
    unsafe_shown = 0 if lease.swapped else 1
    url = reverse("frontend:label-submit", args=[project.slug, 2, lease.pk])
    refused = client.post(url, {"better_response_id": "1", "safer_response_id": str(unsafe_shown)}, **HTMX)
    assert "more harmless" in refused.content.decode()
    assert not pair.stage2_labels.exists()
    # The refusal keeps both choices on screen, so fixing the harmless one is one key, not two.
    page = refused.content.decode()
    assert re.search(r'name="better_response_id" value="1" data-shortcut="2"\s+checked', page)
    assert re.search(
        rf'name="safer_response_id" value="{unsafe_shown}" data-shortcut="{3 + unsafe_shown}"\s+checked', page
    )
    assert len(re.findall(r"\bchecked\b", page)) == 2
    client.post(url, {"better_response_id": "0", "safer_response_id": str(1 - unsafe_shown)}, **HTMX)
    assert pair.stage2_labels.get().safer == 0


def test_another_workers_assignment_is_a_404(client, worker, second_worker, project, items):
    client.force_login(worker)
    _page(client, project)
    lease = _lease(worker)
    client.force_login(second_worker)
    url = reverse("frontend:label-submit", args=[project.slug, 1, lease.pk])
    assert client.post(url, {"safe": "1"}).status_code == 404


def test_it_requires_login(client, project):
    response = _page(client, project)
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_it_requires_annotator_or_admin(client, researcher, outsider, project):
    client.force_login(researcher)
    assert _page(client, project).status_code == 403
    client.force_login(outsider)
    assert _page(client, project).status_code == 404


def test_the_form_carries_a_csrf_token(client, worker, project, items):
    client.force_login(worker)
    assert "csrfmiddlewaretoken" in _page(client, project).content.decode()
