"""The one settings object. Every knob is an environment variable prefixed CASEBRIDGE_."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[2]


class Settings(BaseSettings):
    """Runtime configuration, read once per process from the environment."""

    model_config = SettingsConfigDict(env_prefix="CASEBRIDGE_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "127.0.0.1:19092"
    database_url: str = "postgresql+asyncpg://casebridge_app@127.0.0.1:15432/casebridge"
    """The application role: it may append to the audit log but never rewrite it."""
    migration_database_url: str = "postgresql+asyncpg://casebridge_owner@127.0.0.1:15432/casebridge"
    log_format: Literal["json", "console"] = "json"
    log_level: str = "INFO"
    topic_prefix: str = Field(default="", pattern=r"^([a-z0-9-]{1,24}\.)?$")
    """Prepended to every topic name, e.g. `staging.`: several deployments (or test runs) can
    share one cluster. Topic names in `schemas.topics` stay the logical contract."""
    group_prefix: str = "casebridge"
    """Consumer groups are <prefix>.<service>; tests use their own prefix."""
    routing_policy_path: Path = REPO_ROOT / "services" / "router" / "policy.yaml"
    batch_max_records: int = Field(default=2000, ge=1, le=10_000)
    batch_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    producer_linger_ms: int = Field(default=5, ge=0, le=1_000)
    case_policy_path: Path = REPO_ROOT / "services" / "cases" / "policy.yaml"
    person_key_secret: SecretStr | None = None
    """Key of the pseudonymous person key (HMAC, >= 32 bytes); held outside the database.
    Without it, possible duplicates are not detected."""
    deadline_tick_s: float = Field(default=5.0, gt=0, le=3600)
    retry_backoff_s: float = Field(default=1.0, ge=0.0, le=60.0)
    """Pause before a batch that failed on infrastructure (database, broker) is fetched again."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings are read once; tests build their own `Settings` and pass it explicitly."""
    return Settings()
