"""Where the platform's services keep tenants' objects in the platform bucket.

The chart gives the download and jobs services one bucket (`platformBucket`). Each prefix
here holds objects of many tenants, each reachable only through the service that keeps
them and its checks of who may see what; a user's registration (POST /models/register,
which copies a folder into a model of theirs) may name none of them but through those
checks (docs/download.md, "Who may register").
"""

from __future__ import annotations

MODELS = "models/"  # recorded models, `models/<id>/` (download)
UPLOADS = "uploads/"  # uploads for registration, `uploads/<upload id>/` (download)
FILES = "files/"  # files of the Files API, `files/<owner>/<file id>` (jobs)
BATCHES = "batches/"  # a batch's output and error files, `batches/<batch id>/` (jobs)
JOB_OUTPUTS = "jobs/"  # evaluation and generation outputs, `jobs/<job id>/` (jobs)
DATAGEN = "datagen/"  # each user's data generation home, `datagen/<user>/` (jobs)
# Kept by the jobs service: no user registers anything in them, or a folder above them.
JOBS_PREFIXES = (FILES, BATCHES, JOB_OUTPUTS, DATAGEN)
