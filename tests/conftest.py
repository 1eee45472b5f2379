"""Shared fixtures: the named personas every permission test uses, and API clients for them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotate.models import Role
from tests.factories import MembershipFactory, ProjectFactory, UserFactory


@pytest.fixture
def project(db):
    return ProjectFactory(slug="demo-project", name="Demo project")


def _member(project, username: str, role: str):
    user = UserFactory(username=username)
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    MembershipFactory(project=project, user=user, role=role)
    return user


@pytest.fixture
def worker(project):
    return _member(project, "worker", Role.ANNOTATOR)


@pytest.fixture
def second_worker(project):
    return _member(project, "second_worker", Role.ANNOTATOR)


@pytest.fixture
def admin_user(project):
    return _member(project, "admin", Role.ADMIN)


@pytest.fixture
def researcher(project):
    return _member(project, "researcher", Role.RESEARCHER)


@pytest.fixture
def outsider(db):
    """A signed-in user who belongs to no project."""
    return UserFactory(username="outsider")


@pytest.fixture
def api():
    """An API client factory: api(user) authenticates with that user's token; api() is anonymous."""

    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make
