"""Active versions and their history in PostgreSQL.

Each model name has at most one active version (`model_active`, name -> model id). Every
change is a row of `model_history`: a person's `set_active` (to an earlier version: a
manual rollback), or the platform's `automatic_rollback` when a rollout failed on a
server. Changes of one name are serialised by an advisory lock on the name.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from modelserve.common.database import connection, fetch_all, fetch_one
from modelserve.common.model_versions import (
    ActiveVersion,
    HistoryEntry,
    LastRollback,
    RollbackAnswer,
    SetActiveAnswer,
    VersionRef,
)
from modelserve.download.jobs import lock_name, visible_condition

PLATFORM_ACTOR = "platform"


class VersionNotFound(LookupError):
    """No such version, or none the caller may see."""


class NameNotOpen(PermissionError):
    """The name's active version is one the caller may not see."""


class RolloutNotFound(LookupError):
    pass


class NotThisRollout(ValueError):
    """A rollback report whose versions are not those of the rollout it names."""


class NotTheActorsServer(PermissionError):
    """A rollback report of a server that is neither the platform's nor the set_active's
    actor's: its owner cannot move the name back for everyone."""


def _both_visible(row: str) -> str:
    """A condition: both versions of history row `row` are visible to `who` (a side
    that is NULL, no version, counts as visible)."""
    return f"""({row}.from_id IS NULL OR {visible_condition(f"{row}.from_id")})
        AND ({row}.to_id IS NULL OR {visible_condition(f"{row}.to_id")})"""


async def _uri(cur: psycopg.AsyncCursor[Any], model_id: str | None) -> str | None:
    if model_id is None:
        return None
    await cur.execute("SELECT uri FROM models WHERE id = %s", [model_id])
    row = await cur.fetchone()
    return str(row["uri"]) if row else None


class Versions:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool

    async def set_active(
        self, model_id: str, *, actor: str, who: str | None, reason: str | None
    ) -> SetActiveAnswer:
        """Make ready version `model_id` the active one of its name; nothing new when it is
        already. VersionNotFound when `who` may not see it; NameNotOpen when the name's
        active version is one `who` may not see."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> SetActiveAnswer:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    f"""SELECT id, name, uri FROM models
                        WHERE id = %(id)s AND state = 'ready' AND {visible_condition("%(id)s")}""",
                    {"id": model_id, "who": who},
                )
                model = await cur.fetchone()
                if model is None:
                    raise VersionNotFound(model_id)
                name = model["name"]
                await lock_name(cur, name)
                await cur.execute(
                    f"""SELECT a.*, {visible_condition("a.model_id")} AS visible
                        FROM model_active a WHERE name = %(name)s""",
                    {"name": name, "who": who},
                )
                current = await cur.fetchone()
                if current is not None and not current["visible"]:
                    raise NameNotOpen(name)
                if current is not None and current["model_id"] == model_id:
                    # The set_active that made it active: the rollout the servers run (the
                    # pointer's own history_id may be an automatic rollback's).
                    # Its previous version only if the caller may see that one too.
                    await cur.execute(
                        f"""
                        SELECT h.id, h.from_id,
                            h.from_id IS NOT NULL AND {visible_condition("h.from_id")} AS visible
                        FROM model_history h
                        WHERE name = %(name)s AND to_id = %(id)s AND action = 'set_active'
                        ORDER BY id DESC LIMIT 1
                        """,
                        {"name": name, "id": model_id, "who": who},
                    )
                    made = await cur.fetchone()
                    before = made["from_id"] if made and made["visible"] else None
                    return SetActiveAnswer(
                        name=name,
                        id=model_id,
                        uri=model["uri"],
                        previous=VersionRef(id=before, uri=await _uri(cur, before))
                        if before
                        else None,
                        history_id=made["id"] if made else current["history_id"],
                        changed=False,
                    )
                before = current["model_id"] if current else None
                await cur.execute(
                    """
                    INSERT INTO model_history (name, from_id, to_id, actor, action, reason)
                    VALUES (%s, %s, %s, %s, 'set_active', %s) RETURNING id
                    """,
                    [name, before, model_id, actor, reason],
                )
                history = await cur.fetchone()
                assert history is not None
                await cur.execute(
                    """
                    INSERT INTO model_active (name, model_id, set_by, set_at, history_id)
                    VALUES (%s, %s, %s, now(), %s)
                    ON CONFLICT (name) DO UPDATE SET model_id = excluded.model_id,
                        set_by = excluded.set_by, set_at = now(),
                        history_id = excluded.history_id
                    """,
                    [name, model_id, actor, history["id"]],
                )
                return SetActiveAnswer(
                    name=name,
                    id=model_id,
                    uri=model["uri"],
                    previous=VersionRef(id=before, uri=await _uri(cur, before)) if before else None,
                    history_id=history["id"],
                    changed=True,
                )

        async with connection(self._pool) as conn:
            return await work(conn)

    async def active(self, *, who: str | None, name: str | None = None) -> list[ActiveVersion]:
        """The active version of each name (or of `name`) whose version `who` may see,
        with the name's latest automatic rollback whose versions `who` may both see."""
        rows = await fetch_all(
            self._pool,
            f"""
            SELECT a.name, a.model_id, m.uri, a.set_by, a.set_at, a.history_id,
                   r.id AS r_id, r.rollout_id AS r_rollout_id, r.server AS r_server,
                   r.from_id AS r_failed_id, r.to_id AS r_restored_id, r.reason AS r_reason,
                   r.message AS r_message, r.pointer_moved AS r_pointer_moved, r.at AS r_at
            FROM model_active a
            JOIN models m ON m.id = a.model_id
            LEFT JOIN LATERAL (
                SELECT * FROM model_history h
                WHERE h.name = a.name AND h.action = 'automatic_rollback'
                  AND {_both_visible("h")}
                ORDER BY h.id DESC LIMIT 1
            ) r ON true
            WHERE (%(name)s::text IS NULL OR a.name = %(name)s)
              AND {visible_condition("a.model_id")}
            ORDER BY a.name
            """,
            {"name": name, "who": who},
        )
        return [
            ActiveVersion(
                name=row["name"],
                id=row["model_id"],
                uri=row["uri"],
                set_by=row["set_by"],
                set_at=row["set_at"],
                history_id=row["history_id"],
                last_rollback=LastRollback(
                    history_id=row["r_id"],
                    rollout_id=row["r_rollout_id"],
                    server=row["r_server"],
                    failed_id=row["r_failed_id"],
                    restored_id=row["r_restored_id"],
                    reason=row["r_reason"],
                    message=row["r_message"],
                    pointer_moved=row["r_pointer_moved"],
                    at=row["r_at"],
                )
                if row["r_id"] is not None
                else None,
            )
            for row in rows
        ]

    async def history(
        self, *, who: str | None, name: str | None, limit: int, offset: int
    ) -> tuple[list[HistoryEntry], int]:
        """Changes, newest first, whose versions `who` may both see (a missing one counts
        as seen); and how many there are in all."""
        matching = f"""(%(name)s::text IS NULL OR h.name = %(name)s) AND {_both_visible("h")}"""
        params = {"name": name, "who": who, "limit": limit, "offset": offset}
        rows = await fetch_all(
            self._pool,
            f"""
            SELECT h.*, count(*) OVER () AS total FROM model_history h WHERE {matching}
            ORDER BY h.id DESC LIMIT %(limit)s OFFSET %(offset)s
            """,
            params,
        )
        total = int(rows[0]["total"]) if rows else 0
        if not rows and offset:
            # Past the end: the count comes from no row, so ask for it alone.
            counted = await fetch_one(
                self._pool,
                f"SELECT count(*) AS total FROM model_history h WHERE {matching}",
                params,
            )
            total = int(counted["total"]) if counted else 0
        return [HistoryEntry.model_validate(row) for row in rows], total

    async def rollback(
        self,
        *,
        rollout_id: int,
        server: str,
        server_uid: str,
        failed_id: str,
        restored_id: str | None,
        reason: str | None,
        message: str | None,
        server_owner: str | None = None,
        platform_server: bool = False,
    ) -> RollbackAnswer:
        """Record the automatic rollback of rollout `rollout_id` on a server, once per
        (rollout, server uid); the name's pointer moves back to `restored_id` (or is
        removed, with none) only if it still points at `failed_id`. The report must be of
        that very change: `failed_id` its to_id, `restored_id` its from_id (None: its
        from_id); NotThisRollout otherwise. And of a server of the platform's or of the
        set_active's actor: a tenant's server that an admin's set_active rolled, which its
        owner can make fail at will, rolls only itself back (NotTheActorsServer)."""

        async def work(conn: psycopg.AsyncConnection[Any]) -> RollbackAnswer:
            async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(
                    """SELECT name, from_id, to_id, actor FROM model_history
                       WHERE id = %s AND action = 'set_active'""",
                    [rollout_id],
                )
                rollout = await cur.fetchone()
                if rollout is None:
                    raise RolloutNotFound(rollout_id)
                actors = server_owner is not None and server_owner == rollout["actor"]
                if not (platform_server or actors):
                    raise NotTheActorsServer(
                        f"{server} is {server_owner or 'nobody'}'s, not a platform server nor"
                        f" one of {rollout['actor']}, who made rollout {rollout_id}: its"
                        " rollback is its own, the name's active version stays"
                    )
                name, restored = rollout["name"], restored_id or rollout["from_id"]
                if failed_id != rollout["to_id"] or restored != rollout["from_id"]:
                    raise NotThisRollout(
                        f"rollout {rollout_id} set {name} from {rollout['from_id']} to "
                        f"{rollout['to_id']}: a rollback of it fails {rollout['to_id']} and "
                        f"restores {rollout['from_id']}, not {failed_id} and {restored_id}"
                    )
                await lock_name(cur, name)
                await cur.execute(
                    """
                    INSERT INTO model_history (name, from_id, to_id, actor, action, reason,
                        message, rollout_id, server, server_uid)
                    VALUES (%s, %s, %s, %s, 'automatic_rollback', %s, %s, %s, %s, %s)
                    ON CONFLICT (rollout_id, server_uid) WHERE action = 'automatic_rollback'
                    DO NOTHING
                    RETURNING id
                    """,
                    [
                        name,
                        failed_id,
                        restored,
                        PLATFORM_ACTOR,
                        reason,
                        message,
                        rollout_id,
                        server,
                        server_uid,
                    ],
                )
                inserted = await cur.fetchone()
                if inserted is None:
                    await cur.execute(
                        """SELECT * FROM model_history WHERE rollout_id = %s AND server_uid = %s
                           AND action = 'automatic_rollback'""",
                        [rollout_id, server_uid],
                    )
                    entry = HistoryEntry.model_validate(await cur.fetchone())
                    return RollbackAnswer(
                        entry=entry, pointer_moved=bool(entry.pointer_moved), duplicate=True
                    )
                if restored is not None:
                    await cur.execute(
                        """
                        UPDATE model_active SET model_id = %s, set_by = %s, set_at = now(),
                            history_id = %s
                        WHERE name = %s AND model_id = %s
                        """,
                        [restored, PLATFORM_ACTOR, inserted["id"], name, failed_id],
                    )
                else:
                    await cur.execute(
                        "DELETE FROM model_active WHERE name = %s AND model_id = %s",
                        [name, failed_id],
                    )
                moved = cur.rowcount == 1
                await cur.execute(
                    "UPDATE model_history SET pointer_moved = %s WHERE id = %s RETURNING *",
                    [moved, inserted["id"]],
                )
                entry = HistoryEntry.model_validate(await cur.fetchone())
                return RollbackAnswer(
                    entry=entry, pointer_moved=bool(entry.pointer_moved), duplicate=False
                )

        async with connection(self._pool) as conn:
            return await work(conn)
