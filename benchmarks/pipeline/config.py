"""Settings of the benchmark that its parts share."""

from __future__ import annotations

from schemas.topics import PER_AGENCY_PARTITIONS

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
TARGET_EVENTS_PER_S = 2_000
PRODUCER_BATCH_BYTES = 256 * 1024
"""The services' producer batch size (services.runtime.kafka.KafkaPublisher)."""
METADATA_MAX_AGE_MS = 5_000
"""As the services' producers and consumers (services.runtime.kafka)."""
FETCH_BYTES = 2 * 1024 * 1024
"""The services' max_partition_fetch_bytes (services.runtime.kafka.batch_subscriber)."""
PASSTHROUGH_PARTITIONS = PER_AGENCY_PARTITIONS
"""As many as an inbound topic has."""
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
POLL_S = 0.05
