"""A snapshot's manifest.json and dataset card (README.md).

The manifest is for machines (what was selected, counts, exclusions, statistics, agreement, a sha256 per
file); the card is for people and for Hugging Face `datasets`, whose YAML front matter (configs,
data_files, features) lets `load_dataset("<this folder>")` load the splits with the exact features.
The agreement figures are a summary of the project's stored report: the report itself names workers
(usernames), which do not leave the platform; the full report is kept on the snapshot row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from annotate.categories import HARM_CATEGORIES
from annotate.exporting.contents import exclusions, gold_statement, source_rows
from annotate.exporting.formats import CATEGORY, Column, hf_features
from annotate.exporting.sources import EXCLUSION_REASONS, SOURCE_NAMES
from annotate.exporting.split import SPLITS
from annotate.models import ExportFormat, Snapshot

MANIFEST_VERSION = 1

FORMAT_TITLES: dict[str, str] = {
    ExportFormat.BEAVERTAILS: "BeaverTails format: QA pairs with harm categories",
    ExportFormat.PKU_SAFERLHF: "PKU-SafeRLHF format: response pairs with safety and preferences",
    ExportFormat.RAW: "raw worker labels",
}


def _metric(block: Any, name: str) -> Any:
    value = block.get(name) if isinstance(block, dict) else None
    return value.get("value") if isinstance(value, dict) else None


def _variable(block: Any) -> dict[str, Any]:
    return {name: _metric(block, name) for name in ("alpha", "fleiss_kappa", "percent_agreement", "gwet_ac1")}


def agreement_summary(payload: dict[str, Any]) -> dict[str, Any]:
    """The figures a dataset card shows, from the stored agreement report (no per-worker rows)."""
    if not payload:
        return {}
    stage1 = payload.get("stage1") or {}
    stage2 = payload.get("stage2") or {}
    gold = payload.get("gold") or {}
    categories = stage1.get("categories") or {}
    return {
        "computed_at": payload.get("computed_at"),
        "guideline_version": payload.get("guideline_version"),
        "stage1": {
            "labels": stage1.get("labels"),
            "items": stage1.get("items"),
            "workers": stage1.get("workers"),
            "is_safe": _variable(stage1.get("is_safe")),
            "category_set_alpha": _metric(stage1.get("category_set"), "alpha"),
            "categories_alpha": {c.key: _metric(categories.get(c.key), "alpha") for c in HARM_CATEGORIES},
        },
        "stage2": {
            "labels": stage2.get("labels"),
            "items": stage2.get("items"),
            "workers": stage2.get("workers"),
            "better": _variable(stage2.get("better")),
            "safer": _variable(stage2.get("safer")),
            "safer_forced": stage2.get("safer_forced"),
        },
        "gold": {
            name: _metric(gold, name)
            for name in ("stage1_is_safe_kappa", "stage1_exact_accuracy", "stage2_accuracy")
        },
    }


def build_manifest(
    *,
    snapshot: Snapshot,
    files: list[dict[str, Any]],
    row_counts: dict[str, Any],
    statistics: dict[str, Any],
    schemas: Mapping[str, Sequence[Column]],
    agreement: dict[str, Any],
    created_at: str,
) -> dict[str, Any]:
    project = snapshot.project
    return {
        "manifest_version": MANIFEST_VERSION,
        "snapshot_id": snapshot.pk,
        "project": {"slug": project.slug, "name": project.name},
        "format": snapshot.format,
        "file_format": snapshot.file_format,
        "compress": snapshot.compress,
        "license": snapshot.license,
        "created_at": created_at,
        "filters": snapshot.filters,
        "split": {
            "by": "prompt",
            "test_ratio": snapshot.test_ratio,
            "seed": snapshot.seed,
            "method": _split_method(),
        },
        "counts": row_counts,
        "excluded_reasons": {reason: EXCLUSION_REASONS[reason] for reason in row_counts.get("excluded", {})},
        "statistics": statistics,
        "agreement": agreement_summary(agreement),
        "features": {key or "default": hf_features(columns) for key, columns in schemas.items()},
        "files": files,
    }


def _split_method() -> str:
    from annotate.exporting.split import METHOD

    return METHOD


# --- the dataset card --------------------------------------------------------------------------------


def _q(value: Any) -> str:
    """A YAML scalar: JSON strings are valid YAML double-quoted scalars."""
    return json.dumps(value, ensure_ascii=False)


def _size_category(rows: int) -> str:
    for limit, label in (
        (1_000, "n<1K"),
        (10_000, "1K<n<10K"),
        (100_000, "10K<n<100K"),
        (1_000_000, "100K<n<1M"),
    ):
        if rows < limit:
            return label
    return "1M<n<10M"


def _license_id(license: str) -> str:
    identifier = license.strip().lower()
    return identifier if identifier and " " not in identifier else "other"


def _yaml_features(columns: Sequence[Column], indent: str) -> list[str]:
    lines = [f"{indent}features:"]
    for column in columns:
        lines.append(f"{indent}- name: {_q(column.name)}")
        if column.kind == CATEGORY:
            lines.append(f"{indent}  struct:")
            for category in HARM_CATEGORIES:
                lines.append(f"{indent}  - name: {_q(category.key)}")
                lines.append(f"{indent}    dtype: bool")
        else:
            dtype = hf_features([column])[column.name]
            lines.append(f"{indent}  dtype: {dtype}")
    return lines


def front_matter(
    *, snapshot: Snapshot, data_files: list[dict[str, Any]], schemas: Mapping[str, Sequence[Column]]
) -> str:
    total = sum(f["rows"] for f in data_files)
    tags = ["safety", "beaverlab", snapshot.format]
    lines = [
        "---",
        f"license: {_q(_license_id(snapshot.license))}",
        f"pretty_name: {_q(f'{snapshot.project.name} ({snapshot.format} snapshot {snapshot.pk})')}",
        "tags:",
        *[f"- {_q(tag)}" for tag in tags],
        "size_categories:",
        f"- {_q(_size_category(total))}",
        "configs:",
    ]
    info: list[str] = ["dataset_info:"]
    for key, columns in schemas.items():
        config = key or "default"
        # Only splits with rows: `datasets` cannot read an empty JSON-lines file.
        files = [f for f in data_files if f["config"] == config and f["rows"]]
        if not files:
            continue
        lines.append(f"- config_name: {_q(config)}")
        lines.append("  data_files:")
        for file in files:
            lines.append(f"  - split: {_q(file['split'])}")
            lines.append(f"    path: {_q(file['name'])}")
        info.append(f"- config_name: {_q(config)}")
        info.extend(_yaml_features(columns, "  "))
        info.append("  splits:")
        for file in files:
            info.append(f"  - name: {_q(file['split'])}")
            info.append(f"    num_examples: {file['rows']}")
    if len(info) > 1:
        lines.extend(info)
    lines.append("---")
    return "\n".join(lines) + "\n"


def _fmt_share(value: Any) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _stats_section(title: str, stats: dict[str, Any]) -> list[str]:
    splits = [s for s in stats if s != "all"] + ["all"]
    lines = [f"### {title}", ""]
    first = stats.get("all", {})
    if "categories" in first:
        lines += ["| | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        lines.append("| rows | " + " | ".join(str(stats[s]["rows"]) for s in splits) + " |")
        lines.append(
            "| safe | "
            + " | ".join(f"{stats[s]['safe']} ({_fmt_share(stats[s]['safe_share'])})" for s in splits)
            + " |"
        )
        lines.append(
            "| unsafe | "
            + " | ".join(f"{stats[s]['unsafe']} ({_fmt_share(stats[s]['unsafe_share'])})" for s in splits)
            + " |"
        )
        lines += ["", "Harm categories (rows in each; a row can be in several):", ""]
        lines += ["| category | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        for category in HARM_CATEGORIES:
            cells = []
            for s in splits:
                cats = stats[s]["categories"]
                cells.append(
                    f"{cats['counts'][category.key]} ({_fmt_share(cats['share_of_rows'][category.key])})"
                )
            lines.append(f"| `{category.key}` | " + " | ".join(cells) + " |")
    else:
        keys = [k for k in first if k not in ("better_response_id", "safer_response_id")]
        lines += ["| | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        for key in keys:
            values = [stats[s].get(key) for s in splits]
            shown = [_fmt_share(v) if key.endswith("_share") else _fmt(v) for v in values]
            lines.append(f"| {key} | " + " | ".join(shown) + " |")
        for key in ("better_response_id", "safer_response_id"):
            cells = [f"0: {stats[s][key]['0']}, 1: {stats[s][key]['1']}" for s in splits]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _agreement_section(summary: dict[str, Any]) -> list[str]:
    lines = ["## Agreement at the time of the snapshot", ""]
    if not summary:
        return [*lines, "No agreement report had been computed for the project yet.", ""]
    lines += [
        f"From the project's agreement report computed at {summary.get('computed_at') or '-'} "
        f"(guideline version {summary.get('guideline_version') or '-'}).",
        "",
        "| variable | Krippendorff's alpha | Fleiss' kappa | percent agreement | Gwet's AC1 |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [
        ("stage 1 `is_safe`", summary["stage1"]["is_safe"]),
        ("stage 2 `better`", summary["stage2"]["better"]),
        (
            "stage 2 `safer` (free choices: pairs whose harmless answer was not forced)",
            summary["stage2"]["safer"],
        ),
    ]
    for label, block in rows:
        lines.append(
            f"| {label} | {_fmt(block['alpha'])} | {_fmt(block['fleiss_kappa'])} | "
            f"{_fmt(block['percent_agreement'])} | {_fmt(block['gwet_ac1'])} |"
        )
    lines += ["", f"Category set (MASI) alpha: {_fmt(summary['stage1']['category_set_alpha'])}.", ""]
    lines += ["| category | alpha |", "|---|---:|"]
    for key, value in summary["stage1"]["categories_alpha"].items():
        lines.append(f"| `{key}` | {_fmt(value)} |")
    gold = summary["gold"]
    lines += [
        "",
        f"Against expert (gold) labels: stage-1 is_safe kappa {_fmt(gold['stage1_is_safe_kappa'])}, "
        f"stage-1 exact accuracy {_fmt(gold['stage1_exact_accuracy'])}, "
        f"stage-2 accuracy {_fmt(gold['stage2_accuracy'])}.",
        "",
    ]
    return lines


def _sources_section(
    snapshot: Snapshot, counts: dict[str, Any], data_files: list[dict[str, Any]]
) -> list[str]:
    filters = snapshot.filters or {}
    raw = snapshot.format == ExportFormat.RAW
    lines = ["## Label sources", ""]
    if raw:
        lines += ["Every row is one worker's label; counted by the kind of item it was given on.", ""]
    else:
        order = ["an admin's adjudication", "the settled worker consensus"]
        if filters.get("include_gold"):
            order.append("the expert (gold) label")
        if not filters.get("settled_only", True):
            order.append("a provisional majority of the labels so far")
        lines += [f"Each row's label is the first that exists of: {', '.join(order)}.", ""]
    table = source_rows(counts)
    if table:
        splits = [s for s in SPLITS if any(f["split"] == s and f["rows"] for f in data_files) and s in table]
        columns = [*splits, "all"]
        lines += ["| source | key | " + " | ".join(columns) + " |", "|---|---|" + "---:|" * len(columns)]
        for name in table["all"]:
            cells = [str(table[column].get(name, 0)) for column in columns]
            lines.append(f"| {SOURCE_NAMES.get(name, name)} | `{name}` | " + " | ".join(cells) + " |")
        lines.append("")
    safety = counts.get("response_safety_sources") or {}
    if safety:
        described = ", ".join(f"{SOURCE_NAMES.get(name, name)} {count}" for name, count in safety.items())
        lines += [f"The responses' stage-1 safety (two per row) came from: {described}.", ""]
    lines += [gold_statement(counts, filters, snapshot.format), ""]
    return lines


def _excluded_section(snapshot: Snapshot, counts: dict[str, Any]) -> list[str]:
    found = exclusions(counts, snapshot.filters or {}, snapshot.format)
    unit = "labels" if snapshot.format == ExportFormat.RAW else "rows"
    lines = [f"## Excluded {unit}", ""]
    if not found:
        return [*lines, f"No {unit} were left out.", ""]
    total = sum(count for _, _, count in found)
    lines += [
        f"{total} {unit} were left out, each counted once, under the first check it failed:",
        "",
        f"| reason | key | {unit} | what it means |",
        "|---|---|---:|---|",
    ]
    for reason, label, count in found:
        lines.append(f"| {label} | `{reason}` | {count} | {EXCLUSION_REASONS.get(reason, '')} |")
    return [*lines, ""]


def build_card(
    *, snapshot: Snapshot, manifest: dict[str, Any], schemas: Mapping[str, Sequence[Column]]
) -> str:
    data_files = [f for f in manifest["files"] if f.get("split")]
    counts = manifest["counts"]
    project = snapshot.project
    lines = [
        front_matter(snapshot=snapshot, data_files=data_files, schemas=schemas),
        f"# {project.name}: {FORMAT_TITLES.get(snapshot.format, snapshot.format)}",
        "",
        f"Snapshot #{snapshot.pk} of the BeaverLab project `{project.slug}`, taken {manifest['created_at']}. "
        "A snapshot is immutable: the consensus at that moment, selected by the filter below; "
        "`manifest.json` beside this card lists every file with its sha256.",
        "",
        f"**Licence:** {snapshot.license}",
        "",
        "## Files",
        "",
        "| file | config | split | rows | bytes | sha256 |",
        "|---|---|---|---:|---:|---|",
    ]
    for file in data_files:
        lines.append(
            f"| `{file['name']}` | {file['config']} | {file['split']} | {file['rows']} | {file['bytes']} | "
            f"`{file['sha256']}` |"
        )
    example = ", ".join(f'"{f["split"]}": "{f["name"]}"' for f in data_files if f["rows"])
    loader = "parquet" if snapshot.file_format == "parquet" else "json"
    lines += [
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("{loader}", data_files={{{example}}})',
        '# or, with this card\'s configs: load_dataset("path/to/this/folder")',
        "```",
        "",
        "## Fields",
        "",
    ]
    for key, columns in schemas.items():
        if key:
            lines += [f"Config `{key}`:", ""]
        for column in columns:
            kind = (
                "object of the 14 harm categories (bool each, in the released order)"
                if column.kind == CATEGORY
                else hf_features([column])[column.name]
            )
            nullable = ", may be null" if column.nullable else ""
            note = f": {column.description}" if column.description else ""
            lines.append(f"- `{column.name}` ({kind}{nullable}){note}")
        lines.append("")
    lines += [
        "## Counts",
        "",
        f"{counts['total']} rows: {counts['train']} train, {counts['test']} test "
        f"(split by prompt, test ratio {snapshot.test_ratio}, seed {snapshot.seed}; no prompt is in both).",
        "",
    ]
    lines += _sources_section(snapshot, counts, data_files)
    lines += _excluded_section(snapshot, counts)
    lines += ["## Distribution", ""]
    for key, stats in manifest["statistics"].items():
        title = {"default": "Rows", "stage1": "Stage-1 labels", "stage2": "Stage-2 labels"}.get(key, key)
        lines += _stats_section(title, stats)
    lines += _agreement_section(manifest["agreement"])
    selection = {"format": snapshot.format, "filters": snapshot.filters, "split": manifest["split"]}
    lines += [
        "## Selection",
        "",
        "The exact filter used (docs/exports.md says what each key means):",
        "",
        "```json",
        json.dumps(selection, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
