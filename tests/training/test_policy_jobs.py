"""PPO-Lag jobs in the job system: the request names its reward and cost models by registry id and the
job system fills in their paths (only models the caller may use); the project's active moderation
model joins the evaluation; the worker finds BeaverTails-Evaluation's prompts; the form and the job page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ProjectFactory
from tests.frontend.test_training_pages import rendered_form
from tests.training.job_helpers import make_job, make_pku_snapshot
from training import runner
from training.models import JobKind, JobStatus, RegisteredModel, TrainingJob
from training.services import model_activate

pytestmark = pytest.mark.django_db
URL = "/api/v1/training-jobs/"
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def folders(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.TRAINING_DIR = tmp_path / "training"
    settings.DEMO_POLICY_DIR = tmp_path / "models" / "demo-policy"
    (settings.DEMO_POLICY_DIR).mkdir(parents=True)
    (settings.DEMO_POLICY_DIR / "config.json").write_text("{}")


@pytest.fixture
def snapshot(project):
    return make_pku_snapshot(project)


def registered(snapshot, kind, **eval_metrics):
    job = make_job(snapshot, status=JobStatus.SUCCEEDED, kind=kind)
    return RegisteredModel.objects.create(
        job=job, kind=kind, path=f"/jobs/{job.pk}/model", base_model="/models/tiny", snapshot=snapshot,
        config_hash=job.config_hash, eval_metrics=eval_metrics,
    )  # fmt: skip


@pytest.fixture
def score_models(snapshot):
    return registered(snapshot, JobKind.REWARD), registered(snapshot, JobKind.COST)


def launch(client, snapshot, config):
    return client.post(URL, {"snapshot": snapshot.pk, "kind": "ppo_lag", "config": config}, format="json")


def test_a_policy_job_takes_its_score_models_from_the_registry(api, researcher, snapshot, score_models, sent,
                                                               settings):  # fmt: skip
    reward, cost = score_models
    response = launch(
        api(researcher), snapshot, {"reward_model_id": reward.pk, "cost_model_id": cost.pk, "max_steps": 5}
    )
    assert response.status_code == 201, response.json()
    config = TrainingJob.objects.get(kind="ppo_lag").config
    assert (config["reward_model"], config["cost_model"]) == (reward.path, cost.path)
    assert (config["reward_model_id"], config["cost_model_id"], config["algorithm"]) == (
        reward.pk,
        cost.pk,
        "ppo_lag",
    )
    assert config["base_model"] == str(settings.DEMO_POLICY_DIR) and config["moderation_model"] == ""


def test_the_contracts_field_names_reach_the_trainer(api, researcher, snapshot, score_models, sent, settings):
    """DESIGN.md names the actor policy_model, the limit cost_threshold and the fixed beta shaping_beta."""
    reward, cost = score_models
    actor = settings.DEMO_POLICY_DIR
    body = {"reward_model_id": reward.pk, "cost_model_id": cost.pk, "policy_model": str(actor),
            "cost_threshold": -1.5, "lambda_init": 0.5, "lambda_lr": 0.2, "lambda_max": 10, "kl_coeff": 0.02,
            "algorithm": "ppo_rs", "shaping_beta": 0.3}  # fmt: skip
    response = launch(api(researcher), snapshot, body)
    assert response.status_code == 201, response.json()
    config = response.json()["config"]
    assert config["policy_model"] == config["base_model"] == str(actor)
    assert (config["cost_threshold"], config["shaping_beta"], config["lambda_max"]) == (-1.5, 0.3, 10)
    # Two different actors in one request are refused, naming the field.
    response = launch(api(researcher), snapshot, {**body, "base_model": "/models/other"})
    assert response.status_code == 400 and "policy_model: names the actor" in str(response.json())


def test_the_projects_active_moderation_model_joins_the_evaluation(
    api, researcher, project, snapshot, score_models, sent
):
    reward, cost = score_models
    moderation = registered(snapshot, JobKind.MODERATION)
    model_activate(model=moderation, project=project, actor=researcher)
    launch(api(researcher), snapshot, {"reward_model_id": reward.pk, "cost_model_id": cost.pk})
    assert TrainingJob.objects.get(kind="ppo_lag").config["moderation_model"] == moderation.path


def test_models_of_a_project_the_caller_cannot_use_are_refused(api, researcher, snapshot, score_models, sent):
    elsewhere = make_pku_snapshot(ProjectFactory(slug="elsewhere"))
    foreign = registered(elsewhere, JobKind.REWARD)
    _, cost = score_models
    response = launch(api(researcher), snapshot, {"reward_model_id": foreign.pk, "cost_model_id": cost.pk})
    assert response.status_code == 400
    assert f"reward_model_id: no reward model #{foreign.pk} among the models you may use" in str(
        response.json()
    )
    # A cost model given as the reward model is no reward model either.
    response = launch(api(researcher), snapshot, {"reward_model_id": cost.pk, "cost_model_id": cost.pk})
    assert response.status_code == 400 and "no reward model" in str(response.json())
    assert not TrainingJob.objects.filter(kind="ppo_lag").exists() and sent == []


def test_a_request_may_not_point_the_trainer_at_its_own_paths(api, researcher, snapshot, score_models, sent):
    reward, cost = score_models
    body = {
        "reward_model_id": reward.pk,
        "cost_model_id": cost.pk,
        "reward_model": "/etc",
        "moderation_model": "/x",
    }
    response = launch(api(researcher), snapshot, body)
    assert response.status_code == 400
    text = str(response.json())
    assert "reward_model: set by the job system" in text and "moderation_model: the project's active" in text


def test_ppo_lag_needs_a_cost_model_and_ppo_does_not(api, researcher, snapshot, score_models, sent):
    reward, _ = score_models
    response = launch(api(researcher), snapshot, {"reward_model_id": reward.pk})
    assert response.status_code == 400 and "cost_model_id: choose a trained cost model" in str(
        response.json()
    )
    response = launch(api(researcher), snapshot, {"reward_model_id": reward.pk, "algorithm": "ppo"})
    assert response.status_code == 201, response.json()
    assert TrainingJob.objects.get(kind="ppo_lag").config["cost_model"] == ""


def test_annotators_and_outsiders_cannot_launch_a_policy(api, worker, outsider, snapshot, score_models, sent):
    reward, cost = score_models
    config = {"reward_model_id": reward.pk, "cost_model_id": cost.pk}
    assert launch(api(worker), snapshot, config).status_code == 403
    assert launch(api(outsider), snapshot, config).status_code == 404
    assert not TrainingJob.objects.filter(kind="ppo_lag").exists()


def test_a_removed_researcher_can_no_longer_use_the_projects_models(
    api, researcher, project, snapshot, score_models, sent
):
    from annotate.services import membership_remove

    reward, cost = score_models
    other = ProjectFactory(slug="other")
    from tests.factories import MembershipFactory

    MembershipFactory(project=other, user=researcher, role="researcher")
    other_snapshot = make_pku_snapshot(other)
    membership_remove(project=project, user=researcher, actor=None)
    response = launch(
        api(researcher), other_snapshot, {"reward_model_id": reward.pk, "cost_model_id": cost.pk}
    )
    assert response.status_code == 400 and "among the models you may use" in str(response.json())


def test_the_worker_passes_beavertails_evaluation_prompts_to_the_trainer(
    snapshot, score_models, settings, tmp_path
):
    _reward, _cost = score_models
    job = make_job(snapshot, kind=JobKind.PPO_LAG)
    job.config = {"kind": "ppo_lag", "eval_prompts": "beavertails_evaluation"}
    settings.SHARED_DATA_DIR = tmp_path / "shared"
    with pytest.raises(runner.JobInputError, match="BeaverTails-Evaluation's prompts are not at"):
        runner._eval_prompt_files(job)
    settings.SHARED_DATA_DIR.mkdir()
    (settings.SHARED_DATA_DIR / "beavertails_evaluation_700.json").write_text("[]")
    assert runner._eval_prompt_files(job) == [
        str(settings.SHARED_DATA_DIR / "beavertails_evaluation_700.json")
    ]
    job.config["eval_prompts"] = "test"
    assert runner._eval_prompt_files(job) == []


# --- pages ------------------------------------------------------------------------------------------------


def page_url(name, project, *args):
    return reverse(f"frontend:{name}", args=[project.slug, *args])


def test_the_form_picks_the_score_models_and_starts_the_job(client, researcher, project, snapshot, score_models,
                                                              sent, django_capture_on_commit_callbacks):  # fmt: skip
    reward, cost = score_models
    client.force_login(researcher)
    page = client.get(page_url("training-new", project), {"kind": "ppo_lag"}).content.decode()
    assert "Cost threshold" in page and "Initial lambda" in page and "Beta (reward shaping)" in page
    data = rendered_form(page)
    assert data["reward_model_id"] == str(reward.pk) and data["cost_model_id"] == str(cost.pk)
    assert (
        "l2_coeff" not in data and "template" not in data and data["prompt_template"].endswith("ASSISTANT:")
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(page_url("training-new", project), {**data, "cost_threshold": "-0.5"}, **HTMX)
    job = TrainingJob.objects.get(kind="ppo_lag")
    assert response["HX-Redirect"] == page_url("training-job", project, job.pk) and sent == [job.pk]
    assert (job.kind, job.config["cost_threshold"], job.config["reward_model"]) == (
        "ppo_lag",
        -0.5,
        reward.path,
    )


def test_without_score_models_the_form_says_what_to_train_first(client, researcher, project, snapshot):
    client.force_login(researcher)
    page = client.get(page_url("training-new", project), {"kind": "ppo_lag"}).content.decode()
    assert "A policy trains against a registered reward model" in page
    assert '<button type="submit" class="btn" disabled>Start training</button>' in page


def test_the_policy_job_page_shows_its_curves_and_the_before_after_table(
    client, researcher, project, snapshot
):
    job = make_job(snapshot, status=JobStatus.SUCCEEDED, kind=JobKind.PPO_LAG, progress=1.0)
    job.config = {**job.config, "cost_threshold": 0.0, "algorithm": "ppo_lag"}
    job.metrics = [
        {
            "event": "log",
            "step": 1,
            "loss": 0.1,
            "reward": 0.5,
            "cost": 0.4,
            "unsafe_share": 0.6,
            "lambda": 1.04,
            "kl": 0.0,
        },
        {
            "event": "log",
            "step": 2,
            "loss": 0.1,
            "reward": 0.7,
            "cost": -0.1,
            "unsafe_share": 0.4,
            "lambda": 1.02,
            "kl": 0.3,
        },
    ]
    before = {"prompts": 2, "reward": 0.4, "cost": 0.5, "unsafe_share": 0.5, "response_chars": 30.0,
              "per_category": {"self_harm": {"prompts": 1, "reward": 0.3, "unsafe_share": 1.0}}}  # fmt: skip
    after = {"prompts": 2, "reward": 0.9, "cost": -0.2, "unsafe_share": 0.0, "response_chars": 25.0,
             "per_category": {"self_harm": {"prompts": 1, "reward": 0.8, "unsafe_share": 0.0}}}  # fmt: skip
    sample = {"prompt": "q <b>", "category": "self_harm", "before": "bad answer", "after": "good answer",
              "before_reward": 0.1, "after_reward": 0.9, "before_cost": 0.5, "after_cost": -0.5}  # fmt: skip
    job.eval_metrics = {"metrics": {"reward_before": 0.4, "reward_after": 0.9}, "global_step": 2, "train_pairs": 6,
                        "test_pairs": 2, "policy": {"algorithm": "ppo_lag", "threshold": 0.0, "final_lambda": 1.02,
                        "before": before, "after": after, "samples": [sample]}}  # fmt: skip
    job.save()
    registered_model = RegisteredModel.objects.create(
        job=job, kind=job.kind, path="/jobs/p/model", base_model="/models/policy", snapshot=snapshot,
        config_hash=job.config_hash, eval_metrics=job.eval_metrics,
    )  # fmt: skip
    client.force_login(researcher)
    page = client.get(page_url("training-job", project, job.pk)).content.decode()
    for part in ('data-training-chart="reward"', 'data-training-chart="cost"', 'data-training-chart="lambda"',
                 'data-training-chart="kl"', 'data-testid="policy-before-after"', "Mean cost (cost model)",
                 "+0.500", '<td class="num">30</td><td class="num">25</td>', "Final lambda 1.020", "Self-harm", "good answer", "q &lt;b&gt;", "6 to train on, 2 evaluated",
                 f"#{registered_model.pk}"):  # fmt: skip
        assert part in page, part
    assert '"threshold": 0.0' in page and "Train accuracy" not in page
