"""Each user sees, rotates and revokes their own API token: on the profile page and over the API."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import AuditAction, AuditEvent

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
