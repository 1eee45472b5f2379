"""config.db: statements prepared once per PostgreSQL connection, plain everywhere else."""

from __future__ import annotations

import pytest
from django.db import connection

from config import db
from config.db import Statement, run

pytestmark = pytest.mark.django_db

ECHO = Statement("beaverlab_test_echo", "SELECT CAST(%s AS integer) + 1, CAST(%s AS text)")


def test_placeholders_become_numbered_parameters():
    assert (
        ECHO.prepare_sql == "PREPARE beaverlab_test_echo AS SELECT CAST($1 AS integer) + 1, CAST($2 AS text)"
    )
    assert ECHO.placeholders == 2


def test_a_wrong_number_of_parameters_is_refused_before_reaching_the_database():
    with pytest.raises(ValueError, match="takes 2 parameters, got 1"):
        run(ECHO, [1])


def _prepared_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


@pytest.fixture
def persistent_connection(settings):
    """A connection that outlives requests, as in production (DB_CONN_MAX_AGE > 0)."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL feature here")
    old = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 600
    settings.DB_PREPARED_STATEMENTS = True
    # The test connection lives across tests: start each from nothing prepared.
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    setattr(connection, db._PREPARED_ATTR, set())
    yield
    connection.settings_dict["CONN_MAX_AGE"] = old


def test_a_persistent_connection_prepares_once_and_then_executes(persistent_connection):
    assert run(ECHO, [41, "a"]) == [(42, "a")]
    assert "beaverlab_test_echo" in _prepared_names()
    assert run(ECHO, [1, "b"]) == [(2, "b")]  # executed, not prepared a second time (that would fail)


@pytest.mark.django_db(transaction=True)  # closes the connection: no test transaction around it
def test_a_new_connection_prepares_again(persistent_connection):
    run(ECHO, [1, "a"])
    connection.close()
    connection.connect()  # connection_created forgets what the old connection had prepared
    assert "beaverlab_test_echo" not in _prepared_names()
    assert run(ECHO, [2, "b"]) == [(3, "b")]
    assert "beaverlab_test_echo" in _prepared_names()


def test_turned_off_for_poolers_it_runs_plain(persistent_connection, settings):
    settings.DB_PREPARED_STATEMENTS = False
    assert run(ECHO, [1, "x"]) == [(2, "x")]
    assert "beaverlab_test_echo" not in _prepared_names()


def test_a_connection_per_request_runs_plain(settings):
    settings.DB_PREPARED_STATEMENTS = True
    if connection.settings_dict["CONN_MAX_AGE"] != 0:
        pytest.skip("the test database keeps its connection")
    assert run(ECHO, [1, "x"]) == [(2, "x")]
    assert not db._prepares(connection)


def test_the_worker_loop_runs_on_prepared_statements(persistent_connection, project, worker, api):
    from annotate.models import Stage
    from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory

    for _ in range(3):
        Stage1WorkItemFactory(qa_pair=QAPairFactory(prompt=PromptFactory(project=project)))
    client = api(worker)
    for _ in range(3):  # the second and third rounds execute what the first prepared
        task = client.post(
            f"/api/v1/projects/{project.slug}/tasks/next/", {"stage": Stage.CLASSIFY}, format="json"
        )
        assert task.status_code == 200
        done = client.post(
            f"/api/v1/assignments/{task.json()['id']}/submit/", {"categories": []}, format="json"
        )
        assert done.status_code == 200 and done.json()["status"] == "submitted"
    assert {
        "beaverlab_claim",
        "beaverlab_submit_stage1",
        "beaverlab_token_user",
        "beaverlab_project_and_role",
    } <= _prepared_names()
