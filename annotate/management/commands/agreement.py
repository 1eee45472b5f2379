"""`agreement SLUG [--json]`: compute a fresh agreement report, store it, and print it."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotate.agreement_report import agreement_report_compute
from annotate.categories import HARM_CATEGORIES
from annotate.models import Project


def _number(metric: dict[str, Any] | None, digits: int = 3) -> str:
    if not metric or metric.get("value") is None:
        return "-"
    return f"{metric['value']:.{digits}f}"


def _interval(interval: dict[str, Any] | None) -> str:
    if not interval or interval.get("low") is None:
        return ""
    return f"[{interval['low']:.3f}, {interval['high']:.3f}]"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return lines


def summary(payload: dict[str, Any]) -> str:
    """A readable text summary of a report payload (the command's default output)."""
    stage1, stage2 = payload["stage1"], payload["stage2"]
    lines = [
        f"Computed {payload['computed_at']} in {payload['duration_ms']} ms; guideline version "
        f"{payload['guideline_version']}.",
        f"Stage 1: {stage1['labels']} labels on {stage1['items']} items by {stage1['workers']} workers. "
        f"Stage 2: {stage2['labels']} labels on {stage2['items']} items by {stage2['workers']} workers.",
        "",
    ]
    rows = [["variable", "alpha", "95% CI", "Fleiss", "percent", "AC1", "units", "why undefined"]]

    def row(name: str, block: dict[str, Any]) -> None:
        alpha = block["alpha"]
        rows.append(
            [
                name,
                _number(alpha),
                _interval(block.get("alpha_ci")),
                _number(block.get("fleiss_kappa")),
                _number(block.get("percent_agreement")),
                _number(block.get("gwet_ac1")),
                str(alpha["n_units"]),
                alpha["reason"] or "",
            ]
        )

    row("stage 1 is_safe", stage1["is_safe"])
    for category in HARM_CATEGORIES:
        row(f"  {category.key}", stage1["categories"][category.key])
    row("stage 1 category set (MASI)", stage1["category_set"])
    row("stage 2 better", stage2["better"])
    row("stage 2 safer", stage2["safer"])
    lines += _table(rows)

    gold = payload["gold"]
    consensus = payload["consensus"]["dawid_skene_vs_majority_on_gold"]
    lines += [
        "",
        f"Gold: is_safe kappa {_number(gold['stage1_is_safe_kappa'])}, stage-1 exact accuracy "
        f"{_number(gold['stage1_exact_accuracy'])}, stage-2 accuracy {_number(gold['stage2_accuracy'])}.",
        f"Consensus on gold (is_safe): majority {_number(consensus['majority_accuracy'])}, "
        f"Dawid-Skene {_number(consensus['dawid_skene_accuracy'])}.",
        "",
    ]
    workers = [
        ["worker", "stage 1", "stage 2", "LOO is_safe", "gold acc", "gold kappa", "skips", "median s", "flag"]
    ]
    for worker in payload["workers"]:
        median = worker["median_time_on_task_ms"]
        workers.append(
            [
                worker["username"] or f"#{worker['worker_id']}",
                str(worker["labels_stage1"]),
                str(worker["labels_stage2"]),
                _rate(worker["loo_is_safe"]["rate"]),
                _rate(worker["gold_accuracy"]),
                _number(worker["gold_kappa_is_safe"], 2),
                _rate(worker["skip_rate"]),
                "-" if median is None else f"{median / 1000:.1f}",
                "FLAG" if worker["flagged"] else "",
            ]
        )
    lines += _table(workers) if len(workers) > 1 else ["No workers yet."]
    lines.append("")
    if payload["alerts"]:
        lines.append("Alerts:")
        lines += [
            f"  {alert['label']}: {alert['value']:.3f} < {alert['threshold']:.2f} (n = {alert.get('n_units', '?')})"
            for alert in payload["alerts"]
        ]
    else:
        lines.append("No alerts.")
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Compute a project's agreement statistics now, store them as its latest report, and print them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", help="The project's slug.")
        parser.add_argument("--json", action="store_true", help="Print the whole stored payload as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with slug {options['slug']!r}.")
        report = agreement_report_compute(project=project)
        if options["json"]:
            self.stdout.write(json.dumps(report.payload, indent=2, allow_nan=False))
        else:
            self.stdout.write(summary(report.payload))
