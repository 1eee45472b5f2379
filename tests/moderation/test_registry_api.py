"""GET /api/v1/models/ and POST /api/v1/models/{id}/activate/: the registry and its active models."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth.models import User

from annotate.models import AuditAction, AuditEvent, Role
from tests.factories import ProjectFactory, annotator
from tests.moderation.conftest import register_moderation_model
from training.models import JobKind, ModelActivation, RegisteredModel
from training.selectors import active_model

pytestmark = pytest.mark.django_db

FOLDER = Path("/jobs/1/model")


def _activate(client, model, **body):
    return client.post(f"/api/v1/models/{model.pk}/activate/", body, format="json")


def test_the_registry_lists_a_researchers_models_with_where_they_are_active(api, researcher, project):
    mine = register_moderation_model(project, FOLDER)
    other_project = ProjectFactory(slug="elsewhere")
    hidden = register_moderation_model(other_project, FOLDER)
    assert _activate(api(researcher), mine).status_code == 200
    body = api(researcher).get("/api/v1/models/?kind=moderation").json()
    assert [m["id"] for m in body] == [mine.pk]
    (listed,) = body
    assert listed["kind"] == "moderation" and listed["project"] == project.slug
    assert listed["active"] == [project.slug] and listed["metrics"]["flagged_f1"] == 0.97
    assert hidden.pk not in [m["id"] for m in api(researcher).get("/api/v1/models/").json()]


def test_activating_replaces_the_projects_model_and_is_audited(api, admin_user, project):
    first = register_moderation_model(project, FOLDER)
    second = register_moderation_model(project, FOLDER)
    assert _activate(api(admin_user), first).status_code == 200
    assert _activate(api(admin_user), second).json()["active"] == [project.slug]
    assert active_model(JobKind.MODERATION, project) == second
    assert ModelActivation.objects.filter(project=project).count() == 1
    events = AuditEvent.objects.filter(action=AuditAction.MODEL_ACTIVATE).order_by("at", "id")
    assert [(e.old, e.new, e.actor) for e in events] == [
        ({"model": None}, {"model": first.pk}, admin_user),
        ({"model": first.pk}, {"model": second.pk}, admin_user),
    ]


def test_only_a_superuser_sets_the_platforms_model(api, researcher, project):
    model = register_moderation_model(project, FOLDER)
    refused = _activate(api(researcher), model, platform=True)
    assert refused.status_code == 403
    root = User.objects.create_superuser("root", "root@example.org", "Root-pass-123")
    assert _activate(api(root), model, platform=True).json()["active"] == ["platform"]
    assert active_model(JobKind.MODERATION, ProjectFactory()) == model


def test_a_model_is_activated_only_where_the_caller_is_researcher_or_admin(api, researcher, project):
    model = register_moderation_model(project, FOLDER)
    elsewhere = ProjectFactory(slug="elsewhere")
    assert _activate(api(researcher), model, project="elsewhere").status_code == 404
    annotator(elsewhere, "researcher", role=Role.ANNOTATOR)
    assert _activate(api(researcher), model, project="elsewhere").status_code == 403
    assert not ModelActivation.objects.exists()


def test_it_requires_researcher_or_admin(api, project, worker, outsider):
    model = register_moderation_model(project, FOLDER)
    assert _activate(api(worker), model).status_code == 403
    assert _activate(api(outsider), model).status_code == 404
    assert _activate(api(), model).status_code == 401
    assert api(worker).get("/api/v1/models/").json() == []


def test_reward_and_cost_models_are_not_activated(api, researcher, project):
    model = register_moderation_model(project, FOLDER)
    RegisteredModel.objects.filter(pk=model.pk).update(kind=JobKind.REWARD)
    response = _activate(api(researcher), model)
    assert response.status_code == 400 and "Only moderation models are activated" in str(response.json())
