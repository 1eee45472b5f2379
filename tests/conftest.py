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


@pytest.fixture
def sent(monkeypatch):
    """The training job ids handed to the GPU task (instead of a broker)."""
    from training.tasks import run_job

    ids: list[int] = []
    monkeypatch.setattr(run_job, "delay", lambda job_id: ids.append(job_id))
    return ids


@pytest.fixture(scope="session")
def moderation_model_dir(tmp_path_factory):
    """A small QA-moderation model, trained once per session on the keyword task of
    tests/training/helpers.py: a real model folder (weights, tokenizer, moderation.json)."""
    import torch

    from tests.training.helpers import MODERATION_WORDS, build_tiny_bert, moderation_rows, write_jsonl
    from training.trainers.config import ModerationConfig
    from training.trainers.moderation import train_moderation

    root = tmp_path_factory.mktemp("moderation-model")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = ModerationConfig.from_dict(
            {
                "kind": "moderation",
                "base_model": str(
                    build_tiny_bert(root / "bert", hidden_size=64, extra_words=MODERATION_WORDS)
                ),
                "output_dir": str(root / "job"),
                "max_length": 64,
                "epochs": 20,
                "per_device_batch_size": 16,
                "learning_rate": 2e-3,
                "warmup_ratio": 0.0,
                "weight_decay": 0.0,
                "logging_steps": 100,
                "save_steps": 100000,
            }
        )
        result = train_moderation(
            config,
            train_files=[write_jsonl(moderation_rows(1000, seed=21), root / "train.jsonl")],
            test_files=[write_jsonl(moderation_rows(200, seed=22), root / "test.jsonl")],
        )
    finally:
        torch.set_num_threads(threads)
    from pathlib import Path

    return Path(result.artifact_path)
