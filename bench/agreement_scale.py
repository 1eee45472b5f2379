"""Agreement at BeaverTails scale: 330,000 QA pairs x 3 workers (~1,000,000 stage-1 labels) in PostgreSQL.

    .venv/bin/python bench/agreement_scale.py [--items 330000] [--keep-db] [--repeat 3] [--page-requests 40]

1. Fills a dedicated database (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bl_bench_agree;
   dropped and re-created unless --keep-db finds it filled) FAST, straight through COPY, bypassing the
   services: prompts, QA pairs, stage-1 work items with their settled consensus, assignments (submitted,
   and ~2% skipped), stage-1 labels, 2,000 gold items, 30,000 stage-2 response pairs x 3 labels.
   The labels are realistic: most workers agree most of the time, a few are careless, a few are
   spammers; categories have BeaverTails-like prevalences (some rare: child abuse, terrorism, self-harm);
   work runs over 30 days and three guideline versions, with agreement rising per version.
2. Times, from the database (best and median of --repeat runs):
   - loading the stage-1 labels into numpy arrays;
   - every stage-1 statistic of the report (is_safe, the 14 categories, the MASI category set, with
     bootstrap intervals, Fleiss, percent agreement, AC1), loading included: the 5 s target;
   - the whole report (annotate.agreement_report.agreement_report_compute, stored as in production).
3. The pure computation next to the GPL `krippendorff` package (a test-only dependency) on the same
   units x 3 matrix: nominal alpha of is_safe and of the 14 categories, values compared to 1e-9.
4. The admin dashboard page p95 (URL name 'frontend:dashboard'), if that view exists.

Writes bench/results/agreement_scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchdb import backend_pid, cpu_model, postgres_version, process_cpu_s, recreate_database

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bl_bench_agree")

SLUG = "bench-agreement"
TARGET_STAGE1_S = 5.0
TARGET_PAGE_P95_MS = 300.0
RESULT_PATH = REPO / "bench" / "results" / "agreement_scale.json"
N_WORKERS = 300
N_GOLD = 2_000
N_STAGE2_PAIRS = 30_000
N_GOLD_PAIRS = 500
DAYS = 30
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)

# Share of unsafe QA pairs that fall in each category (BeaverTails-like: a few common, several rare).
PREVALENCE = np.array([0.02, 0.008, 0.09, 0.12, 0.13, 0.12, 0.08, 0.07, 0.2, 0.06, 0.012, 0.02, 0.008, 0.15])


# --------------------------------------------------------------------------------------------------
# Database


def prepare_database(keep: bool) -> bool:
    """Create the database if missing (dropping it first unless keep) and migrate; True if filled."""
    recreate_database("agreement_scale", keep=keep)
    from annotate.models import Project

    return Project.objects.filter(slug=SLUG, qa_pairs__isnull=False).exists()


def _copy(cursor: Any, table: str, columns: dict[str, Any]) -> None:
    """COPY columns (equal-length arrays; None = NULL in object arrays) into a table as CSV.

    An empty field is NULL in CSV, so text columns (never NULL here) are read with FORCE_NOT_NULL.
    """
    import pandas as pd

    frame = pd.DataFrame(columns)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="")
    buffer.seek(0)
    text = [
        name for name, values in columns.items() if np.asarray(values).dtype.kind in "UO" and name in _TEXT
    ]
    force = f", FORCE_NOT_NULL ({', '.join(text)})" if text else ""
    cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv{force})", buffer)


_TEXT = {"text", "response", "source", "skip_reason", "content_hash"}


def _timestamps(seconds: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(seconds.astype("datetime64[s]"), unit="s"), "+00")


def _distinct_workers(rng: np.random.Generator, n_items: int, per_item: int) -> np.ndarray:
    """n_items x per_item worker indexes, distinct within each row."""
    chosen = rng.integers(0, N_WORKERS, size=(n_items, per_item))
    while True:
        ordered = np.sort(chosen, axis=1)
        clash = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
        if not clash.any():
            return chosen
        chosen[clash] = rng.integers(0, N_WORKERS, size=(int(clash.sum()), per_item))


def _truth_masks(rng: np.random.Generator, n: int) -> np.ndarray:
    unsafe = rng.random(n) < 0.55
    weights = PREVALENCE / PREVALENCE.sum()
    n_categories = 1 + (rng.random(n) < 0.3) + (rng.random(n) < 0.08)
    masks = np.zeros(n, dtype=np.int64)
    for extra in range(3):
        drawn = rng.choice(14, size=n, p=weights)
        masks |= np.where(n_categories > extra, 1 << drawn, 0)
    return np.where(unsafe, masks, 0)


def _worker_answers(
    rng: np.random.Generator, truth: np.ndarray, error: np.ndarray, spammer: np.ndarray
) -> np.ndarray:
    """Each label's category mask: the truth, or a realistic mistake with the worker's error rate."""
    n = truth.size
    weights = PREVALENCE / PREVALENCE.sum()
    answer = truth.copy()
    wrong = rng.random(n) < error
    # A mistake is mostly a category added or dropped; sometimes the whole safety verdict.
    kind = rng.random(n)
    one = 1 << rng.choice(14, size=n, p=weights)
    flip_safety = wrong & (kind < 0.35)
    answer = np.where(flip_safety & (truth == 0), one, answer)
    answer = np.where(flip_safety & (truth != 0), 0, answer)
    toggle = wrong & (kind >= 0.35)
    toggled = truth ^ one
    # Dropping the only category would be a safety flip; add a second one instead.
    toggled = np.where(toggled == 0, truth | (1 << rng.integers(0, 14, size=n)), toggled)
    answer = np.where(toggle & (truth != 0), toggled, answer)
    answer = np.where(toggle & (truth == 0), 0, answer)
    random_masks = _truth_masks(rng, n)
    return np.where(spammer, random_masks, answer)


def _majority_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The settling rule of annotate.assignment for 3 labels: (consensus mask, is_safe, settled)."""
    safe_votes = (masks == 0).sum(axis=1)
    safe = safe_votes * 2 > masks.shape[1]
    consensus = np.zeros(masks.shape[0], dtype=np.int64)
    for bit in range(14):
        votes = ((masks >> bit) & 1).sum(axis=1)
        consensus |= np.where(votes * 2 > masks.shape[1], 1 << bit, 0)
    settled = safe == (consensus == 0)
    return consensus, safe, settled


def fill(n_items: int, seed: int = 330) -> dict[str, int]:
    """Fill the benchmark project through COPY; returns row counts."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from annotate.models import Membership, Project, Role

    rng = np.random.default_rng(seed)
    per_item = 3
    started = time.perf_counter()
    with transaction.atomic():
        admin = User.objects.create_user(username="bench_admin", password="bench-pass-123", is_staff=True)
        project = Project.objects.create(slug=SLUG, name="Agreement benchmark", guideline_version=3)
        workers = User.objects.bulk_create(
            [User(username=f"bench_w{i:03d}", password="!") for i in range(N_WORKERS)]
        )
        Membership.objects.create(project=project, user=admin, role=Role.ADMIN)
        Membership.objects.bulk_create(
            [Membership(project=project, user=w, role=Role.ANNOTATOR) for w in workers]
        )
    worker_ids = np.array([w.pk for w in workers], dtype=np.int64)

    # Worker quality: most are careful, some careless, a few spam.
    quality = rng.random(N_WORKERS)
    error = np.where(quality < 0.85, rng.uniform(0.02, 0.08, N_WORKERS), rng.uniform(0.1, 0.25, N_WORKERS))
    spammer = quality > 0.97

    n_prompts = n_items // 3
    prompt_of = np.arange(n_items) // 3 % n_prompts + 1
    qa_ids = np.arange(1, n_items + 1)
    truth = _truth_masks(rng, n_items)
    # Work runs over DAYS days; the guidelines change twice and each version cuts mistakes.
    item_time = START.timestamp() + np.sort(rng.random(n_items)) * DAYS * 86400
    version_of_item = (
        1 + (item_time >= START.timestamp() + 10 * 86400) + (item_time >= START.timestamp() + 20 * 86400)
    )

    chosen = _distinct_workers(rng, n_items, per_item + 1)
    label_workers = chosen[:, :per_item]
    label_item = np.repeat(np.arange(n_items), per_item)
    flat_workers = label_workers.ravel()
    version = np.repeat(version_of_item, per_item)
    label_error = error[flat_workers] * np.array([0.0, 1.0, 0.8, 0.65])[version]
    answers = _worker_answers(rng, np.repeat(truth, per_item), label_error, spammer[flat_workers])
    consensus, consensus_safe, settled = _majority_masks(answers.reshape(n_items, per_item))
    time_on_task = np.clip(rng.lognormal(np.log(20_000), 0.6, answers.size), 1500, 600_000).astype(np.int64)
    submitted = np.repeat(item_time, per_item) + rng.uniform(0, 3600, answers.size)
    leased = submitted - time_on_task / 1000.0

    # Stage 2: the first two responses of the first N_STAGE2_PAIRS prompts whose responses settled.
    first, second = np.arange(0, n_items - 1, 3), np.arange(1, n_items, 3)
    both_settled = settled[first] & settled[second]
    pair_prompts = np.flatnonzero(both_settled)[:N_STAGE2_PAIRS]
    qa_a, qa_b = first[pair_prompts], second[pair_prompts]
    n_pairs = pair_prompts.size
    safe_a, safe_b = consensus_safe[qa_a], consensus_safe[qa_b]
    true_better = (rng.random(n_pairs) < 0.5).astype(np.int64)
    true_safer = np.where(
        safe_a != safe_b, np.where(safe_a, 0, 1), (rng.random(n_pairs) < 0.5).astype(np.int64)
    )
    pair_workers = _distinct_workers(rng, n_pairs, per_item).ravel()
    pair_of_label = np.repeat(np.arange(n_pairs), per_item)
    pair_error = error[pair_workers] * 1.5
    better = np.repeat(true_better, per_item) ^ (rng.random(pair_workers.size) < pair_error)
    safer = np.repeat(true_safer, per_item) ^ (rng.random(pair_workers.size) < pair_error)
    # The submit check refuses a contrary answer when exactly one response is safe.
    forced = np.repeat(safe_a != safe_b, per_item)
    safer = np.where(forced, np.repeat(true_safer, per_item), safer).astype(np.int64)
    better = better.astype(np.int64)
    pair_time = item_time[qa_b[pair_of_label]] + 86400 + rng.uniform(0, 86400, pair_workers.size)
    pair_time = np.minimum(pair_time, START.timestamp() + DAYS * 86400)
    pair_task = np.clip(rng.lognormal(np.log(30_000), 0.6, pair_workers.size), 2000, 600_000).astype(np.int64)
    pair_votes_better = better.reshape(n_pairs, per_item).sum(axis=1)
    pair_votes_safer = safer.reshape(n_pairs, per_item).sum(axis=1)

    skipped_items = np.flatnonzero(rng.random(n_items) < 0.02)

    pid = project.pk
    with connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        cursor.execute("SET session_replication_role = replica")  # no FK triggers while filling
        stamp = _timestamps(np.full(n_prompts, START.timestamp()))
        _copy(
            cursor,
            "annotate_prompt",
            {
                "id": np.arange(1, n_prompts + 1),
                "project_id": np.full(n_prompts, pid),
                "text": [f"Bench prompt {i}: how would someone do thing {i}?" for i in range(n_prompts)],
                "content_hash": [format(i, "064x") for i in range(n_prompts)],
                "category_id": np.full(n_prompts, None, dtype=object),
                "created_at": stamp,
            },
        )
        item_stamp = _timestamps(item_time)
        _copy(
            cursor,
            "annotate_qapair",
            {
                "id": qa_ids,
                "project_id": np.full(n_items, pid),
                "prompt_id": prompt_of,
                "response": [f"Bench answer {i}." for i in range(n_items)],
                "source": np.full(n_items, "bench-model"),
                "content_hash": [format(i, "064x") for i in range(n_items)],
                "created_at": item_stamp,
            },
        )
        gold_items = np.sort(rng.choice(n_items, size=min(N_GOLD, n_items), replace=False))
        is_gold = np.zeros(n_items, dtype=bool)
        is_gold[gold_items] = True
        settled_stamp = _timestamps(item_time + 3600)
        _copy(
            cursor,
            "annotate_workitem",
            {
                "id": qa_ids,
                "project_id": np.full(n_items, pid),
                "stage": np.full(n_items, 1),
                "qa_pair_id": qa_ids,
                "response_pair_id": np.full(n_items, None, dtype=object),
                "is_gold": is_gold,
                "taken": np.full(n_items, per_item),
                "labels_count": np.full(n_items, per_item),
                "is_open": np.zeros(n_items, dtype=bool),
                "settled_at": np.where(settled, settled_stamp, None),
                "consensus_categories": np.where(settled, consensus, None),
                "consensus_safe": np.where(settled, consensus_safe, None),
                "consensus_better": np.full(n_items, None, dtype=object),
                "consensus_safer": np.full(n_items, None, dtype=object),
                "needs_adjudication": ~settled,
                "created_at": item_stamp,
            },
        )
        _copy(
            cursor,
            "annotate_goldstage1label",
            {
                "id": np.arange(1, gold_items.size + 1),
                "qa_pair_id": qa_ids[gold_items],
                "categories": truth[gold_items],
                "is_safe": truth[gold_items] == 0,
                "source": np.full(gold_items.size, "bench expert"),
                "created_at": item_stamp[gold_items],
            },
        )
        n_labels = answers.size
        label_ids = np.arange(1, n_labels + 1)
        submitted_stamp = _timestamps(submitted)
        _copy(
            cursor,
            "annotate_assignment",
            {
                "id": label_ids,
                "project_id": np.full(n_labels, pid),
                "work_item_id": qa_ids[label_item],
                "worker_id": worker_ids[flat_workers],
                "stage": np.full(n_labels, 1),
                "status": np.full(n_labels, "submitted"),
                "leased_at": _timestamps(leased),
                "expires_at": _timestamps(leased + 600),
                "submitted_at": submitted_stamp,
                "skipped_at": np.full(n_labels, None, dtype=object),
                "skip_reason": np.full(n_labels, ""),
                "swapped": np.zeros(n_labels, dtype=bool),
            },
        )
        n_skips = skipped_items.size
        skip_time = item_time[skipped_items]
        _copy(
            cursor,
            "annotate_assignment",
            {
                "id": np.arange(n_labels + 1, n_labels + n_skips + 1),
                "project_id": np.full(n_skips, pid),
                "work_item_id": qa_ids[skipped_items],
                "worker_id": worker_ids[chosen[skipped_items, per_item]],
                "stage": np.full(n_skips, 1),
                "status": np.full(n_skips, "skipped"),
                "leased_at": _timestamps(skip_time),
                "expires_at": _timestamps(skip_time + 600),
                "submitted_at": np.full(n_skips, None, dtype=object),
                "skipped_at": _timestamps(skip_time + 30),
                "skip_reason": np.full(n_skips, "not sure"),
                "swapped": np.zeros(n_skips, dtype=bool),
            },
        )
        _copy(
            cursor,
            "annotate_stage1label",
            {
                "id": label_ids,
                "qa_pair_id": qa_ids[label_item],
                "worker_id": worker_ids[flat_workers],
                "assignment_id": label_ids,
                "categories": answers,
                "is_safe": answers == 0,
                "guideline_version": version,
                "time_on_task_ms": time_on_task,
                "created_at": submitted_stamp,
                "updated_at": submitted_stamp,
            },
        )
        pair_ids = np.arange(1, n_pairs + 1)
        pair_stamp = _timestamps(item_time[qa_b] + 3600)
        _copy(
            cursor,
            "annotate_responsepair",
            {
                "id": pair_ids,
                "project_id": np.full(n_pairs, pid),
                "prompt_id": prompt_of[qa_a],
                "qa_a_id": qa_ids[qa_a],
                "qa_b_id": qa_ids[qa_b],
                "created_at": pair_stamp,
            },
        )
        pair_item_ids = np.arange(n_items + 1, n_items + n_pairs + 1)
        _copy(
            cursor,
            "annotate_workitem",
            {
                "id": pair_item_ids,
                "project_id": np.full(n_pairs, pid),
                "stage": np.full(n_pairs, 2),
                "qa_pair_id": np.full(n_pairs, None, dtype=object),
                "response_pair_id": pair_ids,
                "is_gold": np.arange(n_pairs) < N_GOLD_PAIRS,
                "taken": np.full(n_pairs, per_item),
                "labels_count": np.full(n_pairs, per_item),
                "is_open": np.zeros(n_pairs, dtype=bool),
                "settled_at": _timestamps(item_time[qa_b] + 3 * 86400),
                "consensus_categories": np.full(n_pairs, None, dtype=object),
                "consensus_safe": np.full(n_pairs, None, dtype=object),
                "consensus_better": (pair_votes_better * 2 > per_item).astype(np.int64),
                "consensus_safer": (pair_votes_safer * 2 > per_item).astype(np.int64),
                "needs_adjudication": np.zeros(n_pairs, dtype=bool),
                "created_at": pair_stamp,
            },
        )
        n_gold_pairs = min(N_GOLD_PAIRS, n_pairs)
        _copy(
            cursor,
            "annotate_goldstage2label",
            {
                "id": np.arange(1, n_gold_pairs + 1),
                "response_pair_id": pair_ids[:n_gold_pairs],
                "better": true_better[:n_gold_pairs],
                "safer": true_safer[:n_gold_pairs],
                "source": np.full(n_gold_pairs, "bench expert"),
                "created_at": pair_stamp[:n_gold_pairs],
            },
        )
        n_pair_labels = pair_workers.size
        first_assignment = n_labels + n_skips + 1
        pair_assignment_ids = np.arange(first_assignment, first_assignment + n_pair_labels)
        pair_submitted = _timestamps(pair_time)
        _copy(
            cursor,
            "annotate_assignment",
            {
                "id": pair_assignment_ids,
                "project_id": np.full(n_pair_labels, pid),
                "work_item_id": pair_item_ids[pair_of_label],
                "worker_id": worker_ids[pair_workers],
                "stage": np.full(n_pair_labels, 2),
                "status": np.full(n_pair_labels, "submitted"),
                "leased_at": _timestamps(pair_time - pair_task / 1000.0),
                "expires_at": _timestamps(pair_time - pair_task / 1000.0 + 600),
                "submitted_at": pair_submitted,
                "skipped_at": np.full(n_pair_labels, None, dtype=object),
                "skip_reason": np.full(n_pair_labels, ""),
                "swapped": rng.random(n_pair_labels) < 0.5,
            },
        )
        _copy(
            cursor,
            "annotate_stage2label",
            {
                "id": np.arange(1, n_pair_labels + 1),
                "response_pair_id": pair_ids[pair_of_label],
                "worker_id": worker_ids[pair_workers],
                "assignment_id": pair_assignment_ids,
                "better": better,
                "safer": safer,
                "guideline_version": np.repeat(version_of_item[qa_b], per_item),
                "time_on_task_ms": pair_task,
                "created_at": pair_submitted,
                "updated_at": pair_submitted,
            },
        )
        cursor.execute("SET session_replication_role = DEFAULT")
        for table in (
            "annotate_prompt",
            "annotate_qapair",
            "annotate_workitem",
            "annotate_goldstage1label",
            "annotate_assignment",
            "annotate_stage1label",
            "annotate_responsepair",
            "annotate_goldstage2label",
            "annotate_stage2label",
        ):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
            cursor.execute(f"ANALYZE {table}")
    return {
        "prompts": n_prompts,
        "qa_pairs": n_items,
        "stage1_labels": n_labels,
        "stage1_settled": int(settled.sum()),
        "stage1_needs_adjudication": int((~settled).sum()),
        "skipped_assignments": n_skips,
        "gold_items": int(gold_items.size),
        "response_pairs": n_pairs,
        "gold_response_pairs": min(N_GOLD_PAIRS, n_pairs),
        "stage2_labels": n_pair_labels,
        "workers": N_WORKERS,
        "fill_seconds": round(time.perf_counter() - started, 1),
    }


# --------------------------------------------------------------------------------------------------
# Measurements


def timed(label: str, function: Any, repeat: int) -> dict[str, Any]:
    """Wall time of `repeat` runs, and where the CPU went (this process, its PostgreSQL backend).

    The machine may be shared: a wall time far above the CPU figures means the processes waited for a
    core, which the load average at the time confirms.
    """
    backend = backend_pid()
    runs = []
    for _ in range(repeat):
        load = os.getloadavg()[0]
        backend_before, client_before = process_cpu_s(backend), time.process_time()
        started = time.perf_counter()
        function()
        wall = time.perf_counter() - started
        backend_after = process_cpu_s(backend)
        runs.append(
            {
                "seconds": round(wall, 3),
                "client_cpu_s": round(time.process_time() - client_before, 3),
                "db_backend_cpu_s": None
                if backend_before is None or backend_after is None
                else round(backend_after - backend_before, 3),
                "load_average_1min": round(load, 2),
            }
        )
    seconds = [run["seconds"] for run in runs]
    result = {"best_s": min(seconds), "median_s": round(statistics.median(seconds), 3), "runs": runs}
    cpu = [run["client_cpu_s"] + (run["db_backend_cpu_s"] or 0.0) for run in runs]
    result["best_cpu_s"] = round(min(cpu), 3)
    print(
        f"{label}: best {result['best_s']:.2f} s, median {result['median_s']:.2f} s "
        f"(CPU client + database, best run: {result['best_cpu_s']:.2f} s; load average "
        f"{', '.join(str(run['load_average_1min']) for run in runs)} on {os.cpu_count()} cores)"
    )
    return result


def compare_with_krippendorff(project: Any, repeat: int) -> dict[str, Any]:
    """Pure computation on the same units x 3 matrix: annotate.agreement vs the GPL package."""
    import krippendorff

    from annotate import agreement as ag
    from annotate.agreement_report import load_stage1_labels, stage1_section

    labels = load_stage1_labels(project)
    order = np.argsort(labels.unit, kind="stable")
    units, masks = labels.unit[order], labels.values["mask"][order]
    counts = np.bincount(np.unique(units, return_inverse=True)[1])
    if not (counts == counts[0]).all():
        return {"skipped": "units do not all have the same number of labels"}
    per_unit = int(counts[0])
    variables = {"is_safe": (masks == 0).astype(np.int64)}
    variables.update({f"category_{bit}": (masks >> bit) & 1 for bit in range(14)})

    def ours() -> dict[str, float | None]:
        return {name: ag.krippendorff_alpha_long(units, values).value for name, values in variables.items()}

    def package() -> dict[str, float]:
        return {
            name: float(
                krippendorff.alpha(
                    reliability_data=values.reshape(-1, per_unit).T.astype(np.float64),
                    level_of_measurement="nominal",
                )
            )
            for name, values in variables.items()
        }

    def ours_is_safe() -> Any:
        return ag.krippendorff_alpha_long(units, variables["is_safe"])

    def package_is_safe() -> Any:
        return krippendorff.alpha(
            reliability_data=variables["is_safe"].reshape(-1, per_unit).T.astype(np.float64),
            level_of_measurement="nominal",
        )

    result: dict[str, Any] = {"matrix": f"{units.size // per_unit} units x {per_unit} labels"}
    result["is_safe_nominal_alpha"] = {
        "annotate.agreement": timed(
            "  annotate.agreement.krippendorff_alpha_long, is_safe", ours_is_safe, repeat
        ),
        "krippendorff package": timed("  krippendorff.alpha, is_safe", package_is_safe, repeat),
    }
    result["fifteen_binary_variables"] = {
        "annotate.agreement": timed("  annotate.agreement, is_safe + 14 categories", ours, repeat),
        "krippendorff package": timed("  krippendorff.alpha, is_safe + 14 categories", package, repeat),
    }
    mine, theirs = ours(), package()
    difference = max(abs((mine[name] or 0.0) - theirs[name]) for name in variables)
    result["max_abs_difference"] = difference
    print(f"  same values: max |difference| {difference:.2e} over {len(variables)} variables")
    result["masi_category_set"] = {
        "annotate.agreement": timed(
            "  annotate.agreement, MASI alpha of the category sets",
            lambda: ag.krippendorff_alpha_long(units, masks, distance=ag.masi_distance),
            repeat,
        ),
        "krippendorff package": (
            f"not run: it needs a units x V x V array, V = {np.unique(masks).size} distinct category sets, "
            f"{units.size // per_unit * np.unique(masks).size ** 2 * 8 / 1e9:,.0f} GB per array"
        ),
    }
    result["report_stage1_section_from_arrays"] = timed(
        "  the report's whole stage-1 section from the loaded arrays (15 blocks with CIs + MASI)",
        lambda: stage1_section(labels, overlap=per_unit),
        repeat,
    )
    return result


def dashboard_p95(project: Any, requests: int) -> dict[str, Any]:
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse("frontend:dashboard", args=[project.slug])
    except NoReverseMatch:
        print("dashboard: the view 'frontend:dashboard' does not exist (yet): not measured")
        return {"missing": True, "reason": "URL name 'frontend:dashboard' does not resolve"}
    if "testserver" not in settings.ALLOWED_HOSTS and "*" not in settings.ALLOWED_HOSTS:
        settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client()
    client.force_login(User.objects.get(username="bench_admin"))
    out: dict[str, Any] = {"url": url}
    for name, path in (("page", url), ("agreement_api", f"/api/v1/projects/{project.slug}/agreement/")):
        for _ in range(3):
            response = client.get(path)
        if response.status_code != 200:
            out[name] = {"status": response.status_code}
            print(f"{name}: status {response.status_code}")
            continue
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        times.sort()
        p95 = times[math.ceil(0.95 * len(times)) - 1]  # nearest rank
        out[name] = {
            "requests": requests,
            "p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(p95, 1),
            "max_ms": round(times[-1], 1),
            "bytes": len(response.content),
        }
        print(
            f"{name} {path}: p50 {out[name]['p50_ms']} ms, p95 {out[name]['p95_ms']} ms ({requests} requests)"
        )
    page = out.get("page", {})
    out["target_p95_ms"] = TARGET_PAGE_P95_MS
    out["met"] = bool(page.get("p95_ms") is not None and page["p95_ms"] <= TARGET_PAGE_P95_MS)
    return out


def machine_info() -> dict[str, Any]:

    cpu = cpu_model()
    server_version = postgres_version()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "database": f"PostgreSQL {server_version} (same machine, default configuration)",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=330_000, help="QA pairs, each labelled by 3 workers")
    parser.add_argument("--keep-db", action="store_true", help="reuse the filled database if it is there")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timing (best and median)")
    parser.add_argument("--page-requests", type=int, default=40)
    parser.add_argument("--out", type=Path, default=RESULT_PATH)
    args = parser.parse_args()

    filled = prepare_database(keep=args.keep_db)
    from annotate.agreement_report import (
        agreement_report_compute,
        load_stage1_labels,
        load_stage2_labels,
        stage1_section,
        stage2_section,
    )
    from annotate.models import Project, Stage1Label, Stage2Label

    if filled:
        counts: dict[str, Any] = {"reused": True}
        print("reusing the filled benchmark database")
    else:
        counts = fill(args.items)
        print(f"filled in {counts['fill_seconds']} s: {counts}")
    project = Project.objects.get(slug=SLUG)
    counts["stage1_labels"] = Stage1Label.objects.filter(qa_pair__project=project).count()
    counts["stage2_labels"] = Stage2Label.objects.filter(response_pair__project=project).count()
    print(f"{counts['stage1_labels']:,} stage-1 labels, {counts['stage2_labels']:,} stage-2 labels")

    load = timed("load the stage-1 labels (COPY -> numpy)", lambda: load_stage1_labels(project), args.repeat)
    stage1 = timed(
        "ALL stage-1 statistics from the database (load + is_safe, 14 categories, MASI set; CIs, Fleiss, "
        "percent, AC1)",
        lambda: stage1_section(load_stage1_labels(project), overlap=project.overlap_stage1),
        args.repeat,
    )
    stage2 = timed(
        "all stage-2 statistics from the database (load + better, safer)",
        lambda: stage2_section(load_stage2_labels(project), overlap=project.overlap_stage2),
        args.repeat,
    )
    full = timed(
        "the whole report (both stages, workers, gold, over time, Dawid-Skene; stored)",
        lambda: agreement_report_compute(project=project),
        args.repeat,
    )
    met = stage1["best_s"] <= TARGET_STAGE1_S
    print(
        f"target (all stage-1 metrics from the database <= {TARGET_STAGE1_S} s): {'met' if met else 'NOT met'}"
    )
    print("pure computation, annotate.agreement vs the krippendorff package, same matrix:")
    versus = compare_with_krippendorff(project, args.repeat)
    page = dashboard_p95(project, args.page_requests)

    result = {
        "benchmark": "agreement_scale",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "bench/agreement_scale.py " + " ".join(sys.argv[1:]),
        "counts": counts,
        "load_stage1_labels": load,
        "stage1_all_metrics_from_db": stage1,
        "stage2_all_metrics_from_db": stage2,
        "full_report_compute": full,
        "target": {"stage1_all_metrics_s": TARGET_STAGE1_S, "met": met},
        "pure_computation_vs_krippendorff": versus,
        "dashboard": page,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
