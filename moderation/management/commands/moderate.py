"""moderate SLUG [--model ID]: score every QA pair of a project with a moderation model, here, now."""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from annotate.models import Project
from moderation.models import ScoringRunStatus
from moderation.services import scoring_run_create, scoring_run_execute
from training.models import JobKind, RegisteredModel
from training.selectors import active_model


class Command(BaseCommand):
    help = (
        "Score every QA pair of a project with the project's active moderation model (or --model ID), in "
        "the foreground with a progress bar. Pairs the model already scored are skipped, so running it "
        "again after new imports, or after an interruption, scores only what is missing. Scores are kept "
        "per model: scoring with a new model keeps the old one's."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="the project's slug")
        parser.add_argument(
            "--model", type=int, help="a registered moderation model's id (default: the active one)"
        )
        parser.add_argument("--chunk", type=int, default=512, help="QA pairs scored and stored per step")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['slug']!r}.")
        if options["model"] is not None:
            model = RegisteredModel.objects.select_related("job").filter(pk=options["model"]).first()
            if model is None:
                raise CommandError(f"No registered model {options['model']}.")
        else:
            model = active_model(JobKind.MODERATION, project)
            if model is None:
                raise CommandError(
                    f"No moderation model is active for {project.slug} or the platform; pass --model ID "
                    "(GET /api/v1/models/?kind=moderation lists them)."
                )
        try:
            run = scoring_run_create(project=project, model=model, enqueue=False)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        bar = (
            None
            if options["no_progress"]
            else tqdm(total=0, unit="pairs", file=sys.stderr, dynamic_ncols=True)
        )

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.total = total
                bar.update(done - bar.n)

        run = scoring_run_execute(run=run, chunk=options["chunk"], progress=progress)
        if bar is not None:
            bar.close()
        if run.status != ScoringRunStatus.SUCCEEDED:
            raise CommandError(f"Scoring failed: {run.error}")
        rate = f" ({run.pairs_per_second:g} pairs/s)" if run.pairs_per_second else ""
        self.stdout.write(
            f"Scored {run.done} QA pairs of {project.slug} with model {model.pk}{rate}; run {run.pk}."
        )
