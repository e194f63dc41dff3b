"""`python -m modelserve.contract.migrations`: the migration the service runs at start-up
(adoption of a 0.1.0 database included), by hand, on the database of CONTRACT_DATABASE_URL."""

from __future__ import annotations

from modelserve.contract.migrations import upgrade
from modelserve.contract.settings import ContractSettings

if __name__ == "__main__":
    upgrade(ContractSettings().database_url.get_secret_value())
