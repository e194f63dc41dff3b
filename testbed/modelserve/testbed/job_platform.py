"""The whole path of job tests (tests/jobs/conftest.py's `job_platform`): who is who,
and clients of the gateway as real accounts."""

from __future__ import annotations

import asyncio
import dataclasses

from modelserve.common.database import open_pool
from modelserve.common.tokens import TokenSigner
from modelserve.jobs.store import JobStore
from modelserve.testbed.gateway_accounts import GatewayUsers
from modelserve.testbed.objectstores import MinioServer
from modelserve.testbed.platform import RunningService


@dataclasses.dataclass
class JobPlatform(GatewayUsers):
    """The gateway (passing the jobs routes through, delegating to the jobs service), the
    contract service (limits and usage), the jobs service and SmolLM2 behind an `external`
    ModelServe in a platform namespace (every user may use it), all as processes on the
    real control plane, PostgreSQL and MinIO. Users are real accounts of the gateway
    (`user()`): the jobs service runs items as their owner only while the owner exists."""

    gateway: RunningService
    contract: RunningService
    jobs: RunningService
    jobs_database: str
    bucket: str  # the jobs service's bucket in the platform store
    store: MinioServer
    model: str  # the served name of SmolLM2
    signer: TokenSigner
    admin_password: str
    _users: dict[str, str] = dataclasses.field(default_factory=dict)

    def token(self, name: str) -> str:
        """The token `user(name)` made."""
        return self._users[name]

    def queue_chat(self, owner: str, team: str | None, n: int, type: str = "chat") -> str:
        """A job of `n` short chat items of `owner` (and `team`) on SmolLM2, written to the
        jobs service's database as its own routes would: its id. A `type` no worker runs
        stays pending."""

        async def create() -> str:
            pool = await open_pool(self.jobs_database, size=1, wait=5.0)
            try:
                job = await JobStore(pool).create(
                    type=type,
                    owner=owner,
                    team=team,
                    model=self.model,
                    spec={},
                    inputs=[
                        {
                            "model": self.model,
                            "messages": [{"role": "user", "content": f"Say {i}."}],
                            "max_tokens": 4,
                            "temperature": 0,
                        }
                        for i in range(n)
                    ],
                )
            finally:
                await pool.close()
            return job.id

        return asyncio.run(create())
