"""PostgreSQL as every service uses it: a pool of autocommit connections, an unreachable
database as one exception, queries that answer dict rows, and LISTEN with reconnection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from modelserve.common.errors import ApiError

logger = logging.getLogger(__name__)
Connection = psycopg.AsyncConnection[Any]
Params = dict[str, Any] | list[Any]
T = TypeVar("T")


def sqlalchemy_url(url: str) -> str:
    """A libpq URL as SQLAlchemy takes it, with the psycopg (3) driver."""
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached right now: a 503 for clients, a pause for workers."""


async def open_pool(url: str, *, size: int, wait: float, min_size: int = 1) -> AsyncConnectionPool:
    """An opened pool of autocommit connections; a request waits `wait` s for one."""
    pool = AsyncConnectionPool(
        url,
        min_size=min(min_size, size),
        max_size=size,
        timeout=wait,
        kwargs={"autocommit": True},
        open=False,
    )
    await pool.open()
    return pool


@contextlib.asynccontextmanager
async def connection(pool: AsyncConnectionPool) -> AsyncIterator[Connection]:
    """A pooled connection; a database that cannot be reached (no connection in time, or
    one lost) is DatabaseUnavailable, whether it happens now or in the work done with it."""
    try:
        async with pool.connection() as conn:
            yield conn
    except PoolTimeout as error:
        raise DatabaseUnavailable(f"no database connection within {pool.timeout:.0f} s") from error
    except psycopg.OperationalError as error:
        # psycopg's text names the database's host and port: logged, never answered.
        logger.warning("the database is unavailable: %s", error)
        raise DatabaseUnavailable("the database is unavailable") from error


async def run_for_clients(
    pool: AsyncConnectionPool, work: Callable[[Connection], Awaitable[T]], *, what: str
) -> T:
    """`work` on a pooled connection, its failures as a client should hear them: the
    database gone is 503 `database_unavailable` with Retry-After (the details, hosts and
    users, go to the log only), a value PostgreSQL cannot hold (a NUL in a name) 422
    `invalid_request`. `what` names the database: "the accounts database"."""
    try:
        async with connection(pool) as conn:
            return await work(conn)
    except DatabaseUnavailable as error:
        logger.warning("%s: %s", what, error)
        raise ApiError(
            503, "database_unavailable", f"{what} is unavailable", {"Retry-After": "1"}
        ) from error
    except psycopg.DataError as error:
        raise ApiError(422, "invalid_request", error.diag.message_primary or str(error)) from error


async def fetch_one(pool: AsyncConnectionPool, query: str, params: Params) -> dict[str, Any] | None:
    async with connection(pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchone()


async def fetch_all(pool: AsyncConnectionPool, query: str, params: Params) -> list[dict[str, Any]]:
    async with connection(pool) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()


async def listen(
    url: str,
    channel: str,
    notified: Callable[[str | None], Awaitable[None]],
    *,
    what: str,
    retry: float = 2.0,
) -> None:
    """`notified(payload)` for every NOTIFY on `channel`, from any replica, and
    `notified(None)` after every (re)connection, since what was sent meanwhile is lost.
    Runs until cancelled; a lost connection is logged and made again after `retry` s."""
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {channel}")
                await notified(None)
                async for notification in conn.notifies():
                    await notified(notification.payload)
        except (psycopg.OperationalError, DatabaseUnavailable) as error:
            logger.warning("%s: %s; listening again in %.0f s", what, error, retry)
        await asyncio.sleep(retry)
