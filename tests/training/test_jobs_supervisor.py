"""The supervisor loop (training/supervisor.py) against a stand-in trainer: a small Python script that
speaks the trainer CLI's protocol (progress JSON lines, the cancel file, the result file, exit codes)
in milliseconds, so every ending can be driven exactly. The real trainer runs in the Celery tests."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

from training.supervisor import Directive, LogTail, Poll, ProgressTail, supervise

FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    steps, mode = int(args["--steps"]), args.get("--mode", "ok")
    progress, cancel, result = args["--progress-file"], args["--cancel-file"], args["--result-file"]
    stop = {"term": False}
    signal.signal(signal.SIGTERM, lambda *a: stop.update(term=True))
    if mode == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    def emit(**record):
        with open(progress, "a") as fh:
            fh.write(json.dumps(record) + "\\n")
    emit(event="train_begin", step=0, max_steps=steps, progress=0.0)
    for step in range(1, steps + 1):
        time.sleep(float(args.get("--step-s", "0.02")))
        if mode == "hang" and step == 3:  # stuck (a deadlock, a dead collective): alive, silent
            while not stop["term"]:
                time.sleep(0.01)
            json.dump({"status": "interrupted", "global_step": 2, "checkpoint": "checkpoint-2"}, open(result, "w"))
            sys.exit(4)
        print(f"step {step}", flush=True)
        emit(event="log", step=step, max_steps=steps, loss=1.0 / step, accuracy=0.5, progress=step / steps)
        if mode == "crash" and step == 2:
            print("Traceback: boom", file=sys.stderr, flush=True)
            emit(event="error", message="RuntimeError: boom")
            sys.exit(1)
        if os.path.exists(cancel) or stop["term"]:
            status = "cancelled" if os.path.exists(cancel) else "interrupted"
            json.dump({"status": status, "global_step": step, "checkpoint": f"checkpoint-{step}"}, open(result, "w"))
            sys.exit(3 if status == "cancelled" else 4)
    artifact = {"escape": "../../outside", "absolute": "/etc"}.get(mode, "model")
    json.dump({"status": "succeeded", "global_step": steps, "artifact_path": artifact}, open(result, "w"))
    """
)


@pytest.fixture
def run_fake(tmp_path):
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER)
    paths = {
        "log_path": tmp_path / "train.log",
        "progress_path": tmp_path / "progress.jsonl",
        "cancel_path": tmp_path / "CANCEL",
        "result_path": tmp_path / "result.json",
    }

    def run(*, steps=5, mode="ok", step_s=0.02, report=None, **kwargs):
        argv = [sys.executable, str(script), "--steps", str(steps), "--mode", mode, "--step-s", str(step_s)]
        argv += ["--progress-file", str(paths["progress_path"]), "--cancel-file", str(paths["cancel_path"])]
        argv += ["--result-file", str(paths["result_path"])]
        polls: list[Poll] = []

        def default_report(poll: Poll) -> Directive:
            polls.append(poll)
            return report(poll, polls) if report else Directive.CONTINUE

        outcome = supervise(
            argv, cwd=tmp_path, env=dict(os.environ), report=default_report, poll_s=0.02, **paths, **kwargs
        )
        return outcome, polls

    return run


def test_success_relays_every_record_and_the_log(run_fake):
    outcome, polls = run_fake(steps=5)
    assert outcome.status == "succeeded" and outcome.returncode == 0
    assert outcome.result == {"status": "succeeded", "global_step": 5, "artifact_path": "model"}
    records = [r for p in polls for r in p.records]
    assert [r["event"] for r in records] == ["train_begin", "log", "log", "log", "log", "log"]
    assert [r["step"] for r in records if r["event"] == "log"] == [1, 2, 3, 4, 5]
    assert outcome.log_tail.splitlines()[-1] == "step 5"
    assert any(p.log_changed for p in polls)


def test_cancel_writes_the_cancel_file_and_ends_cancelled(run_fake):
    def report(poll, polls):
        seen = [r for p in polls for r in p.records if r["event"] == "log"]
        return Directive.CANCEL if seen else Directive.CONTINUE

    outcome, _ = run_fake(steps=500, report=report)
    assert outcome.status == "cancelled" and outcome.returncode == 3
    assert outcome.result["checkpoint"].startswith("checkpoint-")
    assert outcome.result["global_step"] < 500


def test_a_crash_reports_the_exit_code_the_error_and_the_log(run_fake):
    outcome, _ = run_fake(steps=10, mode="crash")
    assert outcome.status == "failed" and outcome.returncode == 1
    assert outcome.describe_exit() == "exited with code 1"
    assert outcome.error == "RuntimeError: boom"
    assert "Traceback: boom" in outcome.log_tail


def test_a_killed_trainer_is_failed_with_the_signal(run_fake):
    killed = []

    def report(poll, polls):
        if not killed and any(r.get("step") == 2 for p in polls for r in p.records):
            os.kill(poll.pid, signal.SIGKILL)
            killed.append(poll.pid)
        return Directive.CONTINUE

    outcome, _ = run_fake(steps=500, report=report)
    assert outcome.status == "failed"
    assert outcome.describe_exit() == "was killed by SIGKILL"


def test_abort_stops_the_trainer_with_sigterm(run_fake):
    def report(poll, polls):
        started = any(r["event"] == "log" for p in polls for r in p.records)
        return Directive.ABORT if started else Directive.CONTINUE

    outcome, _ = run_fake(steps=500, report=report)
    assert outcome.status == "aborted" and outcome.returncode == 4


def test_timeout_stops_the_trainer_with_a_checkpoint(run_fake):
    outcome, _ = run_fake(steps=5000, timeout_s=1.5)
    assert outcome.status == "timed_out" and outcome.returncode == 4
    assert outcome.result["status"] == "interrupted"


def test_worker_shutdown_interrupts_the_trainer(run_fake):
    flag = {"stop": False}

    def report(poll, polls):
        flag["stop"] = any(r["event"] == "log" for p in polls for r in p.records)
        return Directive.CONTINUE

    outcome, _ = run_fake(steps=5000, report=report, should_interrupt=lambda: flag["stop"])
    assert outcome.status == "interrupted" and outcome.returncode == 4


def test_a_trainer_that_stops_progressing_is_stopped_with_a_checkpoint(run_fake):
    """The heartbeat shows the supervisor alive, not the trainer progressing: a hung trainer is stopped
    once it reports nothing for the progress timeout, long before the job's time limit."""
    started = time.monotonic()
    outcome, polls = run_fake(steps=5000, mode="hang", progress_timeout_s=1.0, timeout_s=600)
    assert outcome.status == "stalled" and outcome.returncode == 4
    assert outcome.result["status"] == "interrupted"
    assert [r["step"] for p in polls for r in p.records if r["event"] == "log"] == [1, 2]
    assert time.monotonic() - started < 60


def test_a_slow_but_progressing_trainer_is_not_stalled(run_fake):
    outcome, _ = run_fake(steps=8, step_s=0.3, progress_timeout_s=1.0)
    assert outcome.status == "succeeded"


def test_a_superseded_attempt_kills_its_trainer_without_a_checkpoint(run_fake):
    """Another attempt owns the job folder: a SIGTERM would make the trainer save a checkpoint there."""

    def report(poll, polls):
        if any(r["event"] == "log" for p in polls for r in p.records):
            return Directive.SUPERSEDED
        return Directive.CONTINUE

    outcome, _ = run_fake(steps=5000, report=report)
    assert outcome.status == "superseded" and outcome.returncode == -signal.SIGKILL
    assert outcome.result is None  # the trainer wrote no result, and no checkpoint


def test_a_trainer_ignoring_the_stop_request_is_killed(run_fake):
    started = time.monotonic()
    outcome, _ = run_fake(steps=5000, mode="ignore-term", timeout_s=1.5, stop_grace_s=0.5)
    assert outcome.status == "timed_out"
    assert outcome.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 30


def test_a_failing_report_leaves_no_trainer_behind(run_fake):
    pids = []

    def report(poll, polls):
        pids.append(poll.pid)
        raise RuntimeError("database gone")

    with pytest.raises(RuntimeError):
        run_fake(steps=5000, report=report)
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_progress_tail_waits_for_a_whole_line_and_skips_garbage(tmp_path):
    path = tmp_path / "p.jsonl"
    tail = ProgressTail(path)
    assert tail.read() == []
    path.write_bytes(b'{"event": "log", "step": 1}\nnot json\n{"event": "lo')
    assert tail.read() == [{"event": "log", "step": 1}]
    with path.open("ab") as fh:
        fh.write(b'g", "step": 2}\n')
    assert tail.read() == [{"event": "log", "step": 2}]


def test_log_tail_keeps_the_last_lines_and_the_final_state_of_redrawn_ones(tmp_path):
    path = tmp_path / "log"
    tail = LogTail(path, lines=3)
    path.write_text("".join(f"line {i}\n" for i in range(10)) + "50%\r75%\r100%\n")
    assert tail.read() is True
    assert tail.text() == "line 8\nline 9\n100%"
    assert tail.read() is False


def test_log_tail_drops_terminal_colour_codes_even_split_across_reads(tmp_path):
    path = tmp_path / "log"
    tail = LogTail(path)
    path.write_bytes(b"\x1b[1mLlamaForTokenClassification LOAD REPORT\x1b[0m from: /m\n\x1b[3")
    tail.read()
    with path.open("ab") as fh:
        fh.write(b"2mMISSING\x1b[0m\n")
    tail.read()
    assert tail.text() == "LlamaForTokenClassification LOAD REPORT from: /m\nMISSING"


def test_output_is_in_its_own_session(run_fake, tmp_path):
    # One killpg reaches every process of the trainer (accelerate launch starts one per GPU).
    sessions = []

    def report(poll, polls):
        if not sessions:
            sessions.append(os.getsid(poll.pid))
        return Directive.CONTINUE

    run_fake(steps=3, report=report)
    assert sessions and sessions[0] != os.getsid(0)


def test_progress_file_from_an_earlier_attempt_is_not_replayed(run_fake, tmp_path):
    (tmp_path / "progress.jsonl").write_text(json.dumps({"event": "log", "step": 99, "loss": 9}) + "\n")
    _, polls = run_fake(steps=2)
    assert 99 not in [r.get("step") for p in polls for r in p.records]


def test_log_path_is_created(run_fake, tmp_path):
    run_fake(steps=1)
    assert Path(tmp_path / "train.log").is_file()
