"""The gateway's schema, migrated by Alembic at start-up (`upgrade`).

New revision (from the repository root, against a scratch database):

    .venv/bin/alembic -c services/gateway/modelserve/gateway/migrations/alembic.ini \
        -x url=postgresql+psycopg://modelserve@localhost/scratch revision -m "what changes"
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

from modelserve.common.database import sqlalchemy_url

# Every replica migrates as it starts: the first takes this lock, the others wait for it
# and then find the schema at its head, with nothing left to do.
LOCK = "modelserve-gateway-migrations"
logger = logging.getLogger(__name__)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database of `url` to `revision`, in one transaction.

    Alembic's version table and the tables land in the first schema of the connection's
    search path (tests set one per test with `?options=-csearch_path%3D<schema>`).
    """
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext(%s))", (LOCK,))
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    finally:
        engine.dispose()
