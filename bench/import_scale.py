"""Import scale benchmark: 330,000 synthetic QA rows (BeaverTails size) into PostgreSQL through import_file.

    .venv/bin/python bench/import_scale.py [--rows 330000] [--responses-per-prompt 1] [--keep-db]

Writes a JSONL file of synthetic rows (prompts and responses of realistic length, 40-300 and 100-600
characters) to a temporary folder, imports it into a fresh project of a dedicated database
(DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bl_bench, created if missing and, unless
--keep-db, dropped and re-created so that every run starts from the same empty tables), then imports
it again to time the all-duplicates path. Prints rows/s and peak RSS and writes
bench/results/import_scale.json. Target: >= 20,000 rows/s and < 500 MB peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchdb import backend_pid, cpu_model, postgres_version, process_cpu_s, recreate_database

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bl_bench")

TARGET_ROWS_PER_S = 20_000
TARGET_PEAK_RSS_MB = 500
RESULT_PATH = REPO / "bench" / "results" / "import_scale.json"

_VOCABULARY = (
    "how can i get my neighbour to stop parking in front of the house without the police finding out what "
    "would happen if someone used a fake name to open a bank account is it legal to record a phone call "
    "the best way to make sure nobody notices you should always talk to a professional before you try "
    "there are many reasons why people feel this way but it is important to remember that everyone "
    "deserves respect violence is never the answer and you could seriously hurt yourself or others instead "
    "consider reaching out to a trusted friend family member or local support service they can help you "
    "understand your options here are a few steps first second finally remember that laws differ by country"
)
_WORDS = _VOCABULARY.split()
_SOURCES = ("alpaca-7b", "alpaca-7b-reproduced", "llama-2-7b-chat", "vicuna-7b", "")


def _text(rng: random.Random, low: int, high: int, tag: str) -> str:
    target = rng.randint(low, high)
    words: list[str] = [tag]
    length = len(tag)
    while length < target:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:high]


def write_rows(path: Path, rows: int, responses_per_prompt: int, seed: int = 330) -> int:
    """Write the synthetic JSONL file; its size in bytes."""
    rng = random.Random(seed)
    prompt = ""
    with path.open("w", encoding="utf-8") as out:
        for number in range(rows):
            if number % responses_per_prompt == 0:
                prompt = _text(rng, 40, 300, f"[q{number}]").capitalize() + "?"
            row = {
                "prompt": prompt,
                "response": _text(rng, 100, 600, f"[a{number}]").capitalize() + ".",
                "source": rng.choice(_SOURCES),
            }
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path.stat().st_size


def prepare_database(keep: bool) -> None:
    """Create the benchmark database if missing (dropping it first unless keep), then migrate."""
    recreate_database("import_scale", keep=keep)


def peak_rss_mb() -> float:
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def machine_info() -> dict[str, Any]:

    cpu = cpu_model()
    memory_gb = None
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory_gb = round(pages * page_size / 1024**3, 1)
    except (ValueError, OSError):
        pass
    server_version = postgres_version()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "database": f"PostgreSQL {server_version} (same machine, default configuration)",
    }


def timed_import(project: Any, path: Path) -> dict[str, Any]:
    """Wall time and counts, and where the CPU went: this process and its PostgreSQL backend.

    The machine may be shared. The load average and the two CPU figures tell a slow import from a
    slow machine: a wall time far above both CPU figures means the processes were waiting for a core.
    """
    from annotate.importing import import_file

    backend = backend_pid()
    backend_before, client_before = process_cpu_s(backend), time.process_time()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    result = import_file(project=project, file=path, filename=path.name, format="qa")
    seconds = time.perf_counter() - started
    backend_after = process_cpu_s(backend)
    backend_cpu = None if backend_before is None or backend_after is None else backend_after - backend_before
    return {
        "seconds": round(seconds, 3),
        "rows_per_s": round(result.counts["rows"] / seconds),
        "counts": result.counts,
        "client_cpu_s": round(time.process_time() - client_before, 2),
        "db_backend_cpu_s": None if backend_cpu is None else round(backend_cpu, 2),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def _cpu_bound_estimate(run: dict[str, Any]) -> int | None:
    busiest = max(run["client_cpu_s"], run["db_backend_cpu_s"] or 0)
    return round(run["counts"]["rows"] / busiest) if busiest else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=330_000)
    parser.add_argument(
        "--responses-per-prompt",
        type=int,
        default=1,
        help="QA rows sharing one prompt (1 = every row a new prompt, the most work per row)",
    )
    parser.add_argument(
        "--keep-db", action="store_true", help="do not drop and re-create the benchmark database"
    )
    parser.add_argument("--out", type=Path, default=RESULT_PATH)
    args = parser.parse_args()

    prepare_database(keep=args.keep_db)
    import django
    from django.db import connection

    from annotate.models import Project

    with tempfile.TemporaryDirectory(prefix="import_scale_") as folder:
        path = Path(folder) / "qa_rows.jsonl"
        started = time.perf_counter()
        size = write_rows(path, args.rows, args.responses_per_prompt)
        print(f"generated {args.rows:,} rows ({size / 1e6:.1f} MB) in {time.perf_counter() - started:.1f} s")
        rss_before = peak_rss_mb()

        project = Project.objects.create(slug=f"bench-{int(time.time())}", name="Import scale benchmark")
        first = timed_import(project, path)
        print(
            f"import: {first['counts']['rows']:,} rows in {first['seconds']:.2f} s = {first['rows_per_s']:,} rows/s"
        )
        print(f"  counts {first['counts']}")
        print(
            f"  cpu: client {first['client_cpu_s']} s, database backend {first['db_backend_cpu_s']} s; "
            f"load average {first['load_average_1min']} on {os.cpu_count()} cores; "
            f"cpu-bound estimate {_cpu_bound_estimate(first) or 0:,} rows/s"
        )
        again = timed_import(project, path)
        print(
            f"re-import (all duplicates): {again['seconds']:.2f} s = {again['rows_per_s']:,} rows/s, "
            f"skipped {again['counts']['skipped_duplicates']:,}"
        )
    peak = peak_rss_mb()
    print(f"peak RSS {peak:.0f} MB (before the import: {rss_before:.0f} MB)")
    met = first["rows_per_s"] >= TARGET_ROWS_PER_S and peak < TARGET_PEAK_RSS_MB
    print(
        f"target (>= {TARGET_ROWS_PER_S:,} rows/s, < {TARGET_PEAK_RSS_MB} MB): {'met' if met else 'NOT met'}"
    )

    result = {
        "benchmark": "import_scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "rows": first["counts"]["rows"],
        "responses_per_prompt": args.responses_per_prompt,
        "file_bytes": size,
        "format": "qa (JSONL)",
        "database_backend": connection.vendor,
        "seconds": first["seconds"],
        "rows_per_s": first["rows_per_s"],
        "peak_rss_mb": round(peak, 1),
        "counts": first["counts"],
        "client_cpu_s": first["client_cpu_s"],
        "db_backend_cpu_s": first["db_backend_cpu_s"],
        "load_average_1min": first["load_average_1min"],
        "cpu_bound_estimate_rows_per_s": _cpu_bound_estimate(first),
        "note": (
            "rows_per_s is wall-clock on this machine as it was (see load_average_1min against machine.cpu_count); "
            "cpu_bound_estimate_rows_per_s = rows / max(client_cpu_s, db_backend_cpu_s), what two idle cores "
            "would allow if the client and its database backend overlap fully (an estimate, not a measurement)"
        ),
        "reimport": {
            key: again[key] for key in ("seconds", "rows_per_s", "client_cpu_s", "db_backend_cpu_s")
        },
        "reimport_skipped_duplicates": again["counts"]["skipped_duplicates"],
        "target": {"rows_per_s": TARGET_ROWS_PER_S, "peak_rss_mb": TARGET_PEAK_RSS_MB, "met": met},
        "machine": machine_info(),
        "django": django.get_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
