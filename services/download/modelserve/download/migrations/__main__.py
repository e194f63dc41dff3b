"""`python -m modelserve.download.migrations`: the migration the service runs at start-up
(adoption of a 0.1.0 database included), by hand, on the database of DOWNLOAD_DATABASE_URL."""

from __future__ import annotations

from modelserve.download.migrations import upgrade
from modelserve.download.settings import DownloadSettings

if __name__ == "__main__":
    upgrade(DownloadSettings().database_url.get_secret_value())
