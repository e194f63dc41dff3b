"""The download service's Prometheus metrics: what its workers did, and its requests.

Counted per attempt: a job whose attempt ends in an outage is claimed again later (by
this replica or another), and each attempt copies bytes of its own.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelserve.common.service_metrics import request_histogram

# Copies take from a second (a small file, or one already there) to hours (a large
# model from a slow store).
ATTEMPT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
# How an attempt ends (`Workers.process`):
# ready: recorded as a model; failed: the job failed for good (its code in
# modelserve_download_failures_total); stopped: cancelled, or taken over by another worker;
# retried: the store or the database could not be reached, the job is tried again later.
OUTCOMES = ("ready", "failed", "stopped", "retried")


class DownloadMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = request_histogram("download", self.registry)
        self.attempts = Counter(
            "modelserve_download_attempts",
            "Attempts at a job that ended, by kind (download, register) and outcome (ready, "
            "failed, stopped, retried).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.failures = Counter(
            "modelserve_download_failures",
            "Jobs failed for good, by the error code their status shows (checksum_mismatch, "
            "source_not_found, internal_error, ...).",
            ["code"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "modelserve_download_attempt_seconds",
            "How long an attempt took, from its claim to its end, by kind and outcome.",
            ["kind", "outcome"],
            buckets=ATTEMPT_BUCKETS,
            registry=self.registry,
        )
        self.copied = Counter(
            "modelserve_download_copied_bytes",
            "Bytes copied into the platform store, by kind; an attempt that stops counts "
            "what it copied before.",
            ["kind"],
            registry=self.registry,
        )
        self.running = Gauge(
            "modelserve_download_attempts_running",
            "Attempts this replica's workers are running now.",
            registry=self.registry,
        )
