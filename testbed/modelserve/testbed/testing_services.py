"""ModelServe's services as tests start them: several for one test, or one on a database
schema of its own."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from modelserve.testbed.platform import RunningService, start_service
from modelserve.testbed.postgres import fresh_schema, schema_url


@contextlib.contextmanager
def service_starter(
    name: str, log_folder: Path, settings: Mapping[str, str]
) -> Iterator[Callable[..., RunningService]]:
    """`start(**overrides)`: `modelserve-<name>` with `settings` and the overrides; every
    one started is stopped on the way out."""
    started: list[RunningService] = []

    def start(**overrides: str) -> RunningService:
        started.append(start_service(name, log_folder, {**settings, **overrides}))
        return started[-1]

    try:
        yield start
    finally:
        for service in started:
            service.stop()


@contextlib.contextmanager
def service_on_fresh_schema(
    name: str, database_url: str, log_folder: Path, settings: Mapping[str, str], *, prefix: str
) -> Iterator[RunningService]:
    """`modelserve-<name>` with `settings`, its tables (`<NAME>_DATABASE_URL`) in a new
    schema named from `prefix`; stopped, and the schema dropped, on the way out."""
    with fresh_schema(database_url, prefix) as schema:
        database = {f"{name.upper()}_DATABASE_URL": schema_url(database_url, schema)}
        service = start_service(name, log_folder, {**database, **settings})
        try:
            yield service
        finally:
            service.stop()
