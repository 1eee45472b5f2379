"""The run command (`./dev run` = `python -m config.runner`) on the embedded default, in subprocesses.

Setup on a fresh SQLite file (migrate + seed_demo, WAL on), then a real start: gunicorn answers /login/,
the Celery worker comes up, and SIGINT stops both with exit 0 and no process left behind.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent
SETUP_TIMEOUT_S = 300
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
DEMO_USERS = {"admin", "researcher", "annotator1", "annotator2", "annotator3"}


def runner_env(var_dir: Path) -> dict[str, str]:
    """The embedded default: no database or broker URL, whatever the calling shell (or CI) has set."""
    unset = {
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "CELERY_RESULT_BACKEND",
        "DEBUG",
        "SECRET_KEY",
        "ALLOWED_HOSTS",
    }
    env = {k: v for k, v in os.environ.items() if k not in unset and not k.startswith("PYTEST_")}
    env.update(BEAVERLAB_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="config.settings", PYTHONUNBUFFERED="1")
    # The demo policy's build (tests/annotate/test_seed_demo.py covers it) would add half a minute here.
    env.update(BEAVERLAB_DEMO_POLICY_EPOCHS="0")
    return env


def query(db: Path, sql: str, *params: object) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def demo_counts(db: Path) -> dict[str, int]:
    (project_id,) = query(db, "SELECT id FROM annotate_project WHERE slug = 'demo'")[0]
    return {
        "prompts": query(db, "SELECT count(*) FROM annotate_prompt WHERE project_id = ?", project_id)[0][0],
        "qa_pairs": query(db, "SELECT count(*) FROM annotate_qapair WHERE project_id = ?", project_id)[0][0],
        "stage1_items": query(
            db, "SELECT count(*) FROM annotate_workitem WHERE project_id = ? AND stage = 1", project_id
        )[0][0],
        "stage2_items": query(
            db, "SELECT count(*) FROM annotate_workitem WHERE project_id = ? AND stage = 2", project_id
        )[0][0],
        "users": query(db, "SELECT count(*) FROM auth_user")[0][0],
    }


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runner") / "var"


@pytest.fixture(scope="module")
def setup_run(var_dir) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "config.runner", "--setup-only"],
        cwd=BASE_DIR,
        env=runner_env(var_dir),
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
    )


def test_setup_migrates_and_seeds_a_fresh_sqlite_file(setup_run, var_dir):
    assert setup_run.returncode == 0, setup_run.stderr[-3000:]
    db = var_dir / "db.sqlite3"
    assert db.exists()
    assert query(db, "PRAGMA journal_mode")[0][0] == "wal"
    counts = demo_counts(db)
    assert counts["prompts"] > 0
    # Both stages have work to hand out.
    assert counts["stage1_items"] > 0
    assert counts["stage2_items"] > 0
    usernames = {name for (name,) in query(db, "SELECT username FROM auth_user")}
    assert usernames >= DEMO_USERS
    # The demo logins are printed, so a new user can sign in.
    for name in DEMO_USERS:
        assert name in setup_run.stdout
    # The embedded broker's folders exist before any worker needs them.
    assert (var_dir / "broker" / "queue").is_dir()


def test_setup_again_changes_nothing(setup_run, var_dir):
    assert setup_run.returncode == 0
    before = demo_counts(var_dir / "db.sqlite3")
    again = subprocess.run(
        [sys.executable, "-m", "config.runner", "--setup-only"],
        cwd=BASE_DIR,
        env=runner_env(var_dir),
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert demo_counts(var_dir / "db.sqlite3") == before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def processes_with_env(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (Linux /proc); the runner's children inherit it."""
    pids = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":
                    pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_run_serves_the_site_with_a_worker_and_stops_cleanly_on_sigint(setup_run, var_dir, tmp_path):
    assert setup_run.returncode == 0
    port = free_port()
    log_path = tmp_path / "run.log"
    env = runner_env(var_dir)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "config.runner", "--port", str(port), "--grace", "20"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log_text() -> str:
        return log_path.read_text(errors="replace")

    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        status = None
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the runner exited early:\n{log_text()[-4000:]}"
            status = http_status(f"http://127.0.0.1:{port}/login/")
            # The banner comes once the site answers and the worker has said it is ready.
            if status == 200 and "BeaverLab is running at" in log_text():
                break
            time.sleep(0.5)
        assert status == 200, f"/login/ answered {status}:\n{log_text()[-4000:]}"
        assert " ready." in log_text(), f"the Celery worker did not come up:\n{log_text()[-4000:]}"
        banner = log_text().split("BeaverLab is running at", 1)[1]
        assert banner.startswith(f" http://127.0.0.1:{port}/")
        assert "annotator1" in banner  # the demo logins

        process.send_signal(signal.SIGINT)
        assert process.wait(STOP_TIMEOUT_S) == 0, log_text()[-4000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    assert "ERROR" not in log_text()
    assert http_status(f"http://127.0.0.1:{port}/login/") is None
    if Path("/proc/self/environ").exists():
        leftovers = processes_with_env(f"BEAVERLAB_VAR_DIR={var_dir}")
        for pid in leftovers:
            os.kill(pid, signal.SIGKILL)
        assert leftovers == [], "children outlived the runner"
