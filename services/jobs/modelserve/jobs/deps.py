"""Dependency aliases of the jobs service's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from modelserve.common.auth import caller
from modelserve.common.tokens import Claims
from modelserve.jobs.store import JobStore


async def _store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


StoreDep = Annotated[JobStore, Depends(_store)]
CallerDep = Annotated[Claims, Depends(caller)]


def visible_to(claims: Claims) -> str | None:
    """Whose jobs a caller sees: every one for admins and services, else their own."""
    return None if claims.is_admin or claims.is_service else claims.sub
