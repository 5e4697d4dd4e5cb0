"""Who a process is, to Kafka and to PostgreSQL: its principal, its role, and their secrets.

Every secret lives in a file under `Settings.secrets_dir` (mode 0600, written by set-up, never
committed): `kafka/<principal>.properties` holds a Kafka client's settings in librdkafka's
format, so the same file serves `kcat -F`, confluent-kafka and, parsed here, aiokafka;
`postgres/<role>.password` holds a database role's password. A deployment mounts the files of
the identities a process needs and nothing else.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiokafka.helpers import create_ssl_context
from faststream.security import SASLScram512

from services.runtime.settings import Settings

ADMIN = "casebridge-admin"
"""The one Kafka super user: set-up only (topics, credentials, ACLs), never a service."""
OPERATOR = "casebridge-operator"
"""Read-only over every topic of the deployment: on-call, demo reports, tests."""
DPO = "casebridge-dpo"
"""The data-protection officer: may only request erasures (`casebridge person erase`)."""
OWNER_ROLE = "casebridge_owner"
"""The database owner: migrations only."""
AUDITOR_ROLE = "casebridge_auditor"
"""Read-only database role: the auditors' API, `verify`, reports."""


def service_principal(service: str) -> str:
    """The Kafka principal a CaseBridge service connects as, e.g. `casebridge-intake`."""
    return f"casebridge-{service}"


def service_role(service: str) -> str:
    """The PostgreSQL role a CaseBridge service connects as, e.g. `casebridge_intake`."""
    return f"casebridge_{service.replace('-', '_')}"


@dataclass(frozen=True)
class KafkaClientConfig:
    """A Kafka client's connection: SASL_SSL with SCRAM-SHA-512, trusting the deployment's CA."""

    bootstrap: str
    username: str
    password: str = field(repr=False)
    ca_file: Path

    @classmethod
    def load(cls, path: Path, *, bootstrap: str | None = None) -> KafkaClientConfig:
        """Read a properties file; `bootstrap` overrides the file's `bootstrap.servers`."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no Kafka client settings at {path}: run `casebridge agencies sync` (set-up)"
            ) from None
        props = parse_properties(text)
        missing = {"sasl.username", "sasl.password", "ssl.ca.location"} - props.keys()
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}")
        return cls(
            bootstrap=bootstrap or props.get("bootstrap.servers", ""),
            username=props["sasl.username"],
            password=props["sasl.password"],
            ca_file=Path(props["ssl.ca.location"]),
        )

    def properties(self) -> str:
        """The librdkafka-style text of this configuration (what `load` reads)."""
        return "".join(f"{k}={v}\n" for k, v in self.librdkafka().items())

    def librdkafka(self) -> dict[str, str]:
        """Configuration for librdkafka clients (confluent-kafka, kcat)."""
        return {
            "bootstrap.servers": self.bootstrap,
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": self.username,
            "sasl.password": self.password,
            "ssl.ca.location": str(self.ca_file),
        }

    def ssl_context(self) -> ssl.SSLContext:
        # Hostname checking stays on: the broker certificate names 127.0.0.1 and localhost.
        context: ssl.SSLContext = create_ssl_context(cafile=str(self.ca_file))
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's producer, consumer and admin client."""
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_plain_username": self.username,
            "sasl_plain_password": self.password,
            "ssl_context": self.ssl_context(),
        }

    def faststream(self) -> SASLScram512:
        """The same, as FastStream's broker security (also documented in AsyncAPI)."""
        return SASLScram512(self.username, self.password, ssl_context=self.ssl_context())

    def write(self, path: Path) -> None:
        """Write the file readable by its owner only (created 0600, never wider)."""
        write_secret(path, self.properties())


def parse_properties(text: str) -> dict[str, str]:
    """`key=value` lines; blank lines and `#` comments ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def write_secret(path: Path, text: str) -> None:
    """Create or replace a secret file atomically, mode 0600 in a 0700 directory."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def kafka_client_file(settings: Settings, principal: str) -> Path:
    return settings.secrets_dir / "kafka" / f"{principal}.properties"


def kafka_client(settings: Settings, principal: str) -> KafkaClientConfig:
    """The connection settings of `principal` (its secret file), at the configured bootstrap."""
    return KafkaClientConfig.load(
        kafka_client_file(settings, principal), bootstrap=settings.kafka_bootstrap
    )


def database_password(settings: Settings, role: str) -> str:
    path = settings.secrets_dir / "postgres" / f"{role}.password"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no password for database role {role} at {path}: run `infra/stack.sh up` (set-up)"
        ) from None


def database_url(settings: Settings, role: str) -> str:
    """`settings.database_url` (host, port, database) as `role`, with its password."""
    scheme, rest = settings.database_url.split("://", 1)
    rest = rest.rsplit("@", 1)[-1]  # a user in the configured URL never wins over `role`
    password = quote(database_password(settings, role), safe="")
    return f"{scheme}://{role}:{password}@{rest}"
