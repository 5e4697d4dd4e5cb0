"""Schema migrations (Alembic, under infra/migrations), run as the owner role."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from services.runtime.settings import REPO_ROOT


def alembic_config(url: str) -> Config:
    config = Config(str(REPO_ROOT / "infra" / "alembic.ini"))
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision`. Idempotent."""
    command.upgrade(alembic_config(url), revision)
