"""seed_demo: the demo project with both stages' work and the demo accounts; running it again changes nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count

from annotate.categories import HARM_CATEGORIES, keys_from_mask
from annotate.models import (
    AuditAction,
    AuditEvent,
    GoldStage1Label,
    GoldStage2Label,
    ImportRecord,
    Membership,
    Project,
    Prompt,
    QAPair,
    ResponsePair,
    Role,
    Stage,
    WorkItem,
)

pytestmark = pytest.mark.django_db

TABLES = (
    Project,
    Prompt,
    QAPair,
    ResponsePair,
    WorkItem,
    GoldStage1Label,
    GoldStage2Label,
    Membership,
    ImportRecord,
    AuditEvent,
)


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Five demo accounts per run; the production hasher would spend seconds here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_demo_policy(settings, tmp_path):
    # Building the demo policy takes seconds: only the test of it builds one.
    settings.DEMO_POLICY_DIR = tmp_path / "no-policy"
    settings.DEMO_POLICY_EPOCHS = 0


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def sizes() -> dict[str, int]:
    return {model.__name__: model.objects.count() for model in (*TABLES, get_user_model())}


def test_it_builds_the_demo_project_with_work_in_both_stages():
    out = seed()

    project = Project.objects.get(slug="demo")
    assert project.prompts.count() == 700 + 140 + 16
    assert project.qa_pairs.count() == 140 + 32
    # A realistic project: ordinary items with a 10% gold share, not a gold-only queue. Stage-1 gold is a
    # BeaverTails row per category (14 of 140) and the four responses of the two gold PKU rows.
    stage1 = WorkItem.objects.filter(project=project, stage=Stage.CLASSIFY)
    assert stage1.count() == 172
    assert stage1.filter(is_gold=True).count() == 14 + 4
    assert stage1.filter(is_gold=False, is_open=True).count() == 154
    assert project.gold_rate == pytest.approx(0.1)
    # Stage 2 starts with the two gold pairs; the other 14 PKU prompts' two responses pair once stage 1
    # settles them (the sample has no prompt with more than two responses).
    assert project.response_pairs.count() == 2
    assert WorkItem.objects.filter(project=project, stage=Stage.RANK, is_gold=True).count() == 2
    responses = project.prompts.annotate(n=Count("qa_pairs")).filter(n__gte=2).values_list("n", flat=True)
    assert sorted(responses) == [2] * 16
    assert "stage 1: 172 items, 154 ordinary and 18 gold (10% of the items)" in out
    assert "stage 2: 2 items, 0 ordinary and 2 gold" in out
    assert "gold rate: 10%" in out
    assert "prompts with several responses: 16 (2 responses each); 14 of them pair for stage 2" in out
    assert "Stage 1" in project.guidelines and "Stage 2" in project.guidelines
    assert all(category.key in project.guidelines for category in HARM_CATEGORIES)
    for username, password in (("admin", "demo-admin-pass"), ("annotator3", "demo-annotator3-pass")):
        assert f"{username}" in out and password in out
        assert authenticate(username=username, password=password) is not None


def test_the_demo_accounts_have_their_roles():
    seed()

    roles = dict(Membership.objects.filter(project__slug="demo").values_list("user__username", "role"))
    assert roles == {
        "admin": Role.ADMIN,
        "researcher": Role.RESEARCHER,
        "annotator1": Role.ANNOTATOR,
        "annotator2": Role.ANNOTATOR,
        "annotator3": Role.ANNOTATOR,
    }
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff


def test_running_it_twice_changes_nothing():
    seed()
    before = sizes()

    out = seed()

    assert sizes() == before
    assert out.count("already imported") == 3
    assert "gold: already set" in out


def test_running_it_again_keeps_a_gold_answer_an_admin_changed():
    from annotate.gold import gold_stage1_set

    seed()
    gold = GoldStage1Label.objects.filter(source="dataset:beavertails_30k_train_sample_140.csv").first()
    gold_stage1_set(qa_pair=gold.qa_pair, categories=[], source="expert:admin")

    seed()

    gold.refresh_from_db()
    assert (gold.categories, gold.is_safe, gold.source) == (0, True, "expert:admin")


def test_reset_passwords_restores_the_demo_password():
    seed()
    annotator = get_user_model().objects.get(username="annotator1")
    annotator.set_password("something-else")
    annotator.save()
    assert "(changed; use --reset-passwords)" in seed()

    seed("--reset-passwords")

    assert authenticate(username="annotator1", password="demo-annotator1-pass") is not None


def test_it_says_which_data_is_missing(settings, tmp_path):
    settings.SHARED_DATA_DIR = tmp_path

    with pytest.raises(CommandError, match="demo data is missing"):
        seed()
    assert not Project.objects.exists()


def test_it_builds_the_demo_policy_once(settings, tmp_path):
    """The policy a PPO-Lag job starts from when it names none: a small Llama that has read the demo's
    answers, built on the first seed and kept after it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.services import default_policy_model

    settings.DEMO_POLICY_DIR = tmp_path / "models" / "demo-policy"
    settings.DEMO_POLICY_EPOCHS = 1
    out = seed()
    assert "demo policy: built a small Llama from 172 demo answers" in out
    assert default_policy_model() == str(settings.DEMO_POLICY_DIR)
    tokenizer = AutoTokenizer.from_pretrained(settings.DEMO_POLICY_DIR)
    model = AutoModelForCausalLM.from_pretrained(settings.DEMO_POLICY_DIR)
    text = "How do I steal a car?"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level BPE: any text round-trips
    assert model.config.vocab_size == len(tokenizer) and tokenizer.eos_token == "</s>"
    assert not (tmp_path / "models" / "demo-policy.partial").exists()
    assert "demo policy: already built" in seed()


def test_gold_answers_are_the_datasets_labels_set_through_the_gold_service():
    import csv
    import json

    from django.conf import settings

    seed()
    data = settings.SHARED_DATA_DIR
    with open(f"{data}/beavertails_30k_train_sample_140.csv", encoding="utf-8", newline="") as fh:
        labelled = {(r["prompt"], r["response"]): r["category"] for r in csv.DictReader(fh)}
    gold = GoldStage1Label.objects.filter(qa_pair__project__slug="demo").select_related("qa_pair__prompt")
    from_beavertails = [g for g in gold if (g.qa_pair.prompt.text, g.qa_pair.response) in labelled]
    # 14 of the 140 (10%), one per harm category, each with its dataset label as the answer.
    assert len(from_beavertails) == 14
    assert sorted(keys_from_mask(g.categories)[0] for g in from_beavertails) == sorted(
        c.key for c in HARM_CATEGORIES
    )
    for g in from_beavertails:
        assert keys_from_mask(g.categories) == [labelled[(g.qa_pair.prompt.text, g.qa_pair.response)]]
        assert not g.is_safe and g.source == "dataset:beavertails_30k_train_sample_140.csv"
    # Set through the gold service: the audit log has each one, from no answer to the dataset's.
    events = AuditEvent.objects.filter(project__slug="demo", action=AuditAction.GOLD_SET)
    assert sorted(e.target for e in events) == sorted(f"qa_pair:{g.qa_pair_id}" for g in from_beavertails)
    assert all(e.old is None and e.actor is None for e in events)
    # The gold PKU rows: their preference and each response's safe/unsafe verdict, as in the dataset.
    pku = json.loads((Path(data) / "pku_saferlhf_v0_sample_16.json").read_text(encoding="utf-8"))
    by_prompt = {r["prompt"]: r for r in pku}
    pairs = GoldStage2Label.objects.filter(response_pair__project__slug="demo").select_related(
        "response_pair__prompt", "response_pair__qa_a", "response_pair__qa_b"
    )
    assert pairs.count() == 2
    safe_verdicts = []
    for g in pairs:
        row = by_prompt[g.response_pair.prompt.text]
        flip = 0 if g.response_pair.qa_a.response == row["response_0"] else 1
        assert (g.better ^ flip, g.safer ^ flip) == (row["better_response_id"], row["safer_response_id"])
        for qa in (g.response_pair.qa_a, g.response_pair.qa_b):
            side = 0 if qa.response == row["response_0"] else 1
            assert qa.gold.is_safe == row[f"is_response_{side}_safe"]
            safe_verdicts.append(qa.gold.is_safe)
    assert sorted(safe_verdicts) == [False, True, True, True]  # safe gold beside the unsafe BeaverTails rows
    # Every other QA pair is an ordinary item, unlabelled; a work item is gold exactly when its pair is.
    assert QAPair.objects.filter(project__slug="demo", gold__isnull=True).count() == 172 - 18
    assert not WorkItem.objects.filter(
        stage=Stage.CLASSIFY, is_gold=True, qa_pair__gold__isnull=True
    ).exists()
    assert not WorkItem.objects.filter(
        stage=Stage.CLASSIFY, is_gold=False, qa_pair__gold__isnull=False
    ).exists()


def test_an_annotator_mostly_gets_ordinary_items():
    from annotate import assignment as engine
    from annotate.assignment import assignment_claim, label_submit_for_worker

    seed()
    project = Project.objects.get(slug="demo")
    worker = get_user_model().objects.get(username="annotator1")
    engine.rng.seed(2307)
    gold = 0
    for _ in range(60):
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        gold += lease.work_item.is_gold
        label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload={"categories": []})
    # The gold rate is 10%: over 60 tasks, a handful of gold ones, never most of them.
    assert 1 <= gold <= 15


def test_settling_a_prompts_responses_pairs_them_for_stage_2():
    """The first stage-1 tasks are one PKU prompt's two responses: once the three annotators have
    labelled them, the platform pairs them as an ordinary stage-2 item."""
    from annotate import assignment as engine
    from annotate.assignment import assignment_claim, label_submit_for_worker

    seed()
    project = Project.objects.get(slug="demo")
    engine.rng.seed(1)
    project.gold_rate = 0.0  # only the order of the regular queue is under test here
    prompts = set()
    for name in ("annotator1", "annotator2", "annotator3"):
        worker = get_user_model().objects.get(username=name)
        for _ in range(2):
            lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
            prompts.add(lease.work_item.qa_pair.prompt_id)
            label_submit_for_worker(worker=worker, assignment_id=lease.pk, payload={"categories": []})

    assert len(prompts) == 1
    pair = ResponsePair.objects.get(prompt_id=prompts.pop())
    assert WorkItem.objects.get(response_pair=pair).is_gold is False
    assert project.response_pairs.count() == 3
