"""Each user sees, rotates and revokes their own API token: on the profile page and over the API."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import AuditAction, AuditEvent
from annotate.tokens import token_rotate
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
PROJECTS = "/api/v1/projects/"


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_the_page_shows_the_token_masked_with_the_projects(client, worker, project):
    key = Token.objects.create(user=worker).key
    client.force_login(worker)
    page = client.get("/profile/").content.decode()
    masked = page.split('data-testid="token-masked">')[1].split("<")[0]
    assert masked.endswith(key[-4:]) and key not in masked
    assert page.count(key) == 1  # only inside the "Show" reveal
    reveal = page.split("<summary>Show</summary>")[1].split("</details>")[0]
    assert key in reveal and 'data-testid="token-key"' in reveal
    assert "Demo project" in page and "Annotator" in page
    assert "Authorization: Token" in page


def test_rotating_on_the_page_needs_a_confirmation_and_kills_the_old_key(client, worker, project):
    old = Token.objects.create(user=worker).key
    client.force_login(worker)
    refused = client.post("/profile/token/", {"action": "rotate"}, follow=True).content.decode()
    assert "Tick the confirmation" in refused and Token.objects.get(user=worker).key == old
    done = client.post(
        "/profile/token/", {"action": "rotate", "confirm": "yes"}, follow=True
    ).content.decode()
    new = Token.objects.get(user=worker).key
    assert new != old and "the old one no longer works" in done and new[-4:] in done
    assert with_key(old).get(PROJECTS).status_code == 401
    assert with_key(new).get(PROJECTS).status_code == 200
    event = AuditEvent.objects.get(action=AuditAction.TOKEN_ROTATE)
    assert event.actor == worker and event.old == {"last4": old[-4:]} and event.new == {"last4": new[-4:]}


def test_revoking_on_the_page_refuses_the_key_and_a_new_one_can_be_created(client, worker, project):
    key = Token.objects.create(user=worker).key
    client.force_login(worker)
    client.post("/profile/token/", {"action": "revoke", "confirm": "yes"})
    assert not Token.objects.filter(user=worker).exists()
    assert with_key(key).get(PROJECTS).status_code == 401
    page = client.get("/profile/").content.decode()
    assert 'data-testid="no-token"' in page and "Create a token" in page
    client.post("/profile/token/", {"action": "rotate", "confirm": "yes"})
    assert with_key(Token.objects.get(user=worker).key).get(PROJECTS).status_code == 200


def test_the_page_and_its_form_need_a_session_and_csrf(worker, project):
    anonymous = Client()
    assert anonymous.get("/profile/").status_code == 302
    assert anonymous.post("/profile/token/", {"action": "revoke", "confirm": "yes"}).status_code == 302
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(worker)
    Token.objects.create(user=worker)
    assert strict.post("/profile/token/", {"action": "revoke", "confirm": "yes"}).status_code == 403
    assert Token.objects.filter(user=worker).exists()


def test_the_api_reads_rotates_and_revokes_only_the_callers_token(api, worker, second_worker, project):
    theirs = Token.objects.create(user=second_worker).key
    mine = api(worker)
    me = mine.get("/api/v1/me/").json()
    key = Token.objects.get(user=worker).key
    assert me["username"] == "worker" and me["memberships"] == [
        {"project": "demo-project", "role": "annotator", "paused": False}
    ]
    assert me["token"]["exists"] and me["token"]["last4"] == key[-4:] and key not in str(me)
    rotated = mine.post("/api/v1/me/token/")
    assert rotated.status_code == 201
    new = rotated.json()["token"]
    assert new != key and mine.get("/api/v1/me/").status_code == 401  # the client still sends the old key
    assert with_key(new).delete("/api/v1/me/token/").status_code == 204
    assert with_key(new).get("/api/v1/me/").status_code == 401
    # The other worker's token was never touched.
    assert Token.objects.get(user=second_worker).key == theirs
    assert api().get("/api/v1/me/").status_code == 401
    assert api().post("/api/v1/me/token/").status_code == 401


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("has_token", [False, True])
def test_rotating_twice_at_once_leaves_one_working_key(has_token):
    """A double-clicked "Rotate" (or two scripts) must not fail on the one-token-per-user constraint."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks under test are PostgreSQL's")
    user = UserFactory(username="rotator")
    if has_token:
        Token.objects.create(user=user)
    start = threading.Barrier(2)
    keys: list[str] = []
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            start.wait(timeout=30)
            keys.append(token_rotate(user=user))
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(keys) == 2
    assert list(Token.objects.filter(user=user).values_list("key", flat=True)) in ([keys[0]], [keys[1]])
    assert AuditEvent.objects.filter(action=AuditAction.TOKEN_ROTATE).count() == 2
