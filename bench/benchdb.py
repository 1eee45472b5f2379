"""Shared set-up for the PostgreSQL benchmarks: a dedicated database, created fresh and migrated."""

from __future__ import annotations

import os


def recreate_database(benchmark: str, *, keep: bool) -> None:
    """Create DATABASE_URL's database if missing (dropping it first unless keep), set up Django, migrate."""
    import dj_database_url
    import psycopg2

    settings = dj_database_url.parse(os.environ["DATABASE_URL"])
    if settings["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit(f"{benchmark} benchmarks PostgreSQL: set DATABASE_URL=postgres://...")
    name = settings["NAME"]
    admin = psycopg2.connect(
        dbname="postgres",
        user=settings["USER"] or "postgres",
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        if not keep:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def backend_pid() -> int:
    """The process id of this connection's PostgreSQL backend (to read its CPU time)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    return int(pid)


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) of a local process, from /proc; None where that is unreadable."""
    from pathlib import Path

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    import platform
    from pathlib import Path

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def postgres_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        (version,) = cursor.fetchone()
    return str(version)
