"""The jobs service's schema, migrated by Alembic at start-up (`upgrade`).

By hand, or a new revision (from the repository root, against a scratch database):

    .venv/bin/alembic -c services/jobs/modelserve/jobs/migrations/alembic.ini \
        -x url=postgresql://modelserve@localhost/scratch upgrade head
    .venv/bin/alembic -c services/jobs/modelserve/jobs/migrations/alembic.ini \
        -x url=postgresql://modelserve@localhost/scratch revision -m "what changes"

The `alembic` command line adopts nothing: a database that 0.1.0 made is adopted by
`upgrade`: the service starting, or `python -m modelserve.jobs.migrations` on the
database of JOBS_DATABASE_URL.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection

from modelserve.common import migrations
from modelserve.jobs.migrations import release_0_1_0

# Every replica migrates as it starts: the first takes this lock, the others wait for it
# and then find the schema at its head. The lock is the one 0.1.0 created its tables under,
# so that a replica of 0.1.0 still starting waits too.
LOCK = "modelserve-jobs"
# Its own, not Alembic's default: services may share one database (and one schema), and
# the gateway's version table is `alembic_version`.
VERSION_TABLE = "alembic_version_jobs"


def adopt(connection: Connection) -> bool:
    """A database with 0.1.0's tables but no version table: brought to exactly revision
    0001 by the statements 0.1.0 ran at every start, which make what an older one lacks."""
    if not migrations.existing_tables(connection, release_0_1_0.TABLES):
        return False
    for statement in release_0_1_0.CREATE:
        connection.exec_driver_sql(statement)
    return True


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database of `url` to `revision`, in one transaction, adopting one that
    0.1.0 made. Tables and version table land in the first schema of the search path."""
    migrations.upgrade(
        url,
        location=Path(__file__).parent,
        lock=LOCK,
        version_table=VERSION_TABLE,
        adopt=adopt,
        revision=revision,
    )


def head() -> str:
    """The newest revision."""
    return migrations.head(Path(__file__).parent)
