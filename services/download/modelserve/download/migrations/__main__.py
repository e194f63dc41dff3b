"""`python -m modelserve.download.migrations`: the migration the service runs at start-up
(adoption of a 0.1.0 database included), by hand, on the database of DOWNLOAD_DATABASE_URL."""

from __future__ import annotations

from modelserve.common.migrations import by_hand
from modelserve.download.migrations import upgrade

if __name__ == "__main__":
    by_hand(upgrade, ("DOWNLOAD_DATABASE_URL", "DATABASE_URL"))
