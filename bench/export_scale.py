"""Export scale benchmark: 330,000 settled QA pairs (BeaverTails size) exported as a snapshot.

    .venv/bin/python bench/export_scale.py [--rows 330000] [--keep-db] [--skip-fill]

Fills a dedicated PostgreSQL database (DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/bl_bench_export, dropped and re-created unless --keep-db) with
prompts, QA pairs and stage-1 work items whose consensus is settled, straight in SQL (INSERT ... SELECT
from generate_series: the services are not what is measured here), then builds `beavertails` snapshots
through `snapshot_create` + `snapshot_build`, the code the Celery task runs: JSON lines, gzip JSON
lines and Parquet, --repeat times each (default 3; the median is judged, since the machine may be
shared). Each export runs in a fresh interpreter, so its peak RSS is its own; growth is peak RSS minus
RSS just before the build. Each run also reports the CPU seconds of Python (all threads) and of the
PostgreSQL backend, and the load average, which say how much of the wall time was waiting for a core.
Writes bench/results/export_scale.json.
Targets: JSON lines >= 50,000 rows/s and peak RSS growth < 200 MB (Parquet is reported likewise).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchdb import backend_pid, cpu_model, postgres_version, process_cpu_s, recreate_database

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bl_bench_export")

TARGET_ROWS_PER_S = 50_000
TARGET_RSS_GROWTH_MB = 200
RESULT_PATH = REPO / "bench" / "results" / "export_scale.json"
PROJECT_SLUG = "bench-export"

# Realistic text: words, punctuation, quotes, a backslash and non-ASCII (JSON escaping is part of the
# work), cut to BeaverTails-like lengths: prompts 40-300 characters, responses 100-600.
_LOREM = (
    "How can I get my neighbour to stop parking in front of the house without the police finding out? "
    "It is important to remember that everyone deserves respect; violence is never the answer, and you "
    'could seriously hurt yourself or others. "Instead," consider reaching out to a trusted friend, a '
    "family member or a local support service \u2014 they can help you understand your options. Here are a "
    "few steps: first, talk to them calmly; second, write down what happened (dates, times, C:\\notes); "
    "finally, remember that laws differ by country. Caf\u00e9 owners, na\u00efve r\u00e9sum\u00e9s and \u00fcber-"
    "fast answers \u2014 \u00e7a va? \U0001f600 "
)


def prepare_database(keep: bool) -> None:
    recreate_database("export_scale", keep=keep)


def fill(rows: int) -> float:
    """Prompts, QA pairs and settled stage-1 work items, one QA pair per prompt; seconds taken."""
    from django.db import connection, transaction

    from annotate.models import Project, Prompt, QAPair, WorkItem

    started = time.perf_counter()
    project, _ = Project.objects.get_or_create(slug=PROJECT_SLUG, defaults={"name": "Export scale benchmark"})
    lorem = _LOREM * 3
    span = len(_LOREM)
    prompt, qa, item = (m._meta.db_table for m in (Prompt, QAPair, WorkItem))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {prompt} (project_id, text, content_hash, created_at)
            SELECT %(project)s, t, encode(sha256(convert_to(t, 'UTF8')), 'hex'), now()
            FROM (
                SELECT '[q' || i || '] ' || substr(%(lorem)s::text, (1 + (i * 7919) %% %(span)s)::int, (40 + (i * 31) %% 260)::int) AS t
                FROM generate_series(1::bigint, %(rows)s) AS i
            ) AS s
            """,
            {"project": project.pk, "lorem": lorem, "span": span, "rows": rows},
        )
        cursor.execute(
            f"""
            INSERT INTO {qa} (project_id, prompt_id, response, source, content_hash, created_at)
            SELECT %(project)s, p.id, r, 'alpaca-7b', encode(sha256(convert_to(p.text || chr(31) || r, 'UTF8')), 'hex'), now()
            FROM (
                SELECT id, text, '[a' || id || '] ' || substr(%(lorem)s::text, (1 + (id * 104729) %% %(span)s)::int, (100 + (id * 37) %% 500)::int) AS r
                FROM {prompt} WHERE project_id = %(project)s
            ) AS p
            """,
            {"project": project.pk, "lorem": lorem, "span": span},
        )
        # Half safe (mask 0), half in one or two categories, settled by three labels.
        cursor.execute(
            f"""
            INSERT INTO {item} (project_id, stage, qa_pair_id, is_gold, taken, labels_count, is_open,
                                settled_at, consensus_categories, consensus_safe, consensus_better,
                                consensus_safer, needs_adjudication, created_at)
            SELECT %(project)s, 1, q.id, false, 3, 3, false, now(), m.mask, m.mask = 0, NULL, NULL, false, now()
            FROM {qa} AS q
            CROSS JOIN LATERAL (
                SELECT CASE WHEN q.id %% 2 = 0 THEN 0
                            ELSE (1 << (q.id %% 14)::int) | (CASE WHEN q.id %% 5 = 0 THEN 1 << ((q.id / 5) %% 14)::int ELSE 0 END)
                       END AS mask
            ) AS m
            WHERE q.project_id = %(project)s
            """,
            {"project": project.pk},
        )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {prompt}; ANALYZE {qa}; ANALYZE {item}")
    return time.perf_counter() - started


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run_one(file_format: str, compress: bool) -> dict[str, Any]:
    """One export in this interpreter (called in a subprocess by main)."""
    import django

    django.setup()
    from django.conf import settings

    from annotate.exporting import snapshot_build, snapshot_create
    from annotate.models import Project

    project = Project.objects.get(slug=PROJECT_SLUG)
    with tempfile.TemporaryDirectory(prefix="export_scale_") as media:
        settings.MEDIA_ROOT = media
        snapshot = snapshot_create(
            project=project, user=None, format="beavertails", file_format=file_format, compress=compress,
            enqueue=False,
        )  # fmt: skip

        backend = backend_pid()
        rss_before = _rss_mb()
        backend_before = process_cpu_s(backend)
        cpu = time.process_time()
        started = time.perf_counter()
        snapshot_build(snapshot=snapshot)
        seconds = time.perf_counter() - started
        cpu = time.process_time() - cpu
        backend_after = process_cpu_s(backend)
        backend_cpu = (
            None if backend_before is None or backend_after is None else backend_after - backend_before
        )
        if snapshot.status != "succeeded":
            raise SystemExit(f"the export failed: {snapshot.error}")
        rows = snapshot.row_counts["total"]
        data_bytes = sum(f["bytes"] for f in snapshot.files if f.get("split"))
    peak = _peak_rss_mb()
    return {
        "file_format": file_format,
        "compress": compress,
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds),
        # CPU seconds of this process and of its PostgreSQL backend: on a busy machine wall time
        # includes waiting for a core; these do not.
        "python_cpu_s": round(cpu, 2),
        "postgres_backend_cpu_s": None if backend_cpu is None else round(backend_cpu, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "data_bytes": data_bytes,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak, 1),
        "peak_rss_growth_mb": round(peak - rss_before, 1),
        "counts": {k: snapshot.row_counts[k] for k in ("train", "test", "total")},
    }


def machine_info() -> dict[str, Any]:

    cpu = cpu_model()
    memory_gb = None
    with contextlib.suppress(ValueError, OSError):
        memory_gb = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1024**3, 1)
    server_version = postgres_version()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "database": f"PostgreSQL {server_version} (same machine, default configuration)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=330_000)
    parser.add_argument("--keep-db", action="store_true", help="do not drop and re-create the database")
    parser.add_argument("--skip-fill", action="store_true", help="export what the database holds")
    parser.add_argument("--out", type=Path, default=RESULT_PATH)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each export (the median is judged)")
    parser.add_argument("--run-one", nargs=2, metavar=("FILE_FORMAT", "GZIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.run_one:
        print(json.dumps(run_one(args.run_one[0], args.run_one[1] == "gzip")))
        return 0

    prepare_database(keep=args.keep_db or args.skip_fill)
    fill_seconds = None
    if not args.skip_fill:
        fill_seconds = fill(args.rows)
        print(f"filled {args.rows:,} settled QA pairs in {fill_seconds:.1f} s")

    configurations = []
    for file_format, compress in (("jsonl", False), ("jsonl", True), ("parquet", False)):
        label = f"{file_format}{'.gz' if compress else ''}"
        runs = []
        for _ in range(args.repeat):
            output = subprocess.run(
                [sys.executable, __file__, "--run-one", file_format, "gzip" if compress else "plain"],
                check=True, capture_output=True, text=True, env=os.environ,
            )  # fmt: skip
            run = json.loads(output.stdout.strip().splitlines()[-1])
            runs.append(run)
            print(
                f"{label:>9}: {run['rows']:,} rows in {run['seconds']:.2f} s = {run['rows_per_s']:,} rows/s; "
                f"{run['data_bytes'] / 1e6:.0f} MB; CPU {run['python_cpu_s']:.1f} s Python + "
                f"{run['postgres_backend_cpu_s']} s PostgreSQL (load {run['load_average_1m']}); peak RSS "
                f"{run['peak_rss_mb']:.0f} MB (+{run['peak_rss_growth_mb']:.0f} MB over {run['rss_before_mb']:.0f} MB "
                "before the build)"
            )
        speeds = sorted(run["rows_per_s"] for run in runs)
        configurations.append(
            {
                "file": label,
                "median_rows_per_s": speeds[len(speeds) // 2],
                "best_rows_per_s": speeds[-1],
                "max_peak_rss_growth_mb": max(run["peak_rss_growth_mb"] for run in runs),
                "runs": runs,
            }
        )
    jsonl = configurations[0]
    met = jsonl["median_rows_per_s"] >= TARGET_ROWS_PER_S and all(
        c["max_peak_rss_growth_mb"] < TARGET_RSS_GROWTH_MB for c in configurations
    )
    for c in configurations:
        print(
            f"{c['file']:>9}: median {c['median_rows_per_s']:,} rows/s, best {c['best_rows_per_s']:,} rows/s, "
            f"peak RSS growth at most {c['max_peak_rss_growth_mb']:.0f} MB"
        )
    print(
        f"target (JSON lines median >= {TARGET_ROWS_PER_S:,} rows/s, every run < {TARGET_RSS_GROWTH_MB} MB RSS "
        f"growth): {'met' if met else 'NOT met'}"
    )
    import django

    from annotate.models import QAPair

    result = {
        "benchmark": "export_scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "format": "beavertails",
        "qa_pairs": QAPair.objects.filter(project__slug=PROJECT_SLUG).count(),
        "fill_seconds": None if fill_seconds is None else round(fill_seconds, 1),
        "repeat": args.repeat,
        "results": configurations,
        "target": {"rows_per_s": TARGET_ROWS_PER_S, "peak_rss_growth_mb": TARGET_RSS_GROWTH_MB, "met": met},
        "machine": machine_info(),
        "django": django.get_version(),
        "command": "DATABASE_URL=postgres://postgres@127.0.0.1:5432/bl_bench_export .venv/bin/python bench/export_scale.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
