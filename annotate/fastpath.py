"""The worker loop on PostgreSQL: each call of next -> submit as one prepared statement.

Crowd-workers call next -> submit all day, so these two calls carry the platform's load. The general
services in annotate.assignment build each step with the ORM, one round trip per step; here each call is
one data-modifying statement (PostgreSQL runs the CTEs of one statement atomically) prepared once per
connection (config.db). The rules are those of annotate.assignment and docs/assignment.md, and the
engine's tests run against both paths:

- claim: the worker's live lease if they hold one; else the fullest open item of the pool that they
  never had, locked with FOR UPDATE SKIP LOCKED, its slot taken with the same conditional UPDATE
  (taken < overlap) and a lease inserted. A second live lease of the same worker and stage is refused
  by the `assignment_one_live_lease` index, which makes the statement fail as a whole.
- submit (on a live lease, by a caller still a member of the project in a role that labels): the lease
  becomes submitted, the item counts one more label and the label is inserted; in stage 2 only if the
  harmless answer agrees with the workers' settled stage-1 safety. Everything else (a revision, a late
  submit on a swept lease, a skipped task, someone else's assignment, a removed member, an answer to
  refuse) returns no row and goes to the general service, which decides.
- settling (the k-th label): votes, consensus and the stage-2 pairing of settled responses.

Skips, the sweep, revisions and adjudication stay in annotate.assignment: they are rare.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection

from annotate.access import LABEL_ROLES
from annotate.models import (
    Assignment,
    AssignmentStatus,
    Project,
    Prompt,
    QAPair,
    ResponsePair,
    Stage,
    Stage1Label,
    Stage2Label,
    WorkItem,
)
from config.db import Statement, column_count, column_list, instance_from_row, run


def enabled() -> bool:
    return connection.vendor == "postgresql" and getattr(settings, "WORKER_LOOP_FAST_PATH", True)


def _insert_columns(model: type, values: dict[str, str]) -> tuple[str, str]:
    """INSERT's column list and SELECT list; every concrete column but id must be given a value."""
    columns = [field.column for field in model._meta.concrete_fields if not field.primary_key]  # type: ignore[attr-defined]
    missing = set(columns) ^ set(values)
    if missing:
        raise RuntimeError(f"{model.__name__}: the fast path does not know the columns {sorted(missing)}")
    return ", ".join(columns), ", ".join(values[column] for column in columns)


_ASSIGNMENT_INSERT = _insert_columns(
    Assignment,
    {
        "project_id": "%s",
        "work_item_id": "took.w_id",
        "worker_id": "%s",
        "stage": "%s",
        "status": f"'{AssignmentStatus.LEASED.value}'",
        "leased_at": "%s::timestamptz",
        "expires_at": "%s::timestamptz",
        "submitted_at": "NULL",
        "skipped_at": "NULL",
        "skip_reason": "''",
        "swapped": "%s::boolean",
    },
)

_LIVE_AND_CAP = f"""live AS (
    SELECT a.id FROM annotate_assignment a
    WHERE a.worker_id = %s AND a.project_id = %s AND a.stage = %s AND a.status = 'leased'
    ORDER BY a.id LIMIT 1
), cap AS (
    SELECT CASE WHEN %s::integer = {Stage.CLASSIFY.value} THEN p.overlap_stage1 ELSE p.overlap_stage2 END AS k
    FROM annotate_project p WHERE p.id = %s
)"""

# The first open item of the worker's queue that they never had, locked for them; `room` and `order`
# say which pool (annotate.assignment._room and _next_open_item hold the same rules).
_PICK = """picked AS (
    SELECT w.id FROM annotate_workitem w CROSS JOIN cap
    WHERE w.project_id = %s AND w.stage = %s AND w.is_gold = {is_gold} AND w.is_open AND {room}
      AND NOT EXISTS (SELECT 1 FROM live)
      AND NOT EXISTS (SELECT 1 FROM annotate_assignment h WHERE h.work_item_id = w.id AND h.worker_id = %s)
    ORDER BY {order}
    LIMIT 1
    FOR UPDATE OF w SKIP LOCKED
)"""


def _claim_sql(*, gold_draw: bool) -> str:
    if gold_draw:
        # Any gold item the worker never had, the least answered first (the worker is least likely to
        # have seen it, and gold answers spread evenly), but only while regular work is left for them:
        # one probe of the open regular queue, in its index order.
        picked = _PICK.format(
            is_gold="true", room="EXISTS (SELECT 1 FROM regular_left)", order="w.taken, w.id DESC"
        )
        # A CTE of its own (not an EXISTS sublink, whose ORDER BY PostgreSQL drops): the open queue's
        # index in its own order, so the probe stops at the first item, never scans the table.
        picked = f"""regular_left AS MATERIALIZED (
    SELECT r.id FROM annotate_workitem r CROSS JOIN cap
    WHERE r.project_id = %s AND r.stage = %s AND r.is_gold = false AND r.is_open AND r.taken < cap.k
      AND NOT EXISTS (SELECT 1 FROM annotate_assignment h WHERE h.work_item_id = r.id AND h.worker_id = %s)
    ORDER BY r.taken DESC, r.id
    LIMIT 1
), {picked}"""
        took_room = "true"
    else:
        # One pool (regular items, or gold items while they still need labels for their consensus),
        # fullest first: items in progress are completed before new ones start.
        picked = _PICK.format(is_gold="%s::boolean", room="w.taken < cap.k", order="w.taken DESC, w.id")
        took_room = "w.taken < cap.k"
    return f"""
WITH {_LIVE_AND_CAP}, {picked}, took AS (
    UPDATE annotate_workitem w SET taken = w.taken + 1, is_open = w.is_gold OR w.taken + 1 < cap.k
    FROM picked CROSS JOIN cap
    WHERE w.id = picked.id AND {took_room}
    RETURNING {column_list(WorkItem, "w", "w_")}
), made AS (
    INSERT INTO annotate_assignment ({_ASSIGNMENT_INSERT[0]})
    SELECT {_ASSIGNMENT_INSERT[1]} FROM took
    RETURNING {column_list(Assignment, "annotate_assignment", "a_")}
), chosen AS (
    SELECT true AS is_new, made.*, took.* FROM made JOIN took ON took.w_id = made.a_work_item_id
    UNION ALL
    SELECT false, {column_list(Assignment, "a", "a_")}, {column_list(WorkItem, "w", "w_")}
    FROM live JOIN annotate_assignment a ON a.id = live.id JOIN annotate_workitem w ON w.id = a.work_item_id
)
SELECT chosen.*, {column_list(QAPair, "q")}, {column_list(Prompt, "p")}
FROM chosen
LEFT JOIN annotate_qapair q ON q.id = chosen.w_qa_pair_id
LEFT JOIN annotate_prompt p ON p.id = q.prompt_id
"""


# Parameters: worker, project, stage (live lease); stage, project (the overlap k as the database has it
# now: an admin may have changed it since the caller read the project); project, stage, is_gold, worker
# (queue); project, worker, stage, now, expires, swapped (lease). A gold item stays open whatever its
# count.
CLAIM = Statement("beaverlab_claim", _claim_sql(gold_draw=False))
# A gold draw. Parameters: as CLAIM, with project, stage, worker (regular work left) before the queue's,
# and no is_gold.
CLAIM_GOLD = Statement("beaverlab_claim_gold", _claim_sql(gold_draw=True))

# Every submit re-checks that the caller is still a member of the assignment's project in a role that
# labels (annotate.access.LABEL_ROLES): a worker removed from the project, or moved to another role,
# gets no row here and the general service answers them (404 or 403). One index probe on the
# (project, user) unique constraint, inside the statement.
_MEMBER_WHO_LABELS = f"""EXISTS (
        SELECT 1 FROM annotate_membership m
        WHERE m.project_id = a.project_id AND m.user_id = a.worker_id
          AND m.role IN ({", ".join(f"'{role}'" for role in LABEL_ROLES)})
          AND m.paused_at IS NULL
    )"""

# As annotate.assignment: whole milliseconds from the lease to this submit (%s), never negative.
_TIME_ON_TASK_MS = "GREATEST(0, FLOOR(EXTRACT(EPOCH FROM (%s::timestamptz - done.a_leased_at)) * 1000))"

# What both submits do once the lease is marked submitted (`done`): count one more label on the item
# (its row stays locked until the transaction ends, which orders the settling) and read the project.
_COUNT_LABEL_AND_READ_PROJECT = f"""item AS (
    UPDATE annotate_workitem w SET labels_count = w.labels_count + 1
    FROM done WHERE w.id = done.a_work_item_id
    RETURNING {column_list(WorkItem, "w", "w_")}
), project AS (
    SELECT {column_list(Project, "p")} FROM annotate_project p JOIN done ON p.id = done.a_project_id
)"""

_LABEL_INSERT = _insert_columns(
    Stage1Label,
    {
        "qa_pair_id": "item.w_qa_pair_id",
        "worker_id": "done.a_worker_id",
        "assignment_id": "done.a_id",
        "categories": "%s::integer",
        "is_safe": "%s::integer = 0",
        "guideline_version": "project.guideline_version",
        "time_on_task_ms": _TIME_ON_TASK_MS,
        "created_at": "%s::timestamptz",
        "updated_at": "%s::timestamptz",
    },
)

# Parameters: now, assignment, worker (lease); categories, categories, now, now, now (label).
SUBMIT_STAGE1 = Statement(
    "beaverlab_submit_stage1",
    f"""
WITH done AS (
    UPDATE annotate_assignment a SET status = 'submitted', submitted_at = %s::timestamptz
    WHERE a.id = %s AND a.worker_id = %s AND a.status = 'leased' AND a.stage = {Stage.CLASSIFY.value}
      AND {_MEMBER_WHO_LABELS}
    RETURNING {column_list(Assignment, "a", "a_")}
), {_COUNT_LABEL_AND_READ_PROJECT}, label AS (
    INSERT INTO annotate_stage1label ({_LABEL_INSERT[0]})
    SELECT {_LABEL_INSERT[1]} FROM done, item, project
    RETURNING id
)
SELECT done.*, item.*, {column_list(QAPair, "q")}, {column_list(Prompt, "p")}, project.*
FROM done
CROSS JOIN item CROSS JOIN project CROSS JOIN label
JOIN annotate_qapair q ON q.id = item.w_qa_pair_id
JOIN annotate_prompt p ON p.id = q.prompt_id
""",
)


_STAGE2_LABEL_INSERT = _insert_columns(
    Stage2Label,
    {
        "response_pair_id": "item.w_response_pair_id",
        "worker_id": "done.a_worker_id",
        "assignment_id": "done.a_id",
        "better": "allowed.better",
        "safer": "allowed.safer",
        "guideline_version": "project.guideline_version",
        "time_on_task_ms": _TIME_ON_TASK_MS,
        "created_at": "%s::timestamptz",
        "updated_at": "%s::timestamptz",
    },
)


def _settled_safety(alias: str) -> str:
    """As annotate.assignment.settled_safety: the settled stage-1 consensus, else unknown (NULL). Never
    the gold label, which would tell a worker the stage-1 gold answer."""
    return f"CASE WHEN {alias}_item.settled_at IS NOT NULL THEN {alias}_item.consensus_safe END"


# Parameters: assignment, worker (lease); better, safer as shown (0 = A, 1 = B); now (lease);
# now, now, now (label). The answers are stored in the pair's canonical order (XOR the display swap).
# A harmless answer that contradicts exactly one safe response leaves `allowed` empty: no row, and
# label_submit refuses it with its message.
SUBMIT_STAGE2 = Statement(
    "beaverlab_submit_stage2",
    f"""
WITH answer AS (
    SELECT a.id, rp.qa_a_id, rp.qa_b_id,
           %s::integer # a.swapped::integer AS better, %s::integer # a.swapped::integer AS safer
    FROM annotate_assignment a
    JOIN annotate_workitem w ON w.id = a.work_item_id
    JOIN annotate_responsepair rp ON rp.id = w.response_pair_id
    WHERE a.id = %s AND a.worker_id = %s AND a.status = 'leased' AND a.stage = {Stage.RANK.value}
      AND {_MEMBER_WHO_LABELS}
), safety AS (
    SELECT {_settled_safety("a")} AS safe_a, {_settled_safety("b")} AS safe_b
    FROM answer
    LEFT JOIN annotate_workitem a_item ON a_item.qa_pair_id = answer.qa_a_id
    LEFT JOIN annotate_workitem b_item ON b_item.qa_pair_id = answer.qa_b_id
), allowed AS (
    SELECT answer.* FROM answer, safety
    WHERE safety.safe_a IS NULL OR safety.safe_b IS NULL OR safety.safe_a = safety.safe_b
       OR answer.safer = CASE WHEN safety.safe_a THEN 0 ELSE 1 END
), done AS (
    UPDATE annotate_assignment a SET status = 'submitted', submitted_at = %s::timestamptz
    FROM allowed WHERE a.id = allowed.id AND a.status = 'leased'
    RETURNING {column_list(Assignment, "a", "a_")}
), {_COUNT_LABEL_AND_READ_PROJECT}, label AS (
    INSERT INTO annotate_stage2label ({_STAGE2_LABEL_INSERT[0]})
    SELECT {_STAGE2_LABEL_INSERT[1]} FROM done, item, project, allowed
    RETURNING id
)
SELECT done.*, item.*, project.*
FROM done CROSS JOIN item CROSS JOIN project CROSS JOIN label
""",
)


def _assignment_from_row(row: tuple) -> Assignment:
    """The assignment with its item, QA pair and prompt attached, so showing it reads nothing more."""
    at = 0
    assignment = instance_from_row(Assignment, row, at)
    at += column_count(Assignment)
    item = instance_from_row(WorkItem, row, at)
    at += column_count(WorkItem)
    if item.qa_pair_id is not None:
        qa = instance_from_row(QAPair, row, at)
        qa.prompt = instance_from_row(Prompt, row, at + column_count(QAPair))
        item.qa_pair = qa
    assignment.work_item = item
    return assignment


def claim(
    *,
    project_id: int,
    worker_id: int,
    stage: int,
    is_gold: bool,
    uncapped_gold: bool,
    now: datetime,
    lease: timedelta,
    swapped: bool,
) -> tuple[Assignment, bool] | None:
    """One pool's claim: (assignment, is_new), the live lease (is_new False), or None when the pool
    has nothing for this worker. uncapped_gold: a gold draw, which takes any gold item the worker has
    not had, however many answered it, while regular work is left for them. Raises IntegrityError if the
    worker's other call took a lease first."""
    head = [worker_id, project_id, stage, stage, project_id]
    tail = [project_id, worker_id, stage, now, now + lease, swapped]
    if uncapped_gold:
        rows = run(CLAIM_GOLD, [*head, project_id, stage, worker_id, project_id, stage, worker_id, *tail])
    else:
        rows = run(CLAIM, [*head, project_id, stage, is_gold, worker_id, *tail])
    if not rows:
        return None
    is_new, *columns = rows[0]
    return _assignment_from_row(tuple(columns)), bool(is_new)


def _submitted(rows: list[tuple]) -> Assignment | None:
    """The submitted assignment from a submit's row (the project's columns come last), if any."""
    if not rows:
        return None
    row = rows[0]
    assignment = _assignment_from_row(row)
    assignment.project = instance_from_row(Project, row, len(row) - column_count(Project))
    return assignment


def submit_stage1(*, assignment_id: int, worker_id: int, categories: int, now: datetime) -> Assignment | None:
    """Store a stage-1 label on the worker's live lease; None when the general service must decide.

    The assignment comes back submitted, with its project, item, QA pair and prompt attached."""
    return _submitted(
        run(SUBMIT_STAGE1, [now, assignment_id, worker_id, categories, categories, now, now, now])
    )


def submit_stage2(
    *, assignment_id: int, worker_id: int, better_shown: int, safer_shown: int, now: datetime
) -> Assignment | None:
    """Store a stage-2 label on the worker's live lease; None when the general service must decide
    (which includes a harmless answer that the known stage-1 safety contradicts)."""
    return _submitted(
        run(SUBMIT_STAGE2, [better_shown, safer_shown, assignment_id, worker_id, now, now, now, now])
    )


# --- settling: the k-th label's follow-up, in the same transaction as the submit -------------------

STAGE1_VOTES = Statement(
    "beaverlab_stage1_votes", "SELECT categories FROM annotate_stage1label WHERE qa_pair_id = %s"
)
STAGE2_VOTES = Statement(
    "beaverlab_stage2_votes", "SELECT better, safer FROM annotate_stage2label WHERE response_pair_id = %s"
)
SETTLE = Statement(
    "beaverlab_settle",
    """UPDATE annotate_workitem SET settled_at = %s::timestamptz, is_open = %s::boolean,
    consensus_categories = %s::integer, consensus_safe = %s::boolean, consensus_better = %s::integer,
    consensus_safer = %s::integer
    WHERE id = %s""",
)
NEEDS_ADJUDICATION = Statement(
    "beaverlab_needs_adjudication", "UPDATE annotate_workitem SET needs_adjudication = true WHERE id = %s"
)
# Two responses of one prompt settling at once must each see the other's consensus: the prompt row
# serialises them, and the pairing reads the settled responses in a statement of its own after the lock
# (a statement sees what was committed before it started).
LOCK_PROMPT = Statement("beaverlab_lock_prompt", "SELECT id FROM annotate_prompt WHERE id = %s FOR UPDATE")

_PAIR_INSERT = _insert_columns(
    ResponsePair,
    {
        "project_id": "%s",
        "prompt_id": "%s",
        "qa_a_id": "missing.qa_a_id",
        "qa_b_id": "missing.qa_b_id",
        "created_at": "%s::timestamptz",
    },
)
_PAIR_ITEM_INSERT = _insert_columns(
    WorkItem,
    {
        "project_id": "%s",
        "stage": str(Stage.RANK.value),
        "qa_pair_id": "NULL",
        "response_pair_id": "pairs.id",
        "is_gold": "false",
        "taken": "0",
        "labels_count": "0",
        "is_open": "true",
        "settled_at": "NULL",
        "consensus_categories": "NULL",
        "consensus_safe": "NULL",
        "consensus_better": "NULL",
        "consensus_safer": "NULL",
        "needs_adjudication": "false",
        "created_at": "%s::timestamptz",
    },
)
# Parameters: prompt (settled); cap, cap, prompt (room left under max_pairs_per_prompt, NULL: no cap);
# project, prompt, now (pairs); project, now (their stage-2 items). As response_pairs_create_for_prompt:
# every missing pair of settled responses, in (qa_a, qa_b) order, up to the room left.
PAIR_SETTLED_RESPONSES = Statement(
    "beaverlab_pair_settled_responses",
    f"""
WITH settled AS (
    SELECT q.id FROM annotate_qapair q JOIN annotate_workitem w ON w.qa_pair_id = q.id
    WHERE q.prompt_id = %s AND w.settled_at IS NOT NULL
), missing AS (
    SELECT a.id AS qa_a_id, b.id AS qa_b_id FROM settled a JOIN settled b ON a.id < b.id
    WHERE NOT EXISTS (SELECT 1 FROM annotate_responsepair rp WHERE rp.qa_a_id = a.id AND rp.qa_b_id = b.id)
    ORDER BY a.id, b.id
    LIMIT (
        SELECT CASE WHEN %s::integer IS NULL THEN NULL ELSE GREATEST(0, %s::integer - count(*)) END
        FROM annotate_responsepair WHERE prompt_id = %s
    )
), pairs AS (
    INSERT INTO annotate_responsepair ({_PAIR_INSERT[0]})
    SELECT {_PAIR_INSERT[1]} FROM missing
    RETURNING id
), items AS (
    INSERT INTO annotate_workitem ({_PAIR_ITEM_INSERT[0]})
    SELECT {_PAIR_ITEM_INSERT[1]} FROM pairs
    RETURNING id
)
SELECT count(*) FROM items
""",
)


def stage1_votes(qa_pair_id: int) -> list[int]:
    return [mask for (mask,) in run(STAGE1_VOTES, [qa_pair_id])]


def stage2_votes(response_pair_id: int) -> list[tuple[int, int]]:
    return [(better, safer) for better, safer in run(STAGE2_VOTES, [response_pair_id])]


def save_settled(item: WorkItem) -> None:
    run(
        SETTLE,
        [
            item.settled_at,
            item.is_open,
            item.consensus_categories,
            item.consensus_safe,
            item.consensus_better,
            item.consensus_safer,
            item.pk,
        ],
    )


def save_needs_adjudication(item_id: int) -> None:
    run(NEEDS_ADJUDICATION, [item_id])


def pair_settled_responses(*, project: Project, prompt_id: int, now: datetime) -> int:
    """Queue the prompt's new pairs of settled responses for stage 2; how many were created."""
    cap = project.max_pairs_per_prompt
    run(LOCK_PROMPT, [prompt_id])
    rows = run(
        PAIR_SETTLED_RESPONSES,
        [prompt_id, cap, cap, prompt_id, project.pk, prompt_id, now, project.pk, now],
    )
    return int(rows[0][0])
