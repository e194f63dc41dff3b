"""`python -m modelserve.jobs.migrations`: the migration the service runs at start-up
(adoption of a 0.1.0 database included), by hand, on the database of JOBS_DATABASE_URL."""

from __future__ import annotations

from modelserve.jobs.migrations import upgrade
from modelserve.jobs.settings import JobsSettings

if __name__ == "__main__":
    upgrade(JobsSettings().database_url.get_secret_value())
