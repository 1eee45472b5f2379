"""A real Celery worker for tests: a subprocess on the test's broker and the test's database.

The worker is `celery -A config worker -Q default,gpu -P solo -c 1`, the command production runs, started
once per module. Tests that use it take `transactional_db` (their rows must be committed for another
process to see them) and send tasks with `live_worker.send(task, ...)`.

- Broker: Redis when CELERY_BROKER_URL is set (CI), else kombu's filesystem transport in a fresh temp
  folder, so a `./dev run` on the same checkout cannot steal the test's messages.
- Database: the test database pytest-django created (it renames NAME to test_<name>), passed to the worker
  as DATABASE_URL. Django's SQLite test database is in memory, which no other process can open, so on
  SQLite this module moves the session's test database into a temp file (below, at collection time,
  before any test database exists).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connections

from config.celery import Queue
from config.celery import app as celery_app

BASE_DIR = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20


def _use_file_sqlite_test_db() -> None:
    settings_dict = connections["default"].settings_dict
    if settings_dict["ENGINE"] != "django.db.backends.sqlite3":
        return
    test = settings_dict.setdefault("TEST", {})
    if test.get("NAME") and "memory" not in str(test["NAME"]):
        return
    folder = tempfile.mkdtemp(prefix="beaverlab-test-db-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    test["NAME"] = str(Path(folder) / "test.sqlite3")


_use_file_sqlite_test_db()


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for the database a connection's settings point at (the test database)."""
    engine = settings_dict["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    if engine == "django.db.backends.postgresql":
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "localhost"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{auth}{host}{port}/{quote(settings_dict['NAME'], safe='')}"
    raise NotImplementedError(f"no worker fixture for {engine}")


class LiveWorker:
    def __init__(
        self,
        *,
        env: dict[str, str],
        log_path: Path,
        transport_options: dict[str, Any] | None,
        pool_args: tuple[str, ...] = ("-Q", ",".join(q.value for q in Queue), "-P", "solo", "-c", "1"),
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.transport_options = transport_options
        self.pool_args = pool_args
        self.database_name = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [
            sys.executable, "-m", "celery", "-A", "config", "worker", *self.pool_args, "-l", "INFO",
            "-n", f"test-{uuid.uuid4().hex[:8]}@%h",
            # Nothing to gossip with; mingle alone would add a second of start-up.
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {self.process.returncode}:\n{self.log()}")
            if " ready." in self.log():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Celery worker was not ready after {READY_TIMEOUT_S}s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # warm shutdown: finish the current task
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, task: Any, *args: Any, **kwargs: Any) -> Any:
        """Publish a task through the worker's broker (the same Redis, or the same temp folder)."""
        with celery_app.connection_for_write(transport_options=self.transport_options) as conn:
            return task.apply_async(args=args, kwargs=kwargs, connection=conn)

    def purge(self) -> None:
        with celery_app.connection_for_write(transport_options=self.transport_options) as conn:
            for queue in Queue:
                conn.default_channel.queue_purge(queue.value)


def wait_for(condition: Callable[[], Any], *, timeout: float = 30, what: str = "condition") -> Any:
    """Poll until condition() is truthy; fail the test with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _rebase(path: object, old_root: Path, new_root: Path) -> str:
    try:
        return str(new_root / Path(str(path)).relative_to(old_root))
    except ValueError:
        raise NotImplementedError(
            f"broker folder {path} is outside VAR_DIR; the worker could not share it"
        ) from None


def make_worker(tmp_path_factory: Any, **options: Any) -> LiveWorker:
    """A worker process (not started) on the test's broker and database; options go to LiveWorker."""
    folder = tmp_path_factory.mktemp("celery")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        # django_db_setup has renamed NAME to the test database by now.
        DATABASE_URL=database_url(connections["default"].settings_dict),
        BEAVERLAB_VAR_DIR=str(folder / "var"),
        CELERY_TASK_ALWAYS_EAGER="0",
        PYTHONUNBUFFERED="1",
    )
    transport_options: dict[str, Any] | None = None
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # The worker derives its broker folders from BEAVERLAB_VAR_DIR; the same folders, moved under
        # the temp var dir, are where this process must publish.
        transport_options = {
            key: _rebase(value, Path(settings.VAR_DIR), folder / "var") if "_folder" in key else value
            for key, value in settings.CELERY_BROKER_TRANSPORT_OPTIONS.items()
        }
        for key, value in transport_options.items():
            if "_folder" in key:
                Path(value).mkdir(parents=True, exist_ok=True)
    worker = LiveWorker(
        env=env, log_path=folder / "worker.log", transport_options=transport_options, **options
    )
    worker.database_name = str(connections["default"].settings_dict["NAME"])
    return worker


def running(worker: LiveWorker) -> Iterator[LiveWorker]:
    """Start `worker` on an empty broker, yield it, stop it (the body of a worker fixture)."""
    # A message left by an aborted earlier run would run against this run's rows.
    worker.purge()
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def live_worker(django_db_setup, tmp_path_factory) -> Iterator[LiveWorker]:
    yield from running(make_worker(tmp_path_factory))
