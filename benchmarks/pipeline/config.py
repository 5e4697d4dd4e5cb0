"""Settings of the benchmark that its parts share."""

from __future__ import annotations

PIPELINE = ("intake", "router", "audit")
"""The services under test, each a process of its own (casebridge may have more services)."""
RUN_SETTINGS = (
    "kafka_bootstrap",
    "database_url",
    "run_dir",
    "topic_prefix",
    "group_prefix",
)
"""The settings a run sets for its services (they read their secrets under `run_dir`); the rest
come from the environment."""
SUPERUSER = "postgres"
"""Creates and drops the run's database (the owner role is NOCREATEDB by design)."""
BENCH_PRINCIPAL = "casebridge-bench"
"""The baseline's Kafka principal: like a service's, with ACLs on its own topics and group only
(granted for the run, removed with it; its credential stays, like every principal's)."""
SYSTEM = ("intake", "router", "cases", "audit")
"""Every service the demo runs (the audit's signer is not: one signer per log)."""
TARGETS = {"b/a": 0.2, "c/a": 0.08}
"""Throughput ratios to the passthrough (a) that (b) and (c) must reach."""
P99_TARGET_MS = 250.0
"""(c) paced at half its burst rate: publish -> case update audited, p99."""
RSS_TARGET_MB = 400.0
"""No service's peak RSS past this while it works through a backlog of 200,000 events."""
PRODUCER_BATCH_BYTES = 256 * 1024
"""The services' producer batch size (services.runtime.kafka.KafkaPublisher)."""
METADATA_MAX_AGE_MS = 5_000
"""As the services' producers and consumers (services.runtime.kafka)."""
FETCH_BYTES = 2 * 1024 * 1024
"""The services' max_partition_fetch_bytes (services.runtime.kafka.batch_subscriber)."""
PASSTHROUGH_PARTITIONS = 6
"""The baseline's topic: six partitions, as each agency topic had before they went to one
(schemas/topics.py), so that (a) is not made slower by that change."""
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
