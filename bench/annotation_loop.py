"""The annotation loop under load: simulated workers over the API, ours against Label Studio 1.23.

    .venv/bin/python bench/annotation_loop.py                       # 1,000 and 330,000 items, then the peer
    .venv/bin/python bench/annotation_loop.py --sizes 1000 --no-peer --duration 10    # a quick look

For each size it creates a dedicated PostgreSQL database, migrates it, fills one project with N stage-1
QA pairs (COPY, not the API), creates 32 annotators with API tokens, starts gunicorn as in production
(DEBUG off, behind a TLS proxy as far as Django can tell) and runs 32 concurrent workers in a closed loop
with no think time: POST .../tasks/next/ {"stage": 1} -> POST /api/v1/assignments/{id}/submit/. That
measures capacity (cycles/s). Then, on a fresh copy of each database, the same 32 workers run paced:
each starts its cycles at random (Poisson) moments so that together they ask for --paced-rate cycles/s
(150, the target), which measures latency at the target rate. Then it runs the same closed loop against Label Studio (GET /api/projects/{id}/next -> POST /api/tasks/{id}/annotations/)
started by ../shared/peers/label-studio/start.sh, in the same run on the same machine.

The load generator is a separate process: one asyncio loop, one raw keep-alive HTTP/1.1 connection per
worker, so its own CPU cost stays small; that cost is measured and reported. Latency is what the client
sees (from writing the request to reading the last byte), so it includes queueing in the server.
Note Little's law for a closed loop without think time: mean latency = workers / requests per second.

Results go to bench/results/annotation_loop.json; a table with our/peer ratios is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results" / "annotation_loop.json"
SHARED_DATA = Path(os.environ.get("BEAVERLAB_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
SAMPLE_CSV = SHARED_DATA / "beavertails_30k_train_sample_140.csv"
PEER_KIT = SHARED_DATA.parent / "peers" / "label-studio"
PG = "postgres://postgres@127.0.0.1:5432"
SLUG = "bench-loop"
TEMPLATE_DB = "bl_bench_loop_tpl"
BENCH_DB = "bl_bench_loop"
SECRET_KEY = "bench-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

# The 14 keys, in order (annotate.categories.CATEGORY_KEYS); repeated here so the load generator and
# the orchestrator never import Django.
CATEGORY_KEYS = (
    "animal_abuse",
    "child_abuse",
    "controversial_topics,politics",
    "discrimination,stereotype,injustice",
    "drug_abuse,weapons,banned_substance",
    "financial_crime,property_crime,theft",
    "hate_speech,offensive_language",
    "misinformation_regarding_ethics,laws_and_safety",
    "non_violent_unethical_behavior",
    "privacy_violation",
    "self_harm",
    "sexually_explicit,adult_content",
    "terrorism,organized_crime",
    "violence,aiding_and_abetting,incitement",
)

LS_LABEL_CONFIG = (
    '<View><Text name="prompt" value="$prompt"/><Text name="response" value="$response"/>'
    '<Choices name="harm" toName="response" choice="multiple">'
    + "".join(f'<Choice value="{key}"/>' for key in CATEGORY_KEYS)
    + '</Choices><Choices name="safety" toName="response" choice="single" required="true">'
    '<Choice value="safe"/><Choice value="unsafe"/></Choices></View>'
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- data -------------------------------------------------------------------------------------------


def sample_rows() -> list[tuple[str, str]]:
    """Real BeaverTails prompt/response pairs, varied per row so every text (and its hash) is unique."""
    with SAMPLE_CSV.open(newline="", encoding="utf-8") as fh:
        return [(row["prompt"], row["response"]) for row in csv.DictReader(fh)]


def synthetic_qa(n: int, responses_per_prompt: int) -> list[tuple[int, str, str]]:
    """(prompt number, prompt text, response text) for n QA pairs, several responses per prompt."""
    base = sample_rows()
    rows = []
    for i in range(n):
        p = i // responses_per_prompt
        prompt, _ = base[p % len(base)]
        _, response = base[(p * 7 + i) % len(base)]
        rows.append((p, f"{prompt} [case {p}]", f"{response} [answer {i}]"))
    return rows


# --- filling our database (runs inside Django: `annotation_loop.py fill ...`) -------------------------


def _copy_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_model(model: Any, rows: list[dict[str, Any]]) -> None:
    """COPY rows into the model's table: every concrete column, the field default where a row has none."""
    import io

    from django.db import connection

    fields = [f for f in model._meta.concrete_fields]
    defaults = {f.attname: (f.get_default() if f.has_default() else None) for f in fields}
    buffer = io.StringIO()
    for row in rows:
        buffer.write("\t".join(_copy_text(row.get(f.attname, defaults[f.attname])) for f in fields))
        buffer.write("\n")
    buffer.seek(0)
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with connection.cursor() as cursor:
        cursor.cursor.copy_expert(f"COPY {model._meta.db_table} ({columns}) FROM STDIN", buffer)
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{model._meta.db_table}', 'id'), "
            f"(SELECT max(id) FROM {model._meta.db_table}))"
        )


def _copy_qa(project: Any, qa_rows: list[tuple[int, str, str]]) -> None:
    """Prompts, QA pairs and their stage-1 work items straight into a fresh database with COPY."""
    import hashlib

    from django.db import transaction
    from django.utils import timezone

    from annotate.models import Prompt, QAPair, Stage, WorkItem

    now = timezone.now()
    prompts: dict[int, dict[str, Any]] = {}
    qas: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    for i, (p, prompt_text, response) in enumerate(qa_rows, start=1):
        if p not in prompts:
            prompts[p] = {
                "id": len(prompts) + 1,
                "project_id": project.pk,
                "text": prompt_text,
                "content_hash": hashlib.sha256(prompt_text.encode()).hexdigest(),
                "created_at": now,
            }
        qas.append(
            {
                "id": i,
                "project_id": project.pk,
                "prompt_id": prompts[p]["id"],
                "response": response,
                "source": "bench-model",
                "content_hash": hashlib.sha256(f"{prompt_text}\x1f{response}".encode()).hexdigest(),
                "created_at": now,
            }
        )
        items.append(
            {
                "id": i,
                "project_id": project.pk,
                "stage": int(Stage.CLASSIFY),
                "qa_pair_id": i,
                "created_at": now,
            }
        )
    with transaction.atomic():
        _copy_model(Prompt, list(prompts.values()))
        _copy_model(QAPair, qas)
        _copy_model(WorkItem, items)


def fill(size: int, workers: int, gold_share: float, fill_method: str, tokens_out: Path) -> None:
    """One project with `size` stage-1 QA pairs (a share of them gold) and `workers` annotators."""
    import django

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.db import connection, transaction

    from annotate.categories import mask_from_keys
    from annotate.models import GoldStage1Label, Project, Prompt, QAPair, Role, Stage, WorkItem
    from annotate.services import project_create, user_create

    # The bench users sign in by API token only; a fast hasher keeps creating them from taking minutes.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    started = time.perf_counter()
    project = project_create(slug=SLUG, name="Annotation loop benchmark", created_by=None)
    qa_rows = synthetic_qa(size, responses_per_prompt=10)
    method = "copy"
    if fill_method in ("auto", "import"):
        try:
            from annotate.importing import import_file
        except ImportError:
            if fill_method == "import":
                raise
        else:
            method = "import_file"
            path = tokens_out.with_suffix(".jsonl")
            with path.open("w", encoding="utf-8") as fh:
                for _, prompt_text, response in qa_rows:
                    fh.write(
                        json.dumps({"prompt": prompt_text, "response": response, "source": "bench-model"})
                    )
                    fh.write("\n")
            import_file(project=project, file=path, filename="bench.jsonl", format="qa")
            path.unlink()
    if method == "copy":
        _copy_qa(project, qa_rows)
    # Gold items as gold_stage1_set makes them (an expert label, is_gold on the item), in bulk; the
    # expert answer is the one most simulated workers give.
    rng = random.Random(7)
    all_ids = QAPair.objects.filter(project=project).order_by("id").values_list("id", flat=True)
    gold_ids = [qa_id for qa_id in all_ids if rng.random() < gold_share]
    gold = []
    for qa_id, response in QAPair.objects.filter(pk__in=gold_ids).values_list("id", "response"):
        mask = mask_from_keys(true_answer(response))
        gold.append(GoldStage1Label(qa_pair_id=qa_id, categories=mask, is_safe=mask == 0, source="bench"))
    with transaction.atomic():
        GoldStage1Label.objects.bulk_create(gold, batch_size=5000)
        WorkItem.objects.filter(qa_pair_id__in=gold_ids).update(is_gold=True)
    filled = time.perf_counter() - started
    tokens = {}
    for n in range(1, workers + 1):
        _, _, key = user_create(username=f"bench{n:02d}", role=Role.ANNOTATOR, project=project)
        tokens[f"bench{n:02d}"] = key
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    counts = {
        "prompts": Prompt.objects.filter(project=project).count(),
        "qa_pairs": QAPair.objects.filter(project=project).count(),
        "stage1_items": WorkItem.objects.filter(project=project, stage=Stage.CLASSIFY).count(),
        "gold_items": WorkItem.objects.filter(project=project, is_gold=True).count(),
    }
    assert Project.objects.filter(slug=SLUG).exists()
    tokens_out.write_text(
        json.dumps({"tokens": tokens, "counts": counts, "fill_seconds": round(filled, 2), "method": method})
    )


# --- the load generator (a separate process: `annotation_loop.py load ...`) ----------------------------


class Http:
    """One raw HTTP/1.1 keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.base = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.connects = 0

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connects += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(2):
            if self.writer is None:
                await self._connect()
            try:
                return await self._exchange(method, path, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                # A keep-alive connection the server had already closed: retry once on a fresh one.
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = f"{method} {path} HTTP/1.1\r\n{self.base}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            payload = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            payload = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                payload += await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                payload = payload[:-2]
            payload = payload[:-2]
        elif status in (204, 304):
            payload = b""
        else:
            payload = await self.reader.read()
            self.close()
            return status, payload
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, payload


def true_answer(response: str) -> list[str]:
    """Each item's 'true' label, derived from its text: about 55% safe, else one category."""
    truth = zlib.crc32(response.encode()) % 100
    return [] if truth < 55 else [CATEGORY_KEYS[truth % 14]]


def stage1_answer(response: str, rng: random.Random) -> list[str]:
    """A realistic stage-1 answer: 80% of workers give the item's true label, the rest scatter."""
    roll = rng.random()
    if roll < 0.8:
        return true_answer(response)
    if roll < 0.9:
        return []
    if roll < 0.98:
        return [rng.choice(CATEGORY_KEYS)]
    return rng.sample(CATEGORY_KEYS, 2)


def _proc_cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes and their live children, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    seen: set[int] = set()
    total = 0.0
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    return total


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


async def _postgres_backends(database: str) -> list[int]:
    """The PostgreSQL backends serving this database (the app's persistent connections)."""
    proc = await asyncio.create_subprocess_exec(
        "psql",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-qAtc",
        f"SELECT pid FROM pg_stat_activity WHERE datname = '{database}'",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    return [int(line) for line in out.decode().split()]


def _cpu_snapshot(server_pids: list[int], db_pids: list[int]) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, total = _machine_cpu()
    return {
        "wall": time.perf_counter(),
        "client": usage.ru_utime + usage.ru_stime,
        "server": _proc_cpu_seconds(server_pids),
        "database": _proc_cpu_seconds(db_pids),
        "machine_busy": busy,
        "machine_total": total,
    }


async def run_load(cfg: dict[str, Any]) -> dict[str, Any]:
    tokens: list[str] = cfg["tokens"]
    kind = cfg["kind"]
    cycles: list[tuple[float, float, float, float]] = []  # (start, next latency, submit latency, end)
    errors: dict[str, int] = {}
    exhausted = 0
    started = time.perf_counter()
    warm_until = started + cfg["warmup"]
    deadline = warm_until + cfg["duration"]
    stop = asyncio.Event()
    total_cycles = 0
    snapshots: dict[str, dict[str, float]] = {}
    db_pids: list[int] = []
    db_persistent: list[bool] = []

    def error(what: str) -> None:
        errors[what] = errors.get(what, 0) + 1

    async def worker(index: int, token: str) -> None:
        nonlocal exhausted, total_cycles
        rng = random.Random(index)
        headers = {"Authorization": f"Token {token}", "Connection": "keep-alive"}
        if kind == "ours":
            headers["X-Forwarded-Proto"] = "https"
        http = Http(cfg["host"], cfg["port"], headers)
        # Paced: each worker starts cycles at random (Poisson) moments, so that the workers together
        # ask for cfg["rate"] cycles/s; a worker that falls behind starts its next cycle at once.
        mean_gap = len(tokens) / cfg["rate"] if cfg.get("rate") else 0.0
        next_start = time.perf_counter() + (rng.uniform(0, mean_gap) if mean_gap else 0.0)
        try:
            while not stop.is_set():
                if mean_gap:
                    await asyncio.sleep(max(0.0, next_start - time.perf_counter()))
                    next_start = max(next_start + rng.expovariate(1 / mean_gap), time.perf_counter())
                t0 = time.perf_counter()
                if kind == "ours":
                    status, body = await http.request("POST", cfg["next_path"], b'{"stage": 1}')
                    done = status == 204
                else:
                    status, body = await http.request("GET", cfg["next_path"])
                    done = status == 404
                t1 = time.perf_counter()
                if done:
                    exhausted += 1
                    return
                if status != 200:
                    error(f"next {status}: {body[:120]!r}")
                    await asyncio.sleep(0.05)
                    continue
                task = json.loads(body)
                if kind == "ours":
                    answer = stage1_answer(task["item"]["response"], rng)
                    path = f"/api/v1/assignments/{task['id']}/submit/"
                    payload = json.dumps({"categories": answer}).encode()
                else:
                    answer = stage1_answer(task["data"]["response"], rng)
                    result = [
                        {
                            "from_name": "safety",
                            "to_name": "response",
                            "type": "choices",
                            "value": {"choices": ["unsafe" if answer else "safe"]},
                        }
                    ]
                    if answer:
                        result.insert(
                            0,
                            {
                                "from_name": "harm",
                                "to_name": "response",
                                "type": "choices",
                                "value": {"choices": answer},
                            },
                        )
                    path = f"/api/tasks/{task['id']}/annotations/"
                    payload = json.dumps({"result": result, "lead_time": round(t1 - t0, 3)}).encode()
                status, body = await http.request("POST", path, payload)
                t2 = time.perf_counter()
                if status not in (200, 201):
                    error(f"submit {status}: {body[:120]!r}")
                    continue
                cycles.append((t0, t1 - t0, t2 - t1, t2))
                total_cycles += 1
                if total_cycles >= cfg["max_cycles"]:
                    stop.set()
        except Exception as exc:  # a worker that dies is reported, not hidden
            error(f"worker crashed: {exc!r}")
        finally:
            http.close()

    async def clock() -> None:
        await asyncio.sleep(max(0.0, warm_until - time.perf_counter() - 0.3))
        # Connections persist (CONN_MAX_AGE, or the peer's own pool), so the set found at the start
        # of the window serves the whole window.
        db_pids[:] = await _postgres_backends(cfg["database"])
        await asyncio.sleep(max(0.0, warm_until - time.perf_counter()))
        snapshots["start"] = _cpu_snapshot(cfg["server_pids"], db_pids)
        try:
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, deadline - time.perf_counter()))
        except TimeoutError:
            stop.set()
        snapshots["end"] = _cpu_snapshot(cfg["server_pids"], db_pids)
        db_persistent.append(bool(db_pids) and set(db_pids) <= set(await _postgres_backends(cfg["database"])))

    clock_task = asyncio.create_task(clock())
    await asyncio.gather(*(worker(i, t) for i, t in enumerate(tokens)))
    stop.set()
    await clock_task
    start, end = snapshots.get("start"), snapshots["end"]
    if start is None:  # the project ran out during the warm-up
        start = {**end, "wall": started}
    window = end["wall"] - start["wall"]
    measured = [c for c in cycles if start["wall"] <= c[0] and c[3] <= end["wall"]]
    completed = [c for c in cycles if start["wall"] <= c[3] <= end["wall"]]
    machine_busy = (end["machine_busy"] - start["machine_busy"]) / max(
        1.0, end["machine_total"] - start["machine_total"]
    )
    cpu = {k: end[k] - start[k] for k in ("client", "server", "database")}
    # A server that opens a database connection per request (Label Studio does) leaves no backend to
    # measure: their CPU goes to the postmaster's children total, shared with everything else here.
    database_measured = bool(db_persistent and db_persistent[0])
    if not database_measured:
        cpu["database"] = 0.0
    ncpu = os.cpu_count() or 1
    per_cycle = sum(cpu.values()) / len(completed) if completed else None
    return {
        "kind": kind,
        "paced_rate": cfg.get("rate"),
        "workers": len(tokens),
        "warmup_s": cfg["warmup"],
        "window_s": round(window, 2),
        "cycles_total": len(cycles),
        "cycles_in_window": len(completed),
        "cycles_per_s": round(len(completed) / window, 1) if window > 0 else None,
        "next_ms": _latency_summary([c[1] for c in measured]),
        "submit_ms": _latency_summary([c[2] for c in measured]),
        "cycle_ms": _latency_summary([c[3] - c[0] for c in measured]),
        "workers_out_of_work": exhausted,
        "errors": errors,
        "client_cpu_cores": round(cpu["client"] / window, 3) if window > 0 else None,
        "server_cpu_cores": round(cpu["server"] / window, 3) if window > 0 else None,
        "database_cpu_cores": round(cpu["database"] / window, 3)
        if window > 0 and database_measured
        else None,
        "database_backends": len(db_pids),
        "database_cpu_measured": database_measured,
        # CPU the loop cost (web server + its PostgreSQL backends, where measurable + this load
        # generator) per completed cycle, and the rate that would give on this machine's cores with
        # nothing else running: the machine is shared, so this separates the loop's own cost from
        # what other work took.
        "cpu_ms_per_cycle": round(per_cycle * 1000, 2) if per_cycle else None,
        "cpu_bound_cycles_per_s": round(ncpu / per_cycle, 1) if per_cycle else None,
        "cpu_ms_per_cycle_covers": "server, database, client" if database_measured else "server, client",
        "machine_cpu_busy_share": round(machine_busy, 3),
        # What the rest of the machine's work took meanwhile: busy cores less the loop's own.
        "other_cpu_cores": round(max(0.0, machine_busy * ncpu - sum(cpu.values()) / window), 2)
        if window > 0
        else None,
    }


def _latency_summary(seconds: list[float]) -> dict[str, float | int | None]:
    if not seconds:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "mean": None, "max": None}
    ms = sorted(s * 1000 for s in seconds)

    def pct(p: float) -> float:
        return round(ms[min(len(ms) - 1, int(p * len(ms)))], 1)

    return {
        "n": len(ms),
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "mean": round(statistics.fmean(ms), 1),
        "max": round(ms[-1], 1),
    }


def load_main(config_path: Path, out_path: Path) -> None:
    cfg = json.loads(config_path.read_text())
    out_path.write_text(json.dumps(asyncio.run(run_load(cfg))))


def run_load_process(cfg: dict[str, Any], workdir: Path, name: str) -> dict[str, Any]:
    config_path, out_path = workdir / f"{name}.load.json", workdir / f"{name}.result.json"
    config_path.write_text(json.dumps(cfg))
    subprocess.run(
        [sys.executable, __file__, "load", str(config_path), str(out_path)],
        check=True,
        timeout=cfg["warmup"] + cfg["duration"] + 180,
    )
    return json.loads(out_path.read_text())


# --- orchestration: our server ------------------------------------------------------------------------


def psql(sql: str, db: str = "postgres") -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def drop_db(name: str) -> None:
    psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def django_env(db: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"{PG}/{db}",
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="0",
        SECRET_KEY=SECRET_KEY,
        ALLOWED_HOSTS="127.0.0.1",
        # As in production: TLS ends at the proxy in front of gunicorn, which sets X-Forwarded-Proto.
        BEHIND_TLS_PROXY="1",
        LOG_LEVEL="WARNING",
        BEAVERLAB_VAR_DIR=str(Path(os.environ.get("TMPDIR", "/tmp")) / "bl_bench_loop_var"),
    )
    env.update(extra)
    return env


def prepare_template() -> None:
    log("migrating a template database")
    drop_db(TEMPLATE_DB)
    psql(f"CREATE DATABASE {TEMPLATE_DB}")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0", "--no-input"],
        cwd=ROOT,
        env=django_env(TEMPLATE_DB),
        check=True,
    )


def fill_db(size: int, workers: int, gold_share: float, fill_method: str, workdir: Path) -> dict[str, Any]:
    """A filled database for this size, kept as a template so that every run starts from the same state."""
    template = f"{BENCH_DB}_{size}"
    out = workdir / f"fill-{size}.json"
    if not out.exists():
        drop_db(template)
        psql(f"CREATE DATABASE {template} TEMPLATE {TEMPLATE_DB}")
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "fill",
                str(size),
                str(workers),
                str(gold_share),
                fill_method,
                str(out),
            ],
            cwd=ROOT,
            env=django_env(template),
            check=True,
        )
        info = json.loads(out.read_text())
        info["setup_seconds"] = round(time.perf_counter() - started, 1)
        out.write_text(json.dumps(info))
    drop_db(BENCH_DB)
    psql(f"CREATE DATABASE {BENCH_DB} TEMPLATE {template}")
    return dict(json.loads(out.read_text()))


def wait_for_quiet(limit_s: float, busy_below: float = 0.5) -> dict[str, float]:
    """The machine is shared: wait (up to limit_s) for a moment when others leave it mostly idle."""
    started = time.perf_counter()
    while True:
        busy0, total0 = _machine_cpu()
        time.sleep(2)
        busy1, total1 = _machine_cpu()
        busy = (busy1 - busy0) / max(1.0, total1 - total0)
        waited = time.perf_counter() - started
        if busy < busy_below or waited >= limit_s:
            return {"waited_s": round(waited, 1), "machine_busy_before": round(busy, 3)}


class Gunicorn:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.port = free_port()
        self.args = args
        self.log = (workdir / "gunicorn.log").open("ab")
        command = [
            str(VENV_BIN / "gunicorn"),
            "config.wsgi",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--worker-class",
            args.worker_class,
            "--workers",
            str(args.gunicorn_workers),
            "--threads",
            str(args.threads),
            "--keep-alive",
            "30",
            "--backlog",
            "2048",
            "--no-control-socket",
            "--http-parser",
            args.http_parser,
        ]
        env = django_env(BENCH_DB, DB_CONN_MAX_AGE=str(args.conn_max_age))
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log, stderr=self.log)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        for _ in range(300):
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see its log")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                    sock.sendall(
                        b"GET /api/v1/projects/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                        b"X-Forwarded-Proto: https\r\nConnection: close\r\n\r\n"
                    )
                    if sock.recv(64).startswith(b"HTTP/1.1 "):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not come up within 60 s")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def warm_server(port: int, tokens: list[str], requests: int = 2) -> None:
    """Each gunicorn worker imports lazily; one read-only request per worker thread keeps that out of the
    measurement (the warm-up of the loop itself then fills caches and connections)."""
    for token in tokens[:requests]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/projects/{SLUG}/",
            headers={"Authorization": f"Token {token}", "X-Forwarded-Proto": "https"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def run_ours(args: argparse.Namespace, size: int, workdir: Path, rate: float | None = None) -> dict[str, Any]:
    mode = f"paced at {rate:g} cycles/s" if rate else "closed loop"
    log(f"ours: a project of {size:,} QA pairs, {mode}")
    filled = fill_db(size, args.concurrency, args.gold_share, args.fill, workdir)
    log(
        f"ours: filled in {filled['fill_seconds']} s ({filled['setup_seconds']} s with users); starting gunicorn"
    )
    quiet = wait_for_quiet(args.wait_quiet)
    server = Gunicorn(args, workdir)
    try:
        tokens = list(filled["tokens"].values())
        warm_server(server.port, tokens, requests=args.gunicorn_workers * 2)
        # Stay clear of the end of a small project: its last items are a different regime (an empty
        # queue), and the loop should measure steady work.
        cap = min(args.max_cycles, int(size * 3 * 0.9))
        cfg = {
            "kind": "ours",
            "host": "127.0.0.1",
            "port": server.port,
            "tokens": tokens,
            "next_path": f"/api/v1/projects/{SLUG}/tasks/next/",
            "warmup": args.warmup,
            "duration": args.duration,
            "max_cycles": cap,
            "server_pids": [server.proc.pid],
            "database": BENCH_DB,
            "rate": rate,
        }
        log(f"ours: {len(tokens)} workers, warm-up {args.warmup} s, up to {args.duration} s or {cap} cycles")
        result = run_load_process(cfg, workdir, f"ours-{size}-{'paced' if rate else 'closed'}")
        result["db_state"] = db_state()
        result["next_task_query_plan"] = explain_next_task()
    finally:
        server.stop()
    result.update(
        size=size,
        max_cycles=cap,
        before_run=quiet,
        fill={k: v for k, v in filled.items() if k != "tokens"},
        server={
            "gunicorn": f"{args.worker_class}, {args.gunicorn_workers} workers x {args.threads} threads",
            "db_conn_max_age": args.conn_max_age,
        },
    )
    log(f"ours @ {size:,}, {mode}: {summary_line(result)}")
    return result


def explain_next_task() -> dict[str, Any]:
    """EXPLAIN ANALYZE of the claim's queue query after the run (the `picked` step of the claim
    statement in annotate/fastpath.py, and the ORM's query alike): it must read the partial index
    workitem_open_queue and touch a handful of rows at any project size."""
    worker = psql("SELECT id FROM auth_user WHERE username = 'bench01'", BENCH_DB).strip()
    project = psql(f"SELECT id FROM annotate_project WHERE slug = '{SLUG}'", BENCH_DB).strip()
    sql = (
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT w.* FROM annotate_workitem w "
        f"WHERE w.project_id = {project} AND w.stage = 1 AND NOT w.is_gold AND w.is_open AND NOT EXISTS "
        f"(SELECT 1 FROM annotate_assignment a WHERE a.work_item_id = w.id AND a.worker_id = {worker}) "
        "ORDER BY w.taken DESC, w.id LIMIT 1 FOR UPDATE OF w SKIP LOCKED"
    )
    plan = json.loads(psql(sql, BENCH_DB))[0]
    text = json.dumps(plan["Plan"])
    return {
        "uses_workitem_open_queue": "workitem_open_queue" in text,
        "execution_ms": plan["Execution Time"],
        "planning_ms": plan["Planning Time"],
        "shared_buffers_hit": plan["Plan"].get("Shared Hit Blocks"),
    }


def db_state() -> dict[str, int]:
    row = psql(
        "SELECT count(*) FILTER (WHERE status = 'submitted'), count(*) FILTER (WHERE status = 'leased'), "
        "(SELECT count(*) FROM annotate_workitem WHERE settled_at IS NOT NULL), "
        "(SELECT count(*) FROM annotate_workitem WHERE stage = 2), "
        "(SELECT count(*) FROM annotate_workitem WHERE taken > 3 AND NOT is_gold) FROM annotate_assignment",
        BENCH_DB,
    ).strip()
    submitted, leased, settled, stage2, over = (int(v) for v in row.split("|"))
    return {
        "assignments_submitted": submitted,
        "assignments_leased": leased,
        "items_settled": settled,
        "stage2_items_created": stage2,
        "items_over_assigned": over,
    }


# --- orchestration: Label Studio --------------------------------------------------------------------


class LabelStudio:
    def __init__(self, args: argparse.Namespace) -> None:
        self.dir = Path(args.peer_dir)
        self.port = args.peer_port or free_port()
        self.db = args.peer_db
        env = dict(os.environ, PEER_PG_DB=self.db)
        log(f"peer: starting Label Studio in {self.dir} on port {self.port} (first install takes minutes)")
        started = time.perf_counter()
        subprocess.run(
            [str(PEER_KIT / "start.sh"), str(self.dir), str(self.port)],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir.parent / f"{self.dir.name}-start.log").open("ab"),
        )
        self.start_seconds = round(time.perf_counter() - started, 1)
        self.tokens = json.loads((self.dir / "tokens.json").read_text())
        self.version = subprocess.run(
            [
                str(self.dir / "venv" / "bin" / "python"),
                "-c",
                "import label_studio; print(label_studio.__version__)",
            ],
            capture_output=True,
            text=True,
        ).stdout.strip()

    def api(self, method: str, path: str, body: Any = None, timeout: float = 600) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.tokens['admin']}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
        return json.loads(raw) if raw else None

    def master_pid(self) -> int:
        return int((self.dir / "uwsgi.pid").read_text().strip())

    def stop(self) -> None:
        subprocess.run([str(PEER_KIT / "stop.sh"), str(self.dir)], check=False)
        drop_db(self.db)


def run_peer(args: argparse.Namespace, peer: LabelStudio, size: int, workdir: Path) -> dict[str, Any]:
    project = peer.api(
        "POST",
        "/api/projects/",
        {
            "title": f"bench loop {size}",
            "label_config": LS_LABEL_CONFIG,
            "maximum_annotations": 3,
            "sampling": "Uniform sampling",
        },
    )
    tasks = [{"prompt": p, "response": r} for _, p, r in synthetic_qa(size, responses_per_prompt=10)]
    log(f"peer: importing {size:,} tasks into project {project['id']}")
    started = time.perf_counter()
    peer.api("POST", f"/api/projects/{project['id']}/import", tasks, timeout=1800)
    imported = round(time.perf_counter() - started, 1)
    annotators = [key for name, key in peer.tokens.items() if name != "admin"][: args.concurrency]
    cfg = {
        "kind": "peer",
        "host": "127.0.0.1",
        "port": peer.port,
        "tokens": annotators,
        "next_path": f"/api/projects/{project['id']}/next",
        "warmup": args.warmup,
        "duration": args.duration,
        "max_cycles": min(args.max_cycles, int(size * 3 * 0.9)),
        "server_pids": [peer.master_pid()],
        "database": peer.db,
    }
    quiet = wait_for_quiet(args.wait_quiet)
    log(f"peer: {len(annotators)} workers, warm-up {args.warmup} s, up to {args.duration} s")
    result = run_load_process(cfg, workdir, f"peer-{size}")
    result.update(size=size, import_seconds=imported, max_cycles=cfg["max_cycles"], before_run=quiet)
    log(f"peer @ {size:,}: {summary_line(result)}")
    return result


# --- reporting ----------------------------------------------------------------------------------------


def summary_line(r: dict[str, Any]) -> str:
    return (
        f"{r['cycles_per_s']} cycles/s over {r['window_s']} s; next p50/p99 {r['next_ms']['p50']}/"
        f"{r['next_ms']['p99']} ms; submit p50/p99 {r['submit_ms']['p50']}/{r['submit_ms']['p99']} ms; "
        f"CPU {r['cpu_ms_per_cycle']} ms/cycle (server {r['server_cpu_cores']}, database "
        f"{r['database_cpu_cores']}, client {r['client_cpu_cores']} cores); other work "
        f"{r['other_cpu_cores']} cores; errors {sum(r['errors'].values())}"
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 1) if a and b else None


def _p99_under_60(r: dict[str, Any]) -> bool:
    return all(r[call]["p99"] is not None and r[call]["p99"] < 60 for call in ("next_ms", "submit_ms"))


def _p50_growth(checks: dict[str, Any], runs: dict[int, dict[str, Any]], label: str) -> None:
    if len(runs) < 2:
        return
    small, large = runs[min(runs)], runs[max(runs)]
    for call in ("next_ms", "submit_ms"):
        growth = round(large[call]["p50"] / small[call]["p50"], 2) if small[call]["p50"] else None
        checks[f"{label}{call[:-3]}_p50_growth_{min(runs)}_to_{max(runs)}"] = growth
        checks[f"{label}{call[:-3]}_p50_within_1.3x"] = growth is not None and growth <= 1.3


def evaluate(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets. Throughput is the closed loop's (what the 2 cores can serve); latency is
    reported both at that saturation and with the 32 workers paced to the target rate."""
    ours = {r["size"]: r for r in results["ours"]}
    paced = {r["size"]: r for r in results.get("ours_paced", [])}
    checks: dict[str, Any] = {}
    for size, r in ours.items():
        checks[f"at_least_150_cycles_per_s_at_{size}"] = (r["cycles_per_s"] or 0) >= 150
        checks[f"closed_loop_p99_under_60ms_at_{size}"] = _p99_under_60(r)
    for size, r in paced.items():
        rate = r["paced_rate"]
        # The paced run counts only if the server kept up with the rate asked of it.
        checks[f"paced_{rate:g}_delivered_at_{size}"] = (r["cycles_per_s"] or 0) >= 0.95 * rate
        checks[f"paced_{rate:g}_p99_under_60ms_at_{size}"] = _p99_under_60(r)
    _p50_growth(checks, ours, "")
    _p50_growth(checks, paced, "paced_")
    return checks


def print_table(results: dict[str, Any]) -> None:
    peers = {r["size"]: r for r in results.get("peer", [])}
    rows = [
        (
            "system",
            "items",
            "cycles/s",
            "next p50",
            "next p99",
            "submit p50",
            "submit p99",
            "CPU ms/cycle",
            "CPU-bound cycles/s",
            "others' cores",
        )
    ]
    paced_label = (
        "ours, paced"
        if not results.get("ours_paced")
        else (f"ours, paced {results['ours_paced'][0]['paced_rate']:g}/s")
    )
    for label, runs in (
        ("ours", results["ours"]),
        (paced_label, results.get("ours_paced", [])),
        ("Label Studio", results.get("peer", [])),
    ):
        for r in runs:
            rows.append(
                (
                    label,
                    f"{r['size']:,}",
                    f"{r['cycles_per_s']}",
                    f"{r['next_ms']['p50']} ms",
                    f"{r['next_ms']['p99']} ms",
                    f"{r['submit_ms']['p50']} ms",
                    f"{r['submit_ms']['p99']} ms",
                    f"{r['cpu_ms_per_cycle']}",
                    f"{r['cpu_bound_cycles_per_s']}",
                    f"{r['other_cpu_cores']}",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
    if peers:
        print()
        print("ours / Label Studio (throughput: higher is better; latency: peer p50 / our p50):")
        for ours in results["ours"]:
            for size, peer in sorted(peers.items()):
                print(
                    f"  ours @ {ours['size']:,} vs peer @ {size:,}: throughput x"
                    f"{_ratio(ours['cycles_per_s'], peer['cycles_per_s'])}, next p50 x"
                    f"{_ratio(peer['next_ms']['p50'], ours['next_ms']['p50'])}, submit p50 x"
                    f"{_ratio(peer['submit_ms']['p50'], ours['submit_ms']['p50'])}"
                )
    print()
    for name, value in results["targets"].items():
        print(f"  {name}: {value}")


def versions() -> dict[str, str]:
    from importlib.metadata import version

    found = {"python": platform.python_version()}
    for package in ("Django", "djangorestframework", "gunicorn", "psycopg2-binary"):
        try:
            found[package] = version(package)
        except Exception:
            found[package] = "?"
    found["postgresql"] = psql("SHOW server_version").strip()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,330000", help="our project sizes (QA pairs)")
    parser.add_argument("--peer-sizes", default="1000,50000", help="Label Studio project sizes (tasks)")
    parser.add_argument("--no-peer", action="store_true", help="skip Label Studio")
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per size of ours (the table shows the best of them)"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=60.0, help="seconds to wait, before each run, for a quiet machine"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=150.0,
        help="also run ours with the workers paced to this many cycles/s in all (0: closed loop only)",
    )
    parser.add_argument("--warmup", type=float, default=4.0, help="seconds of load before measuring")
    parser.add_argument("--duration", type=float, default=25.0, help="measured seconds per run")
    parser.add_argument("--max-cycles", type=int, default=20000, help="cap on cycles per run")
    parser.add_argument("--gold-share", type=float, default=0.02, help="share of items that are gold")
    parser.add_argument(
        "--fill",
        choices=("auto", "import", "copy"),
        default="auto",
        help="auto: annotate.importing.import_file when it is there, else COPY straight into the tables",
    )
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--http-parser",
        default="auto",
        help="gunicorn's: auto (its C parser when gunicorn[fast] is installed)",
    )
    parser.add_argument("--conn-max-age", type=int, default=600, help="DB_CONN_MAX_AGE for gunicorn")
    parser.add_argument("--peer-dir", default="/tmp/ls-peer-loop")
    parser.add_argument("--peer-port", type=int, default=0)
    parser.add_argument("--peer-db", default="labelstudio_loop")
    parser.add_argument("--keep-db", action="store_true", help="keep our bench databases")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "bl_bench_loop"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started = datetime.now(UTC)
    results: dict[str, Any] = {
        "benchmark": "annotation loop: next -> submit, closed loop, no think time",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": started.isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "load_average_at_start": os.getloadavg(),
            "note": "2-core machine shared with other engineers' test runs; load generator on the same machine",
        },
        "versions": versions(),
        "code": code_version(),
        "settings": {k: v for k, v in vars(args).items() if k not in {"out"}},
        "ours": [],
        "ours_paced": [],
        "peer": [],
    }
    try:
        prepare_template()
        sizes = [int(s) for s in args.sizes.split(",") if s]
        runs: dict[int, list[dict[str, Any]]] = {size: [] for size in sizes}
        for _ in range(args.repeats):
            for size in sizes:  # interleaved, so that a noisy spell on the machine hits every size alike
                runs[size].append(run_ours(args, size, workdir))
        for size in sizes:
            best = max(runs[size], key=lambda r: r["cycles_per_s"] or 0)
            best["runs_of_this_size"] = [
                {
                    k: r[k]
                    for k in (
                        "cycles_per_s",
                        "next_ms",
                        "submit_ms",
                        "cpu_ms_per_cycle",
                        "other_cpu_cores",
                    )
                }
                for r in runs[size]
            ]
            results["ours"].append(best)
        if args.paced_rate:
            for size in sizes:
                results["ours_paced"].append(run_ours(args, size, workdir, rate=args.paced_rate))
    finally:
        if not args.keep_db:
            for name in [BENCH_DB, TEMPLATE_DB, *(f"{BENCH_DB}_{s}" for s in args.sizes.split(",") if s)]:
                drop_db(name)
    if not args.no_peer:
        peer = LabelStudio(args)
        results["peer_setup"] = {
            "version": peer.version,
            "start_seconds": peer.start_seconds,
            "server": "uWSGI, 2 processes per core x 1 thread (its deploy/uwsgi.ini)",
        }
        results["versions"]["label-studio"] = peer.version
        try:
            for size in (int(s) for s in args.peer_sizes.split(",") if s):
                results["peer"].append(run_peer(args, peer, size, workdir))
        finally:
            peer.stop()
    results["targets"] = evaluate(results)
    results["notes"] = [
        "Latencies are what the client sees, queueing included. In a closed loop without think time "
        f"Little's law fixes the mean: {args.concurrency} workers / (2 calls x cycles/s); a p99 under "
        f"60 ms for both calls needs more than {args.concurrency / 0.120:.0f} cycles/s at this concurrency, "
        "so the closed loop measures capacity and the paced run (the same workers, each starting cycles "
        f"at random moments, {args.paced_rate:g} cycles/s in all) measures latency at the target rate.",
        "cpu_ms_per_cycle and cpu_bound_cycles_per_s separate the loop's own CPU cost from what other work "
        "on the shared machine took (other_cpu_cores); Label Studio's PostgreSQL CPU is not in its figure "
        "(it opens a connection per request, so its backends cannot be told apart from other work).",
        "Each run's keep-alive connections stay with the gunicorn process that accepted them, so an "
        "uneven spread over the processes makes the latency distribution two-humped (p50 well under the "
        "mean, a long p99); throughput is unaffected.",
    ]
    results["machine"]["load_average_at_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)
    log(f"wrote {args.out}")


def code_version() -> str:
    """The commit measured (BENCH_CODE names it when the benchmark runs from a copy of the tree)."""
    if os.environ.get("BENCH_CODE"):
        return os.environ["BENCH_CODE"]
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "fill":
        fill(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5], Path(sys.argv[6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
