"""The one settings object. Every knob is an environment variable prefixed CASEBRIDGE_."""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Runtime configuration, read once per process from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="CASEBRIDGE_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )

    kafka_bootstrap: str = "127.0.0.1:19092"
    """The broker's SASL_SSL listener; who connects, and how, comes from `secrets_dir`."""
    database_url: str = "postgresql+asyncpg://127.0.0.1:15432/casebridge"
    """Host, port and database; each service connects as its own role
    (`services.runtime.credentials.database_url`)."""
    run_dir: Path = REPO_ROOT / ".run"
    """The deployment's state: `secrets/` (Kafka client files, database passwords) and `tls/`.
    Same variable as infra/stack.sh uses (CASEBRIDGE_RUN_DIR)."""
    log_format: Literal["json", "console"] = "json"
    """JSON lines for a log shipper, or `console` for a person at a terminal."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR; message bodies and personal fields are never logged."""
    topic_prefix: str = Field(default="", pattern=r"^([a-z0-9-]{1,24}\.)?$")
    """Prepended to every topic name, e.g. `staging.`: several deployments (or test runs) can
    share one cluster. Topic names in `schemas.topics` stay the logical contract."""
    group_prefix: str = "casebridge"
    """Consumer groups are <prefix>.<service>; tests use their own prefix."""
    instance: str = Field(default="", pattern=r"^[A-Za-z0-9._-]{0,64}$")
    """This process among a service's instances (empty: host name and process id); intake's and
    the router's transactional ids are <prefix>.<service>.<instance>. Give each instance a
    name that outlives a restart (`intake-1`): the restarted one then aborts at once what its
    predecessor left open, where a new name leaves that to the broker's transaction timeout."""
    routing_policy_path: Path = REPO_ROOT / "services" / "routing" / "policy.yaml"
    """The agency registry and routing rules (who must act on what)."""
    batch_max_records: int = Field(default=2000, ge=1, le=10_000)
    """Most records a consumer takes in one batch (one transaction, one offset commit)."""
    batch_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    """Longest a consumer waits to fill a batch."""
    producer_linger_ms: int = Field(default=5, ge=0, le=1_000)
    """How long a producer waits to group records into one request (latency for throughput)."""
    case_policy_path: Path = REPO_ROOT / "services" / "cases" / "policy.yaml"
    """Case deadlines and escalations, each with the ministerial priority it serves."""
    data_sharing_policy_path: Path = REPO_ROOT / "services" / "privacy" / "policy.yaml"
    """Who may be told what, across which borders, for how long (services/privacy/)."""
    person_key_secret: SecretStr | None = None
    """Key of the pseudonymous person key (HMAC, >= 32 bytes); held outside the database.
    Without it, possible duplicates are not detected."""
    deadline_tick_s: float = Field(default=5.0, gt=0, le=3600)
    """How often the cases service raises due escalations and relays what is left to publish."""
    retry_backoff_s: float = Field(default=1.0, ge=0.0, le=60.0)
    """Pause before a batch that failed on infrastructure (database, broker) is fetched again,
    and between attempts at a batch that failed otherwise."""
    record_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts at a batch that fails for a reason that is neither the data (dead-lettered at
    once) nor the infrastructure (retried until it heals) before the failing record is found
    and dead-lettered as PROCESSING_FAILED (`services.runtime.kafka.handle_batch`)."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Port of the process's health and metrics server (`/healthz`, `/readyz`, `/metrics`),
    one per process whichever services it runs; unset: none, 0: a free port (logged)."""
    metrics_host: str = "127.0.0.1"
    """Address the health and metrics server listens on (`0.0.0.0` for a Prometheus on
    another host)."""

    @property
    def instance_name(self) -> str:
        """`instance`, or this process's host name and process id."""
        return self.instance or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def secrets_dir(self) -> Path:
        return self.run_dir / "secrets"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings are read once; tests build their own `Settings` and pass it explicitly."""
    return Settings()
