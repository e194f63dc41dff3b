"""The service's own upkeep, on real PostgreSQL: old per-minute counters are deleted."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg

from modelserve.testbed.platform import start_service
from modelserve.testbed.polling import wait_for


def test_old_per_minute_counters_are_deleted(
    contract_database: str,
    contract_environment: Callable[..., dict[str, str]],
    testbed_dir: Path,
) -> None:
    """Every per-minute window leaves a row per user; without upkeep they pile up forever.
    Day and month windows stay: budgets and usage reports read them."""
    scope = f"user:old-{uuid.uuid4().hex[:8]}"
    service = start_service(
        "contract",
        testbed_dir / "logs",
        contract_environment(CONTRACT_RESERVATION_SECONDS="1"),
    )
    try:
        with psycopg.connect(contract_database, autocommit=True) as conn:
            for metric, age in (
                ("requests/minute", "10 minutes"),
                ("tokens/minute", "3 minutes"),
                ("tokens/minute", "0 minutes"),
                ("tokens/day", "10 minutes"),
            ):
                conn.execute(
                    "INSERT INTO counters (scope, metric, window_start, used, reserved)"
                    " VALUES (%s, %s, date_trunc('minute', now() - %s::interval), 1, 0)",
                    [scope, metric, age],
                )

            def left() -> list[tuple[str, int]] | None:
                rows = conn.execute(
                    "SELECT metric, extract(epoch FROM now() - window_start)::int / 60"
                    " FROM counters WHERE scope = %s ORDER BY metric, 2",
                    [scope],
                ).fetchall()
                kept = [(str(metric), int(minutes)) for metric, minutes in rows]
                return kept if len(kept) == 2 else None

            kept = wait_for(left, timeout=30, what="old per-minute counters to be deleted")
            assert [metric for metric, _ in kept] == ["tokens/day", "tokens/minute"]
            assert kept[1][1] < 2
    finally:
        service.stop()
