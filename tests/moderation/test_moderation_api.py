"""POST /api/v1/moderation/: the answer's shape, batches, bad input, no model, who may call, the rate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

from annotate.categories import CATEGORY_KEYS
from annotate.models import Role
from tests.factories import MembershipFactory, ProjectFactory, annotator
from tests.moderation.conftest import register_moderation_model
from tests.training.helpers import MODERATION_WORDS
from training.services import model_activate

pytestmark = pytest.mark.django_db

URL = "/api/v1/moderation/"
UNSAFE = {"prompt": "what should I do?", "response": f"the {MODERATION_WORDS[9]} of it"}  # privacy
SAFE = {"prompt": "what should I do?", "response": "the of and a to it"}


@pytest.fixture(autouse=True)
def _fresh_rate_limit():
    cache.clear()  # the per-token call counts live in the shared cache
    yield
    cache.clear()


@pytest.fixture
def active(project, moderation_model_dir, admin_user):
    model = register_moderation_model(project, moderation_model_dir)
    model_activate(model=model, project=project, actor=admin_user)
    return model


def _post(client, body):
    return client.post(URL, body, format="json")


def test_one_pair_gets_the_hosted_moderation_shape(api, researcher, project, active):
    response = _post(api(researcher), {**UNSAFE, "project": project.slug})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["model"]["id"] == active.pk and body["model"]["kind"] == "moderation"
    assert body["model"]["project"] == project.slug and body["model"]["thresholds"] == "tuned"
    assert body["model"]["precision"] == "int8"  # served quantized on a CPU (MODERATION_CPU_INT8)
    (result,) = body["results"]
    assert list(result["categories"]) == list(CATEGORY_KEYS)
    assert list(result["category_scores"]) == list(CATEGORY_KEYS)
    assert all(0.0 <= v <= 1.0 for v in result["category_scores"].values())
    assert result["flagged"] is True and result["categories"]["privacy_violation"] is True


def test_a_batch_keeps_its_order(api, researcher, project, active):
    items = [SAFE, UNSAFE, SAFE]
    body = _post(api(researcher), {"items": items, "project": project.slug}).json()
    assert [r["flagged"] for r in body["results"]] == [False, True, False]
    single = _post(api(researcher), {**UNSAFE, "project": project.slug}).json()["results"][0]
    # int8 serving scales each batch's activations together, so a pair's scores move a little with the
    # company it is scored in (float32 would agree to 1e-6).
    assert body["results"][1]["category_scores"] == pytest.approx(single["category_scores"], abs=0.01)


def test_the_plain_default_thresholds_are_available(api, researcher, project, active):
    body = _post(api(researcher), {**SAFE, "project": project.slug, "thresholds": "default"}).json()
    assert body["model"]["thresholds"] == "default"
    scores, decided = body["results"][0]["category_scores"], body["results"][0]["categories"]
    assert all(decided[k] == (scores[k] >= 0.5) for k in CATEGORY_KEYS)


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({"prompt": "q"}, "response", "required"),
        ({"response": "a"}, "prompt", "required"),
        ({"prompt": 3, "response": "a"}, "prompt", "Must be a string."),
        ({"prompt": "q", "response": True}, "response", "Must be a string."),
        ({"items": [{"prompt": "q", "response": ["a"]}]}, "items", "Must be a string."),
        ({"items": []}, "items", "at least one pair"),
        ({"items": [SAFE] * 65}, "items", "At most 64 pairs per call; got 65."),
        ({"prompt": "q" * 20_001, "response": "a"}, "prompt", "no more than 20000 characters"),
        ({}, "non_field_errors", "Send a pair (prompt, response) or a batch (items)."),
        ({**SAFE, "items": [SAFE]}, "non_field_errors", "not both"),
        ({**SAFE, "thresholds": "strict"}, "thresholds", "not a valid choice"),
    ],
)
def test_bad_input_is_a_clear_400(api, researcher, project, active, body, field, needle):
    response = _post(api(researcher), {**body, "project": project.slug})
    assert response.status_code == 400
    assert needle in str(response.json()[field]), response.json()


def test_without_an_active_model_it_is_a_503_saying_why(api, researcher, project):
    response = _post(api(researcher), {**SAFE, "project": project.slug})
    assert response.status_code == 503
    assert (
        "No moderation model is active for project demo-project or the platform" in response.json()["detail"]
    )


def test_a_model_whose_files_are_gone_is_a_503(api, researcher, project, admin_user, tmp_path):
    model = register_moderation_model(project, tmp_path / "gone" / "model")
    model_activate(model=model, project=project, actor=admin_user)
    response = _post(api(researcher), {**SAFE, "project": project.slug})
    assert response.status_code == 503 and "cannot be loaded" in response.json()["detail"]


def test_a_project_without_its_own_model_uses_the_platforms(api, moderation_model_dir, admin_user):
    other = ProjectFactory(slug="other")
    home = ProjectFactory(slug="home")
    model = register_moderation_model(home, moderation_model_dir)
    model_activate(model=model, project=None, actor=admin_user)
    researcher = annotator(other, "other_researcher", role=Role.RESEARCHER)
    body = _post(api(researcher), {**UNSAFE, "project": "other"}).json()
    assert body["model"]["id"] == model.pk
    # Without a project: the platform's model, for a researcher of some project.
    assert _post(api(researcher), UNSAFE).json()["model"]["id"] == model.pk


def test_it_requires_a_researcher_or_admin_unless_the_project_lets_annotators(
    api, project, active, worker, admin_user, outsider
):
    body = {**SAFE, "project": project.slug}
    assert _post(api(admin_user), body).status_code == 200
    refused = _post(api(worker), body)
    assert refused.status_code == 403 and "annotator" in refused.json()["detail"]
    assert _post(api(worker), SAFE).status_code == 403  # the platform's model: not for annotators either
    project.annotators_may_moderate = True
    project.save()
    assert _post(api(worker), body).status_code == 200
    assert _post(api(outsider), body).status_code == 404
    assert _post(api(), body).status_code == 401


def test_calls_are_limited_per_token(api, researcher, project, active, settings):
    settings.MODERATION_RATE = "2/min"
    client = api(researcher)
    body = {**SAFE, "project": project.slug}
    assert [_post(client, body).status_code for _ in range(3)] == [200, 200, 429]
    other = MembershipFactory(project=project, role=Role.RESEARCHER).user
    assert _post(api(other), body).status_code == 200  # another token has its own allowance


def test_the_model_loads_once_per_process(api, researcher, project, active, monkeypatch):
    from moderation import services
    from training.trainers import moderation as trainer_module

    services._loaded.clear()
    loads = []
    real = trainer_module.ModerationScorer

    def counting(*args, **kwargs):
        loads.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "ModerationScorer", counting)
    client = api(researcher)
    for _ in range(3):
        assert _post(client, {**SAFE, "project": project.slug}).status_code == 200
    assert len(loads) == 1


def test_the_web_app_never_imports_torch():
    """Moderation loads torch on its first call, in the process that serves it: the annotation loop's
    processes (every web worker) import none of it."""
    code = (
        "import sys, django; django.setup(); "
        "from django.urls import resolve; import config.urls, config.wsgi; resolve('/api/v1/moderation/'); "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
        env={"DJANGO_SETTINGS_MODULE": "config.settings", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "False"]
