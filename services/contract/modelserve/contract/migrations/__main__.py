"""`python -m modelserve.contract.migrations`: the migration the service runs at start-up
(adoption of a 0.1.0 database included), by hand, on the database of CONTRACT_DATABASE_URL."""

from __future__ import annotations

from modelserve.common.migrations import by_hand
from modelserve.contract.migrations import upgrade

if __name__ == "__main__":
    by_hand(upgrade, ("CONTRACT_DATABASE_URL",))
