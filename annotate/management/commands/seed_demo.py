"""seed_demo: the demo project from ../shared/data with demo users, and the demo policy for PPO-Lag jobs.
Safe to run again (idempotent)."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from annotate.categories import HARM_CATEGORIES
from annotate.importing import ImportRejected, import_file
from annotate.models import ImportRecord, Project, Role, Stage, WorkItem
from annotate.services import membership_set, project_create, user_create

DEMO_SLUG = "demo"
DEMO_NAME = "Demo: BeaverTails safety annotation"


# The shared sample files seed_demo reads.
PROMPTS_FILE = "beavertails_evaluation_700.json"
BEAVERTAILS_FILE = "beavertails_30k_train_sample_140.csv"
PKU_FILE = "pku_saferlhf_v0_sample_16.json"
DATA_FILES = (PROMPTS_FILE, BEAVERTAILS_FILE, PKU_FILE)


@dataclass(frozen=True)
class DemoImport:
    """One import of the demo: a file built from the shared samples, imported once (by its name)."""

    filename: str
    format: str
    what: str
    content: bytes


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _gold_beavertails_rows(rows: list[dict[str, str]]) -> set[int]:
    """The rows whose dataset labels become gold answers: the first row of each harm category (14 of the
    140, one per category: a 10% gold share that tests every category once)."""
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        first.setdefault(row["category"], index)
    return set(first.values())


def _gold_pku_rows(rows: list[dict[str, Any]]) -> set[int]:
    """Two of the 16 preference rows become gold pairs (about 10%): the first where exactly one response
    is safe (the stage-2 invariant applies) and the first where both are unsafe."""
    one_safe = next(i for i, r in enumerate(rows) if r["is_response_0_safe"] != r["is_response_1_safe"])
    both_unsafe = next(
        i for i, r in enumerate(rows) if not r["is_response_0_safe"] and not r["is_response_1_safe"]
    )
    return {one_safe, both_unsafe}


def demo_imports(data_dir: Path) -> list[DemoImport]:
    """What the demo imports, as a real project would hold it: the evaluation prompts, the QA pairs as
    ordinary stage-1 items with a 10% gold share, and the preference rows' responses as ordinary QA pairs
    that pair up for stage 2 once stage 1 settles them, two rows kept as gold pairs."""
    with (data_dir / BEAVERTAILS_FILE).open(encoding="utf-8", newline="") as fh:
        beavertails = list(csv.DictReader(fh))
    pku = json.loads((data_dir / PKU_FILE).read_text(encoding="utf-8"))
    gold_qa, gold_pairs = _gold_beavertails_rows(beavertails), _gold_pku_rows(pku)
    ordinary_qa = [
        {"prompt": r["prompt"], "response": r["response"]}
        for i, r in enumerate(beavertails)
        if i not in gold_qa
    ]
    ordinary_qa += [
        {"prompt": r["prompt"], "response": r[f"response_{side}"]}
        for i, r in enumerate(pku)
        if i not in gold_pairs
        for side in (0, 1)
    ]
    return [
        DemoImport(
            PROMPTS_FILE,
            "prompts",
            "700 BeaverTails-Evaluation prompts",
            (data_dir / PROMPTS_FILE).read_bytes(),
        ),
        DemoImport(
            "demo-qa-items.jsonl",
            "qa",
            f"{len(ordinary_qa)} QA pairs to label ({len(beavertails) - len(gold_qa)} BeaverTails, "
            f"{2 * (len(pku) - len(gold_pairs))} PKU-SafeRLHF responses)",
            _jsonl(ordinary_qa),
        ),
        DemoImport(
            "demo-gold-qa.csv",
            "beavertails",
            f"{len(gold_qa)} BeaverTails QA pairs with their dataset labels as gold, one per category",
            _csv([beavertails[i] for i in sorted(gold_qa)]),
        ),
        DemoImport(
            "demo-gold-pairs.jsonl",
            "pku-saferlhf",
            f"{len(gold_pairs)} PKU-SafeRLHF preference rows with their dataset answers as gold",
            _jsonl([pku[i] for i in sorted(gold_pairs)]),
        ),
    ]


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    password: str


# Fixed, public passwords: this is a local demo and the README quotes them. Never seed a server
# reachable by others with this command.
DEMO_USERS = (
    DemoUser("admin", Role.ADMIN, "demo-admin-pass"),
    DemoUser("researcher", Role.RESEARCHER, "demo-researcher-pass"),
    DemoUser("annotator1", Role.ANNOTATOR, "demo-annotator1-pass"),
    DemoUser("annotator2", Role.ANNOTATOR, "demo-annotator2-pass"),
    DemoUser("annotator3", Role.ANNOTATOR, "demo-annotator3-pass"),
)


def demo_guidelines() -> str:
    categories = "\n".join(
        f"| {category.id} | `{category.key}` | {category.label} | {category.description} |"
        for category in HARM_CATEGORIES
    )
    return f"""# Annotation guidelines

You label question-answer (QA) pairs written by language models, in two stages. Read the whole
prompt and the whole response before you answer. When you are unsure, skip the task and say why:
a skip with a reason helps more than a guess.

## Stage 1: harm classification (one QA pair)

Mark every harm category the QA pair falls in. Mark none if it is safe. A QA pair is **safe exactly
when it falls in no category**; the platform derives "safe" from your categories.

Judge the pair as a whole, not the words in it. This is *QA moderation*: the question may be
harmful, but if the answer neutralises the risk (refuses, warns, steers to help, corrects a false
premise), the pair is safe. An answer that uses a rude or alarming word while it discourages harm
is still safe; an answer in polite words that helps someone do harm is not.

- Harmful question, refusing or redirecting answer: safe (no category).
- Harmful question, answer that helps: mark the categories of the harm the answer enables.
- Harmless question, harmful answer (for example, invented medical advice): mark what the answer does.
- Mark every category that applies, not only the main one.

## Stage 2: preference ranking (one prompt, two responses)

You see a prompt and two responses whose stage-1 safety is already known. Choose, separately:

1. **More helpful**: the response that better answers what was asked (clear, correct, complete),
   regardless of harm.
2. **More harmless**: the response that is less harmful.

The two choices are independent: the more helpful response is often the less harmless one. When
exactly one of the two responses is safe, the safe one is always the more harmless.

## The 14 harm categories

| id | key | category | what it covers |
|---|---|---|---|
{categories}
"""


def demo_policy_texts(data_dir: Path) -> list[str]:
    """Each demo answer after its prompt, as the policy reads a prompt (PolicyConfig's prompt template)."""
    from training.trainers.config import POLICY_PROMPT_TEMPLATE

    def text(prompt: str, response: str) -> str:
        return POLICY_PROMPT_TEMPLATE.format(prompt=prompt) + " " + response

    with (data_dir / "beavertails_30k_train_sample_140.csv").open(encoding="utf-8", newline="") as fh:
        texts = [text(row["prompt"], row["response"]) for row in csv.DictReader(fh)]
    pairs = json.loads((data_dir / "pku_saferlhf_v0_sample_16.json").read_text(encoding="utf-8"))
    texts += [text(row["prompt"], row[f"response_{side}"]) for row in pairs for side in (0, 1)]
    return texts


class Command(BaseCommand):
    help = "Create the demo project (slug 'demo') from the shared sample data, with demo users."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="set the demo passwords again on existing demo users",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        data_dir = Path(settings.SHARED_DATA_DIR)
        missing = [name for name in DATA_FILES if not (data_dir / name).is_file()]
        if missing:
            raise CommandError(
                f"The demo data is missing from {data_dir}: {', '.join(missing)}. "
                "Set BEAVERLAB_SHARED_DATA to the folder that holds the shared sample files."
            )
        with transaction.atomic():
            project = self._project()
            accounts = [self._user(demo, project, reset=options["reset_passwords"]) for demo in DEMO_USERS]
            for demo in demo_imports(data_dir):
                self._import(project, demo)
        self._summary(project)
        self._policy(data_dir)
        self._print_accounts(project, accounts)

    def _summary(self, project: Project) -> None:
        items = WorkItem.objects.filter(project=project)
        for stage in Stage:
            in_stage = items.filter(stage=stage)
            self.stdout.write(
                f"stage {stage.value}: {in_stage.count()} items, {in_stage.filter(is_gold=True).count()} of them "
                f"gold (gold rate {project.gold_rate:.0%})"
                + (
                    "; more pairs appear as stage 1 settles the prompts' responses"
                    if stage == Stage.RANK
                    else ""
                )
            )

    def _policy(self, data_dir: Path) -> None:
        """The demo's policy for PPO-Lag jobs: no decoder can be downloaded, so a small one is built from
        the demo's own answers (training.trainers.tiny), once."""
        from training.services import default_policy_model

        if default_policy_model():
            self.stdout.write(f"demo policy: already built ({settings.DEMO_POLICY_DIR})")
            return
        if not settings.DEMO_POLICY_EPOCHS:
            self.stdout.write("demo policy: not built (BEAVERLAB_DEMO_POLICY_EPOCHS=0)")
            return
        from training.trainers.tiny import build_small_policy

        texts = demo_policy_texts(data_dir)
        started = time.monotonic()
        build_small_policy(settings.DEMO_POLICY_DIR, texts, epochs=float(settings.DEMO_POLICY_EPOCHS))
        self.stdout.write(
            f"demo policy: built a small Llama from {len(texts)} demo answers in "
            f"{time.monotonic() - started:.0f} s ({settings.DEMO_POLICY_DIR})"
        )

    def _project(self) -> Project:
        project = Project.objects.filter(slug=DEMO_SLUG).first()
        if project is not None:
            self.stdout.write(f"project {DEMO_SLUG!r} exists")
            return project
        self.stdout.write(f"creating project {DEMO_SLUG!r}")
        return project_create(slug=DEMO_SLUG, name=DEMO_NAME, created_by=None, guidelines=demo_guidelines())

    def _user(self, demo: DemoUser, project: Project, *, reset: bool) -> tuple[str, str, str]:
        """(username, role, password as it stands) for one demo account, created if missing."""
        user = get_user_model().objects.filter(username=demo.username).first()
        if user is None:
            user, _, _ = user_create(
                username=demo.username, role=demo.role, password=demo.password, project=project
            )
        else:
            user.groups.add(Group.objects.get_or_create(name=demo.role)[0])
            membership_set(project=project, user=user, role=demo.role)
            if reset:
                user.set_password(demo.password)
                user.save(update_fields=["password"])
        if demo.role == Role.ADMIN and not (user.is_superuser and user.is_staff):
            # The demo admin also runs the Django admin (/admin/).
            user.is_superuser = user.is_staff = True
            user.save(update_fields=["is_superuser", "is_staff"])
        password = demo.password if user.check_password(demo.password) else "(changed; use --reset-passwords)"
        return demo.username, demo.role, password

    def _import(self, project: Project, demo: DemoImport) -> None:
        done = ImportRecord.objects.filter(
            project=project, filename=demo.filename, format=demo.format, status=ImportRecord.Status.SUCCEEDED
        ).exists()
        if done:
            self.stdout.write(f"{demo.filename}: already imported")
            return
        try:
            result = import_file(
                project=project, file=io.BytesIO(demo.content), filename=demo.filename, format=demo.format
            )
        except ImportRejected as rejected:
            raise CommandError(f"The demo import {demo.filename} was refused: {rejected}") from None
        counts = ", ".join(f"{key} {value}" for key, value in result.counts.items() if value)
        self.stdout.write(f"{demo.filename}: imported {demo.what} ({counts})")

    def _print_accounts(self, project: Project, accounts: list[tuple[str, str, str]]) -> None:
        header = ("username", "role", "password")
        widths = [max(len(row[i]) for row in (header, *accounts)) for i in range(3)]
        self.stdout.write(f"\nDemo accounts (project {project.slug!r}):")
        for row in (header, tuple("-" * width for width in widths), *accounts):
            cells = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write(("  " + cells).rstrip())
