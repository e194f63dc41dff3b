"""The usage outbox against real PostgreSQL: replicas claim disjoint rows and send each
claim in one batch, a claim holds for its lease, a failed delivery waits longer each time,
a delivered one is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
import pytest

from modelserve.common.database import open_pool
from modelserve.gateway import migrations
from modelserve.gateway.metrics import GatewayMetrics
from modelserve.gateway.usage_outbox import OutboxSettings, UsageOutbox

pytestmark = pytest.mark.postgres

SETTINGS = OutboxSettings(
    flush_seconds=3600,  # the loops are not started: the test runs each step
    retry_seconds=30,
    retry_max_seconds=300,
    batch_size=6,
    lease_seconds=60,
    queue_size=100,
)


def rows(database: str) -> dict[str, tuple[int, float]]:
    """id -> (attempts, seconds until its next try)."""
    with psycopg.connect(database, autocommit=True) as conn:
        found = conn.execute(
            "SELECT id, attempts, extract(epoch FROM next_attempt_at - now()) FROM usage_outbox"
        ).fetchall()
    return {str(row[0]): (row[1], float(row[2])) for row in found}


Sender = Callable[[Sequence[bytes]], Awaitable[list[tuple[int, bytes]]]]


def run(
    database: str,
    sends: list[Sender],
    work: Callable[[list[UsageOutbox]], Awaitable[Any]],
) -> Any:
    async def main() -> Any:
        outboxes = [
            UsageOutbox(await open_pool(database, size=2, wait=5), send, GatewayMetrics(), SETTINGS)
            for send in sends
        ]
        try:
            return await work(outboxes)
        finally:
            for outbox in outboxes:
                await outbox.close()

    return asyncio.run(main())


def test_replicas_share_the_outbox_without_sending_a_row_twice(gateway_database: str) -> None:
    migrations.upgrade(gateway_database)
    sent: list[list[str]] = [[], []]

    batches: list[int] = []

    def sender(replica: int) -> Sender:
        async def send(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
            sent[replica] += [json.loads(record)["id"] for record in records]
            batches.append(len(records))
            await asyncio.sleep(0.05)  # both replicas' claims overlap
            return [(200, b"{}") if replica == 0 else (503, b"down")] * len(records)

        return send

    ids = [str(uuid.uuid4()) for _ in range(10)]

    async def work(outboxes: list[UsageOutbox]) -> None:
        # A third replica writes the rows and stops before it sends them: due for the others.
        writer = UsageOutbox(
            await open_pool(gateway_database, size=1, wait=5), refuse, GatewayMetrics(), SETTINGS
        )
        for usage_id in ids:
            writer.add(uuid.UUID(usage_id), {"id": usage_id, "principal": {"subject": "a"}})
        await writer.write_pending()
        await writer.close()
        assert all(
            attempts == 0 and wait <= 0 for attempts, wait in rows(gateway_database).values()
        )
        claimed = await asyncio.gather(*(outbox.send_due() for outbox in outboxes))
        assert sorted(claimed) == [4, 6]  # a batch is 6 rows: 6 and the 4 left
        # Nothing is due now: the delivered rows are gone, the failed ones wait.
        assert await asyncio.gather(*(outbox.send_due() for outbox in outboxes)) == [0, 0]

    run(gateway_database, [sender(0), sender(1)], work)
    assert sorted(sent[0] + sent[1]) == sorted(ids)  # every row sent once, by one replica
    assert sorted(batches) == [4, 6]  # each claim in one call
    left = rows(gateway_database)
    assert sorted(left) == sorted(sent[1])  # replica 1's were refused: they stay
    assert all(attempts == 1 and 25 < wait <= 30 for attempts, wait in left.values())


def test_a_replica_sends_what_it_wrote_without_claiming_it_again(gateway_database: str) -> None:
    migrations.upgrade(gateway_database)
    sent: list[list[str]] = [[], []]

    def sender(replica: int) -> Sender:
        async def send(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
            sent[replica] += [json.loads(record)["id"] for record in records]
            return [(200, b"{}")] * len(records)

        return send

    ids = [str(uuid.uuid4()) for _ in range(8)]

    async def work(outboxes: list[UsageOutbox]) -> None:
        writer, other = outboxes
        for usage_id in ids:
            writer.add(uuid.UUID(usage_id), {"id": usage_id})
        await writer.write_pending()
        # Written claimed for the writer's sender, as a claim would hold them.
        assert all(
            attempts == 1 and 55 < wait <= 60 for attempts, wait in rows(gateway_database).values()
        )
        assert await other.send_due() == 0  # nothing due for another replica
        assert await writer.send_due() == 6  # a batch from memory: no claim
        assert await writer.send_due() == 2
        assert rows(gateway_database) == {}  # delivered, deleted
        # What a replica wrote and did not send when it stops is due at once, for any.
        for usage_id in ids[:3]:
            writer.add(uuid.UUID(usage_id), {"id": usage_id})
        await writer.write_pending()

    run(gateway_database, [sender(0), sender(1)], work)
    assert sent == [ids, []]
    left = rows(gateway_database)
    assert sorted(left) == sorted(ids[:3])
    assert all(attempts == 0 and wait <= 0 for attempts, wait in left.values())


def test_what_a_dead_replica_wrote_is_sent_by_another_after_the_lease(
    gateway_database: str,
) -> None:
    migrations.upgrade(gateway_database)
    short = dataclasses.replace(SETTINGS, lease_seconds=1)
    sent: list[str] = []

    async def send(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
        sent.extend(json.loads(record)["id"] for record in records)
        return [(200, b"{}")] * len(records)

    ids = [str(uuid.uuid4()) for _ in range(3)]

    async def main() -> None:
        dead = UsageOutbox(
            await open_pool(gateway_database, size=1, wait=5), refuse, GatewayMetrics(), short
        )
        for usage_id in ids:
            dead.add(uuid.UUID(usage_id), {"id": usage_id})
        await dead.write_pending()
        # It dies: its connections go, nothing of close() runs (the rows stay claimed).
        await dead._pool.close()
        other = UsageOutbox(
            await open_pool(gateway_database, size=1, wait=5), send, GatewayMetrics(), short
        )
        try:
            assert await other.send_due() == 0  # claimed by the dead replica
            await asyncio.sleep(1.2)  # its lease runs out
            assert await other.send_due() == 3
        finally:
            await other.close()

    asyncio.run(main())
    assert sorted(sent) == sorted(ids)
    assert rows(gateway_database) == {}


def test_the_writer_hands_over_at_most_its_queue_and_writes_the_rest_due(
    gateway_database: str,
) -> None:
    migrations.upgrade(gateway_database)
    small = dataclasses.replace(SETTINGS, queue_size=4)

    async def main() -> None:
        outbox = UsageOutbox(
            await open_pool(gateway_database, size=1, wait=5), refuse, GatewayMetrics(), small
        )
        try:
            for batch in (3, 2):
                for _ in range(batch):
                    usage_id = uuid.uuid4()
                    outbox.add(usage_id, {"id": str(usage_id)})
                await outbox.write_pending()
            written = rows(gateway_database)
            # The first three went to the sender; two more would pass its four: due.
            assert sorted(attempts for attempts, _ in written.values()) == [0, 0, 1, 1, 1]
            assert await outbox.send_due() == 5  # its three, and the two claimed
        finally:
            await outbox.close()

    asyncio.run(main())


def test_a_refused_row_waits_longer_each_time_and_is_never_dropped(gateway_database: str) -> None:
    migrations.upgrade(gateway_database)
    usage_id = uuid.uuid4()

    async def work(outboxes: list[UsageOutbox]) -> None:
        (outbox,) = outboxes
        outbox.add(usage_id, {"id": str(usage_id)})
        await outbox.write_pending()
        for attempt in range(1, 5):
            assert await outbox.send_due() == 1
            attempts, wait = rows(gateway_database)[str(usage_id)]
            assert attempts == attempt
            expected = min(300, 30 * 2 ** (attempt - 1))
            assert 0.85 * expected < wait <= expected
            with psycopg.connect(gateway_database, autocommit=True) as conn:
                conn.execute("UPDATE usage_outbox SET next_attempt_at = now()")

    run(gateway_database, [refuse], work)
    with psycopg.connect(gateway_database, autocommit=True) as conn:
        (error,) = conn.execute("SELECT last_error FROM usage_outbox").fetchone() or ("",)
    assert error == "the contract service is unreachable"


def test_past_its_queue_a_record_is_dropped_and_counted(gateway_database: str) -> None:
    migrations.upgrade(gateway_database)
    metrics = GatewayMetrics()

    async def main() -> None:
        small = dataclasses.replace(SETTINGS, queue_size=3)
        outbox = UsageOutbox(
            await open_pool(gateway_database, size=1, wait=5), refuse, metrics, small
        )
        try:
            for _ in range(5):  # the writer is not running: as if the database were down
                usage_id = uuid.uuid4()
                outbox.add(usage_id, {"id": str(usage_id)})
        finally:
            await outbox.close()  # writes the three that waited

    asyncio.run(main())
    assert metrics.registry.get_sample_value("modelserve_gateway_usage_records_dropped_total") == 2
    assert len(rows(gateway_database)) == 3


async def refuse(records: Sequence[bytes]) -> list[tuple[int, bytes]]:
    return [(0, b"the contract service is unreachable")] * len(records)
