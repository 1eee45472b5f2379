"""seed_demo: the demo project from ../shared/data with demo users, and the demo policy for PPO-Lag jobs.
Safe to run again (idempotent)."""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count

from annotate.categories import HARM_CATEGORIES
from annotate.gold import gold_stage1_set
from annotate.importing import ImportRejected, import_file
from annotate.importing.formats import qa_hash
from annotate.models import ImportRecord, Project, Prompt, QAPair, ResponsePair, Role, Stage, WorkItem
from annotate.services import membership_set, project_create, user_create

DEMO_SLUG = "demo"
DEMO_NAME = "Demo: BeaverTails safety annotation"


# The shared sample files seed_demo reads.
PROMPTS_FILE = "beavertails_evaluation_700.json"
BEAVERTAILS_FILE = "beavertails_30k_train_sample_140.csv"
PKU_FILE = "pku_saferlhf_v0_sample_16.json"
DATA_FILES = (PROMPTS_FILE, BEAVERTAILS_FILE, PKU_FILE)
# The source named on the stage-1 gold answers seed_demo sets (the admin's gold page shows it).
GOLD_SOURCE = f"dataset:{BEAVERTAILS_FILE}"


@dataclass(frozen=True)
class DemoImport:
    """One import of the demo: a file built from the shared samples, imported once (by its name)."""

    filename: str
    format: str
    what: str
    content: bytes


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _read_beavertails(data_dir: Path) -> list[dict[str, str]]:
    with (data_dir / BEAVERTAILS_FILE).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _read_pku(data_dir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads((data_dir / PKU_FILE).read_text(encoding="utf-8"))
    return rows


def _gold_beavertails_rows(rows: list[dict[str, str]]) -> list[int]:
    """The rows whose dataset labels become gold answers: the first row of each harm category (14 of the
    140, one per category: a 10% gold share that tests every category once). Every row of the sample is
    unsafe; the safe gold answers come from the PKU-SafeRLHF rows."""
    first: dict[str, int] = {}
    for index, row in enumerate(rows):
        first.setdefault(row["category"], index)
    return sorted(first.values())


def _gold_pku_rows(rows: list[dict[str, Any]]) -> set[int]:
    """Two of the 16 preference rows become gold pairs (about 10%): the first where exactly one response
    is safe (the stage-2 invariant applies) and the first where both are safe but the more helpful one
    is the less harmless (better and safer differ). Their four responses are stage-1 gold as well (the
    dataset's safe/unsafe verdict): three safe answers beside the unsafe BeaverTails ones."""
    one_safe = next(i for i, r in enumerate(rows) if r["is_response_0_safe"] != r["is_response_1_safe"])
    both_safe = next(
        i
        for i, r in enumerate(rows)
        if r["is_response_0_safe"]
        and r["is_response_1_safe"]
        and r["better_response_id"] != r["safer_response_id"]
    )
    return {one_safe, both_safe}


@dataclass(frozen=True)
class DemoGold:
    """A stage-1 gold answer of the demo: the QA pair and its dataset categories."""

    prompt: str
    response: str
    categories: tuple[str, ...]


def demo_gold_qa(data_dir: Path) -> list[DemoGold]:
    """The BeaverTails QA pairs that are set as gold, with their dataset label as the answer."""
    rows = _read_beavertails(data_dir)
    return [
        DemoGold(rows[i]["prompt"], rows[i]["response"], (rows[i]["category"],))
        for i in _gold_beavertails_rows(rows)
    ]


def demo_imports(data_dir: Path) -> list[DemoImport]:
    """What the demo imports, as a real project would hold it: the evaluation prompts; every QA pair as
    an ordinary stage-1 item (gold is then set on a 10% share through the gold service, see
    demo_gold_qa); and two preference rows with their dataset answers as gold pairs.

    The other PKU-SafeRLHF responses come first in the stage-1 queue, each prompt's two together: their
    prompts are the ones with several responses, so as soon as the annotators have settled a prompt's
    responses, the platform pairs them for stage 2 (the sample has no prompt with more than two
    responses, and none is invented)."""
    beavertails, pku = _read_beavertails(data_dir), _read_pku(data_dir)
    gold_pairs = _gold_pku_rows(pku)
    qa = [
        {"prompt": r["prompt"], "response": r[f"response_{side}"]}
        for i, r in enumerate(pku)
        if i not in gold_pairs
        for side in (0, 1)
    ]
    qa += [{"prompt": r["prompt"], "response": r["response"]} for r in beavertails]
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
            f"{len(qa)} QA pairs to label ({2 * (len(pku) - len(gold_pairs))} PKU-SafeRLHF responses, "
            f"{len(beavertails)} BeaverTails)",
            _jsonl(qa),
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

    texts = [text(row["prompt"], row["response"]) for row in _read_beavertails(data_dir)]
    texts += [text(row["prompt"], row[f"response_{side}"]) for row in _read_pku(data_dir) for side in (0, 1)]
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
            self._gold(project, demo_gold_qa(data_dir))
        self._summary(project)
        self._policy(data_dir)
        self._print_accounts(project, accounts)

    def _gold(self, project: Project, gold: list[DemoGold]) -> None:
        """Set the stage-1 gold answers through the gold service, so the audit log records each one;
        only on QA pairs with no gold answer yet, so a second run sets nothing again and an answer an
        admin has changed since stays as they left it."""
        by_hash = {qa_hash(g.prompt, g.response): g for g in gold}
        missing = QAPair.objects.filter(project=project, content_hash__in=by_hash, gold__isnull=True)
        pairs = list(missing.order_by("pk"))
        for qa_pair in pairs:
            gold_stage1_set(
                qa_pair=qa_pair, categories=list(by_hash[qa_pair.content_hash].categories), source=GOLD_SOURCE
            )
        if pairs:
            self.stdout.write(
                f"gold: set the dataset labels of {len(pairs)} BeaverTails QA pairs (one per harm category) "
                "as their gold answers"
            )
        else:
            self.stdout.write("gold: already set")

    def _summary(self, project: Project) -> None:
        """What the demo holds now: items per stage, ordinary and gold, and the prompts whose responses
        pair up for stage 2."""
        items = WorkItem.objects.filter(project=project)
        for stage in Stage:
            total = items.filter(stage=stage).count()
            gold = items.filter(stage=stage, is_gold=True).count()
            share = f" ({gold / total:.0%} of the items)" if total > gold else ""
            self.stdout.write(
                f"stage {stage.value}: {total} items, {total - gold} ordinary and {gold} gold{share}"
            )
        several = dict(
            Prompt.objects.filter(project=project)
            .annotate(responses=Count("qa_pairs"))
            .filter(responses__gte=2)
            .values_list("pk", "responses")
        )
        by_size = sorted(Counter(several.values()).items())
        sizes = (
            f"{by_size[0][0]} responses each"
            if len(by_size) == 1
            else ", ".join(f"{count} with {n} responses" for n, count in by_size)
        )
        paired = ResponsePair.objects.filter(prompt_id__in=several).values("prompt_id").distinct().count()
        self.stdout.write(
            f"prompts with several responses: {len(several)} ({sizes or 'none'}); {len(several) - paired} of "
            "them pair for stage 2 as stage 1 settles their responses"
        )
        self.stdout.write(f"gold rate: {project.gold_rate:.0%} (the share of tasks served from gold items)")

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
