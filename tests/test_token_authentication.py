"""API token authentication (config.authentication): DRF's answers, one prepared query on PostgreSQL."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db

URL = "/api/v1/projects/"


def _client_with(api, key):
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_valid_token_signs_its_user_in(api, worker, project):
    response = api(worker).get(URL)
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()] == [project.slug]


def test_an_unknown_token_is_a_401_with_drfs_message(api):
    response = _client_with(api, "0" * 40).get(URL)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_an_inactive_users_token_is_a_401(api, worker):
    token, _ = Token.objects.get_or_create(user=worker)
    worker.is_active = False
    worker.save()
    response = _client_with(api, token.key).get(URL)
    assert response.status_code == 401
    assert response.json()["detail"] == "User inactive or deleted."


def test_a_deleted_token_stops_working_at_once(api, worker):
    token, _ = Token.objects.get_or_create(user=worker)
    client = _client_with(api, token.key)
    assert client.get(URL).status_code == 200
    token.delete()
    assert client.get(URL).status_code == 401
