"""The run command behind `./dev run`: set up, then serve the platform with a Celery worker beside it.

    python -m config.runner [--host 127.0.0.1] [--port 8000] [--setup-only] [--no-seed]

Setup: create the var/ folders, `migrate`, `seed_demo` (idempotent), and `collectstatic` when DEBUG is
off (WhiteNoise's manifest storage needs it; with DEBUG on WhiteNoise serves from the app folders).
Then it starts gunicorn and a Celery worker (queues default and gpu, with beat embedded when a beat
schedule is configured) as child processes and supervises them:

- Ctrl-C (SIGINT) or SIGTERM: forward SIGTERM (gunicorn and Celery both shut down gracefully on it),
  wait up to --grace seconds, then force; exit 0. A second Ctrl-C forces at once.
- A child that exits on its own: stop the other one and exit 1, naming the child and its exit code.

It runs the same on the embedded default (SQLite WAL + kombu filesystem broker under var/) and with
DATABASE_URL / CELERY_BROKER_URL pointing at PostgreSQL / Redis: every child inherits the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
POLL_SECONDS = 0.2


def _log(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


# --- setup ------------------------------------------------------------------------------------------


def setup(*, seed: bool) -> str:
    """Prepare folders, database and static files; return the demo logins seed_demo printed."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    for folder in _var_folders(settings):
        folder.mkdir(parents=True, exist_ok=True)

    db = settings.DATABASES["default"]
    _log(f"database: {db['ENGINE'].rsplit('.', 1)[-1]} {db.get('NAME')}")
    _log(f"broker: {_redact(settings.CELERY_BROKER_URL)}")
    call_command("migrate", interactive=False, verbosity=1)
    logins = ""
    if seed:
        out = io.StringIO()
        call_command("seed_demo", stdout=out)
        # seed_demo reports its steps, then a table of the demo accounts: the steps go out now, the
        # table in the banner once the server is up, where a new user looks for it.
        steps, marker, table = out.getvalue().partition("Demo accounts")
        for line in steps.strip().splitlines():
            _log(f"seed_demo: {line}")
        logins = (marker + table) if marker else steps
    if not settings.DEBUG:
        call_command("collectstatic", interactive=False, verbosity=0)
    # The children open their own connections; the parent must not hold SQLite locks or idle sessions.
    connections.close_all()
    return logins


def _var_folders(settings) -> list[Path]:
    # STATIC_ROOT too: WhiteNoise warns on every start when it is missing, even with DEBUG on.
    folders = [Path(settings.VAR_DIR), Path(settings.MEDIA_ROOT), Path(settings.STATIC_ROOT)]
    options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        # kombu's filesystem transport does not create its folders.
        for key in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder"):
            if options.get(key):
                folders.append(Path(str(options[key])))
    return folders


def _redact(url: str) -> str:
    """Hide a password in a service URL before printing it."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url


def _beat_schedule_configured() -> bool:
    from config.celery import app

    return bool(app.conf.beat_schedule)


# --- children ---------------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    argv: list[str]
    # A line the child prints once it is ready; the runner's banner waits for it.
    ready_marker: bytes | None = None
    process: subprocess.Popen[bytes] | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    _pump: threading.Thread | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=BASE_DIR,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches only the runner, which then stops the
            # children in order instead of all of them racing on the same signal.
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        if self.ready_marker is None:
            self.ready.set()
        self._pump = threading.Thread(target=self._forward_output, name=f"{self.name} output", daemon=True)
        self._pump.start()

    def _forward_output(self) -> None:
        """Copy the child's output to ours line by line, watching for its ready line."""
        assert self.process is not None and self.process.stdout is not None
        out = sys.stdout.buffer
        for line in iter(self.process.stdout.readline, b""):
            out.write(line)
            out.flush()
            if not self.ready.is_set() and self.ready_marker is not None and self.ready_marker in line:
                self.ready.set()

    def flush_output(self, timeout: float = 2) -> None:
        if self._pump is not None:
            self._pump.join(timeout)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                self.process.send_signal(signum)

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of the child's process group: a killed Celery worker leaves its pool
        and beat processes behind, and they would hold the broker and the database."""
        if self.process is not None and os.name == "posix":
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """Linux: the kernel sends SIGTERM to the child if the runner itself is killed (even by SIGKILL)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def web_argv(host: str, port: int) -> list[str]:
    if os.name != "posix":  # gunicorn is POSIX-only; Django's server is enough for one user.
        return [sys.executable, "manage.py", "runserver", "--noreload", f"{host}:{port}"]
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--bind",
        f"{host}:{port}",
        "--worker-class",
        "gthread",
        "--workers",
        os.environ.get("WEB_CONCURRENCY", "2"),
        "--threads",
        "4",
        # Long uploads (a 330,000-row import) stream in a thread; gthread workers keep heartbeating.
        "--timeout",
        "120",
        "--graceful-timeout",
        "10",
        "--access-logfile",
        "-",
        # Its default path is one per user: two servers on one machine would fight over it.
        "--no-control-socket",
    ]


def worker_argv(*, beat: bool, var_dir: Path) -> list[str]:
    from config.celery import Queue

    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "-Q",
        ",".join(queue.value for queue in Queue),
        # prefork isolates a crashing task (a training job running out of memory) from the worker;
        # two processes keep short default-queue tasks moving while a long job runs.
        "--pool",
        "prefork",
        "--concurrency",
        os.environ.get("BEAVERLAB_WORKER_CONCURRENCY", "2"),
        "--hostname",
        "beaverlab@%h",
        "--loglevel",
        "INFO",
    ]
    if beat:
        # One machine, one worker: beat embedded in it is enough (production runs a beat service).
        argv += ["--beat", "--schedule", str(var_dir / "celerybeat-schedule")]
    return argv


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _accepting(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


class Supervisor:
    def __init__(self, children: Sequence[Child], *, grace: float) -> None:
        self.children = list(children)
        self.grace = grace
        self.stop_signals = 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signals += 1
        if self.stop_signals == 1:
            _log(f"{signal.Signals(signum).name} received: stopping (again to force)")

    def run(self, *, on_ready) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        for child in self.children:
            child.start()
        ready = False
        while True:
            if self.stop_signals:
                self.stop()
                return 0
            for child in self.children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    others = [c.name for c in self.children if c is not child and c.running]
                    _log(
                        f"ERROR: the {child.name} exited unexpectedly with code {code}"
                        + (f"; stopping the {' and the '.join(others)}" if others else "")
                    )
                    self.stop()
                    return 1
            if not ready:
                ready = on_ready()
            time.sleep(POLL_SECONDS)

    def stop(self) -> None:
        for child in self.children:
            child.signal(signal.SIGTERM)
        if not self._wait(self.grace):
            names = ", ".join(c.name for c in self.children if c.running)
            why = "asked again" if self.stop_signals > 1 else f"still running after {self.grace:g}s"
            _log(f"{why}: forcing {names}")
            for child in self.children:
                # Celery's cold shutdown (SIGQUIT) puts unacknowledged (acks_late) tasks back.
                child.signal(signal.SIGQUIT if "worker" in child.name else signal.SIGKILL)
            if not self._wait(5, forced=True):
                for child in self.children:
                    child.signal(signal.SIGKILL)
                self._wait(5, forced=True)
        for child in self.children:
            child.kill_leftovers()
            child.flush_output()
        _log("stopped")

    def _wait(self, seconds: float, *, forced: bool = False) -> bool:
        """Wait until every child has exited; a further Ctrl-C cuts a graceful wait short."""
        signals_before = self.stop_signals
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not any(c.running for c in self.children):
                return True
            if not forced and self.stop_signals > max(signals_before, 1):
                return False
            time.sleep(POLL_SECONDS)
        return not any(c.running for c in self.children)


# --- entry point -------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.runner", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--setup-only", action="store_true", help="migrate and seed, then exit")
    parser.add_argument("--no-seed", action="store_true", help="skip seed_demo")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to wait for a clean stop")
    args = parser.parse_args(argv)

    if not args.setup_only and not _port_free(args.host, args.port):
        _log(f"ERROR: {args.host}:{args.port} is already in use; stop what runs there or pass --port")
        return 2
    logins = setup(seed=not args.no_seed)
    if args.setup_only:
        if logins:
            print(logins, end="" if logins.endswith("\n") else "\n", flush=True)
        _log("setup done")
        return 0

    from django.conf import settings

    url = f"http://{args.host}:{args.port}/"
    web = Child("web server", web_argv(args.host, args.port))
    worker = Child(
        "Celery worker",
        worker_argv(beat=_beat_schedule_configured(), var_dir=Path(settings.VAR_DIR)),
        ready_marker=b" ready.",
    )
    started = time.monotonic()

    def on_ready() -> bool:
        """Print the banner once the site answers and the worker is up, so it ends the start-up output."""
        waited = time.monotonic() - started
        if not (_accepting(args.host, args.port) and worker.ready.is_set()):
            if waited < 90:
                return False
            _log("WARNING: still starting after 90s; the web server or the worker may be stuck")
        banner = ["", f"BeaverLab is running at {url}  (Ctrl-C stops the web server and the worker)"]
        banner += [f"API docs: {url}api/v1/docs/"]
        if logins:
            banner += ["", logins.rstrip("\n")]
        print("\n".join(banner) + "\n", flush=True)
        return True

    return Supervisor([web, worker], grace=args.grace).run(on_ready=on_ready)


if __name__ == "__main__":
    sys.exit(main())
