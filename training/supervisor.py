"""Run a trainer as a child process and watch it: plain Python, no Django (and no torch).

The Celery task (training/tasks.py) hands `supervise()` the trainer's argv and a `report` callable. Every
`poll_s` seconds the loop

- reads the progress records the trainer appended to its JSON-lines progress file since the last poll,
- reads the tail of the trainer's combined stdout/stderr log,
- calls `report(Poll(...))`, which relays them (and a heartbeat) to the job row and answers what to do
  next: carry on, cancel (write the cancel file: the trainer saves a checkpoint at its next step and
  exits 3) or abort (the job was taken away, e.g. failed by the reaper: stop the trainer, record nothing),
- checks whether the trainer exited.

It returns an `Outcome` when the trainer exits. It is bounded: past `timeout_s` (kept below the broker's
visibility timeout, after which Redis would hand the job to a second worker) it asks the trainer to stop
with SIGTERM (checkpoint, exit 4), and a trainer that ignores a stop request for `stop_grace_s` is
killed. The trainer runs in its own session so that one signal reaches all its processes (`accelerate
launch` starts one per GPU), and with PR_SET_PDEATHSIG so that it is stopped, not orphaned holding the
GPU, if the worker process dies.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import enum
import json
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.trainers.launch import EXIT_CANCELLED, EXIT_INTERRUPTED, EXIT_OK

log = logging.getLogger(__name__)


LOG_TAIL_LINES = 60
# A progress line longer than this is not a record the trainer wrote; skip it rather than hold it.
MAX_RECORD_BYTES = 1 << 20


class Directive(enum.Enum):
    CONTINUE = "continue"
    CANCEL = "cancel"  # the researcher asked: the trainer stops with a checkpoint
    ABORT = "abort"  # the job is no longer ours: stop the trainer, report nothing more
    # Another attempt of the job owns its folder now: kill the trainer at once, so that it writes no
    # checkpoint over the new attempt's (a SIGTERM would make it save one), and report nothing more.
    SUPERSEDED = "superseded"


@dataclass
class Poll:
    """What one poll saw: new progress records, the log's last lines (and whether they changed)."""

    records: list[dict[str, Any]]
    log_tail: str
    log_changed: bool
    pid: int
    elapsed_s: float


@dataclass
class Outcome:
    """How the trainer ended.

    status: "succeeded", "cancelled" (after a cancel request), "interrupted" (SIGTERM: checkpoint saved),
    "failed" (any other exit), "timed_out", "stalled" (no progress for progress_timeout_s), "aborted" or
    "superseded" (stopped by us; see above).
    """

    status: str
    returncode: int | None
    result: dict[str, Any] | None
    log_tail: str
    error: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)

    def describe_exit(self) -> str:
        code = self.returncode
        if code is None:
            return "did not exit"
        if code < 0:
            try:
                return f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"was killed by signal {-code}"
        return f"exited with code {code}"


class ProgressTail:
    """Reads the JSON lines appended to a file since the last read; a partial last line waits."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.pending = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(chunk)
        data = self.pending + chunk
        lines = data.split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > MAX_RECORD_BYTES:
            self.pending = b""
        records = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                log.warning("skipping a progress line that is not JSON: %r", line[:200])
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


# Terminal colour and cursor codes (transformers' load reports use them): noise on a web page.
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class LogTail:
    """Keeps the last `lines` lines of a growing log file, reading only what was appended."""

    def __init__(self, path: Path, lines: int = LOG_TAIL_LINES) -> None:
        self.path = path
        self.offset = 0
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.partial = ""

    def read(self) -> bool:
        """Read what was appended; True when the tail changed."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return False
        if not chunk:
            return False
        self.offset += len(chunk)
        # Progress bars redraw with \r: keep what the line finally showed.
        text = _TERMINAL_CODES.sub("", self.partial + chunk.decode("utf-8", errors="replace"))
        parts = text.split("\n")
        self.partial = parts.pop()
        for line in parts:
            self.lines.append(line.rsplit("\r", 1)[-1].rstrip())
        return True

    def text(self) -> str:
        lines = list(self.lines)
        if self.partial:
            lines.append(self.partial.rsplit("\r", 1)[-1].rstrip())
        return "\n".join(lines)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the worker process that started us dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:  # not Linux: the reaper still marks the job failed
        pass


def start_process(
    argv: Sequence[str], *, cwd: str | os.PathLike[str], env: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            list(argv),
            cwd=os.fspath(cwd),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # the worker runs a task in one thread
        )


def _signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)


def supervise(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    log_path: Path,
    log_start: int | None = None,
    progress_path: Path,
    cancel_path: Path,
    result_path: Path,
    report: Callable[[Poll], Directive],
    poll_s: float = 2.0,
    timeout_s: float | None = None,
    stop_grace_s: float = 600.0,
    should_interrupt: Callable[[], bool] = lambda: False,
    on_start: Callable[[int], None] | None = None,
    progress_timeout_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log_lines: int = LOG_TAIL_LINES,
) -> Outcome:
    """Start the trainer, relay what it reports until it exits, and say how it ended (see the module doc).

    should_interrupt: polled too; True (the worker is shutting down) sends SIGTERM, like a timeout.
    log_start: where in log_path this run's lines begin (default: the file's end when it starts).
    progress_timeout_s: a trainer that appends no progress record for this long (a hang: the heartbeat
    only proves this loop alive) is asked to stop with a checkpoint, and the outcome is "stalled".
    """
    for stale in (cancel_path, result_path):
        stale.unlink(missing_ok=True)
    progress = ProgressTail(progress_path)
    tail = LogTail(log_path, log_lines)
    # Read the log from where this run begins (log_start, or its current end): a retry appends to it.
    if log_start is not None:
        tail.offset = log_start
    else:
        tail.offset = log_path.stat().st_size if log_path.exists() else 0
    progress.offset = progress_path.stat().st_size if progress_path.exists() else 0

    process = start_process(argv, cwd=cwd, env=env, log_path=log_path)
    if on_start is not None:
        on_start(process.pid)
    started = last_progress = clock()
    stop_reason = ""  # why we asked it to stop: "cancel", "timeout", "interrupt", "abort", "stalled", ...
    stop_asked_at: float | None = None
    killed = False
    all_records: list[dict[str, Any]] = []

    def ask_to_stop(reason: str) -> None:
        nonlocal stop_reason, stop_asked_at
        # One request stands, except that losing the job to another attempt overrides any (a trainer
        # saving a checkpoint after a SIGTERM must not write into the new attempt's folder).
        if stop_reason and (reason != "superseded" or stop_reason == "superseded"):
            return
        stop_reason, stop_asked_at = reason, clock()
        if reason == "cancel":
            cancel_path.write_text("cancel requested\n", encoding="utf-8")
        elif reason == "superseded":
            _signal_group(process, signal.SIGKILL)
        else:
            _signal_group(process, signal.SIGTERM)
        log.info("trainer %s: asked to stop (%s)", process.pid, reason)

    try:
        while True:
            returncode = process.poll()
            records = progress.read()
            all_records.extend(records)
            if records:
                last_progress = clock()
            changed = tail.read()
            directive = report(
                Poll(
                    records=records,
                    log_tail=tail.text(),
                    log_changed=changed,
                    pid=process.pid,
                    elapsed_s=clock() - started,
                )
            )
            if returncode is not None:
                break
            if directive is Directive.SUPERSEDED:
                ask_to_stop("superseded")
            elif directive is Directive.ABORT:
                ask_to_stop("abort")
            elif directive is Directive.CANCEL:
                ask_to_stop("cancel")
            if progress_timeout_s is not None and clock() - last_progress > progress_timeout_s:
                ask_to_stop("stalled")
            if timeout_s is not None and clock() - started > timeout_s:
                ask_to_stop("timeout")
            if should_interrupt():
                ask_to_stop("interrupt")
            if stop_asked_at is not None and not killed and clock() - stop_asked_at > stop_grace_s:
                log.warning(
                    "trainer %s ignored the stop request for %ss: killing it", process.pid, stop_grace_s
                )
                _signal_group(process, signal.SIGKILL)
                killed = True
            sleep(poll_s)
    finally:
        if process.poll() is None:  # the loop itself failed (report raised): leave no trainer behind
            _signal_group(process, signal.SIGKILL)
            process.wait()

    # The trainer's own group may have left children (a crashed accelerate launch): clean them up.
    _signal_group(process, signal.SIGKILL)
    result = _read_result(result_path)
    error = next((str(r.get("message", "")) for r in reversed(all_records) if r.get("event") == "error"), "")
    status = _status(returncode, stop_reason, killed)
    return Outcome(status, returncode, result, tail.text(), error=error, records=all_records)


def _status(returncode: int, stop_reason: str, killed: bool) -> str:
    if stop_reason == "abort":
        return "aborted"
    if stop_reason == "superseded":
        return "superseded"
    if returncode == EXIT_OK:
        return "succeeded"
    if stop_reason == "cancel" and (returncode == EXIT_CANCELLED or killed):
        return "cancelled"
    if stop_reason == "timeout":
        return "timed_out"
    if stop_reason == "stalled":
        return "stalled"
    if stop_reason == "interrupt" or returncode in (EXIT_INTERRUPTED, EXIT_CANCELLED):
        # Stopped with a checkpoint, but not because the researcher asked: a retry resumes it.
        return "interrupted"
    return "failed"


def _read_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
