"""docker-compose.yml stays the same topology as the code, and as secured: every service, each
with its own identities, SASL_SSL + SCRAM-SHA-512 and ACLs on Kafka, SCRAM in PostgreSQL, and no
secret in the file.

Parsed with PyYAML (merge keys resolved); when a `docker-compose` binary is on PATH, Compose
itself must accept the file too.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.access.plan import SERVICES_WITH_PRINCIPALS
from services.bootstrap import SERVICES
from services.runtime.credentials import (
    ADMIN,
    AUDITOR_ROLE,
    OWNER_ROLE,
    service_principal,
    service_role,
)
from services.runtime.settings import REPO_ROOT, Settings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = "infra/docker/Dockerfile"
SETTING_VARS = {f"CASEBRIDGE_{name.upper()}" for name in Settings.model_fields}
RUN_DIR = "/run/casebridge"
VIEWS = "./.run/compose"
WITH_DATABASE = ("intake", "audit", "cases")
"""The pipeline services that connect to PostgreSQL (the router does not)."""
DATABASE_ROLES = (
    OWNER_ROLE,
    *(service_role(s) for s in ("intake", "cases", "audit", "signer")),
    AUDITOR_ROLE,
)
"""The login roles infra/postgres/postgres.sh bootstraps."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):  # the KEY=value list form
        raw = dict(item.split("=", 1) for item in raw)
    return {k: str(v) for k, v in raw.items()}


def script(service: dict[str, Any]) -> str:
    """A `bash -c` service's script, as the shell sees it (Compose turns `$$` into `$`)."""
    assert service["entrypoint"] == ["/bin/bash", "-c"]
    text: str = service["command"][0]
    return text.replace("$$", "$")


def app_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: services[name] for name in SERVICES}


@pytest.fixture(scope="module")
def kafka_properties(services: dict[str, Any]) -> dict[str, str]:
    """The server.properties the kafka service writes before it starts the broker."""
    text = script(services["kafka"])
    body = re.search(r'cat >"\$etc/server.properties" <<EOF\n(.*?)\nEOF\n', text, re.S)
    assert body is not None, "kafka's command no longer writes server.properties"
    lines = [line for line in body.group(1).splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def listeners(value: str) -> dict[str, str]:
    return dict(item.split("://", 1) for item in value.split(","))


def test_every_pipeline_service_is_in_compose(services: dict[str, Any]) -> None:
    missing = sorted(set(SERVICES) - set(services))
    assert not missing, f"add {missing} to docker-compose.yml"


def test_each_service_runs_its_own_faststream_app(services: dict[str, Any]) -> None:
    for name, service in app_services(services).items():
        assert service["command"] == ["faststream", "run", f"services.{name}.app:app"], name
        assert (REPO_ROOT / "services" / name / "app.py").is_file(), name


def test_app_images_are_built_from_the_one_dockerfile(services: dict[str, Any]) -> None:
    built = {**app_services(services), "setup": services["setup"], "keys": services["keys"]}
    for name, service in built.items():
        assert service["build"] == {"context": ".", "dockerfile": DOCKERFILE}, name
    assert len({s["image"] for s in built.values()}) == 1
    assert (REPO_ROOT / DOCKERFILE).is_file()


def test_environment_uses_only_real_settings(services: dict[str, Any]) -> None:
    for name, service in services.items():
        names = {k for k in env(service) if k.startswith("CASEBRIDGE_")}
        assert names <= SETTING_VARS, f"{name}: unknown settings {sorted(names - SETTING_VARS)}"


def test_services_share_one_configuration(services: dict[str, Any]) -> None:
    envs = {
        name: env(s) for name, s in {**app_services(services), "setup": services["setup"]}.items()
    }
    first = next(iter(envs.values()))
    for name, values in envs.items():
        assert values == first, name
    assert first["CASEBRIDGE_RUN_DIR"] == RUN_DIR
    assert {"CASEBRIDGE_KAFKA_BOOTSTRAP", "CASEBRIDGE_DATABASE_URL"} <= set(first)


def test_each_container_mounts_only_its_own_view(services: dict[str, Any]) -> None:
    """A service sees its own client file and password, never another principal's."""
    for name, service in app_services(services).items():
        assert service["volumes"] == [f"{VIEWS}/{name}:{RUN_DIR}:ro"], name
        assert "secrets" not in service, name
    assert services["kafka"]["volumes"][0] == f"{VIEWS}/kafka:{RUN_DIR}:ro"
    assert services["postgres"]["volumes"][0] == f"{VIEWS}/postgres:{RUN_DIR}:ro"
    assert services["setup"]["volumes"] == [
        f"{VIEWS}/setup:{RUN_DIR}",
        *(f"{VIEWS}/{name}/secrets/kafka:/handover/{name}" for name in SERVICES),
    ]
    assert services["keys"]["volumes"] == [f"{VIEWS}:/compose"]


def test_keys_gives_each_view_only_its_own_secrets(services: dict[str, Any]) -> None:
    keys = script(services["keys"])
    for role in ("postgres", *DATABASE_ROLES):
        assert re.search(rf"\b{role}\b", keys.split("view postgres", 1)[1]), role
    for name in SERVICES:
        handed = re.findall(rf"role {name} (\w+)", keys)
        assert handed == ([service_role(name)] if name in WITH_DATABASE else []), name
    assert "role setup casebridge_owner" in keys
    assert "admin kafka" in keys
    assert "admin setup" in keys
    assert not re.search(r"admin (intake|router|audit|cases)\b", keys)
    assert "subjectAltName=DNS:kafka,DNS:localhost,IP:127.0.0.1" in keys


def test_setup_migrates_then_syncs_and_hands_each_service_its_client_file(
    services: dict[str, Any],
) -> None:
    setup = script(services["setup"])
    assert setup.index("casebridge migrate") < setup.index("casebridge agencies sync")
    loop = re.search(r"for s in ([\w ]+); do", setup)
    assert loop is not None
    assert loop.group(1).split() == list(SERVICES)
    source = f"{RUN_DIR}/secrets/kafka/casebridge-$s.properties"
    assert f'install -m 0600 "{source}" "/handover/$s/"' in setup
    assert {service_principal(s) for s in SERVICES} <= {
        service_principal(s) for s in SERVICES_WITH_PRINCIPALS
    }
    assert services["setup"]["restart"] == "no"
    assert services["keys"]["restart"] == "no"


def test_services_reach_kafka_on_its_in_network_sasl_ssl_listener(
    services: dict[str, Any], kafka_properties: dict[str, str]
) -> None:
    advertised = listeners(kafka_properties["advertised.listeners"])
    protocols = dict(
        item.split(":") for item in kafka_properties["listener.security.protocol.map"].split(",")
    )
    for name, service in app_services(services).items():
        bootstrap = env(service)["CASEBRIDGE_KAFKA_BOOTSTRAP"]
        assert bootstrap == advertised["INTERNAL"], name
        assert bootstrap.split(":")[0] == "kafka"
    assert protocols["INTERNAL"] == protocols["HOST"] == "SASL_SSL"


def test_kafka_accepts_no_unauthenticated_client(kafka_properties: dict[str, str]) -> None:
    protocols = dict(
        item.split(":") for item in kafka_properties["listener.security.protocol.map"].split(",")
    )
    assert set(protocols) == set(listeners(kafka_properties["listeners"]))
    # Clients: TLS and SCRAM. The controller listener (not advertised to clients) still needs a
    # login: PLAIN with the static super user, as infra/kafka/kafka.sh does.
    assert {p for name, p in protocols.items() if name != "CONTROLLER"} == {"SASL_SSL"}
    assert protocols["CONTROLLER"] == "SASL_PLAINTEXT"
    assert kafka_properties["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    for listener in ("internal", "host"):
        assert kafka_properties[f"listener.name.{listener}.sasl.enabled.mechanisms"] == (
            "SCRAM-SHA-512"
        )
    assert kafka_properties["listener.name.controller.sasl.enabled.mechanisms"] == "PLAIN"
    assert kafka_properties["inter.broker.listener.name"] == "INTERNAL"
    assert kafka_properties["ssl.keystore.type"] == "PEM"
    assert kafka_properties["ssl.truststore.type"] == "PEM"


def test_kafka_authorises_with_acls_and_one_super_user(
    services: dict[str, Any], kafka_properties: dict[str, str]
) -> None:
    assert kafka_properties["authorizer.class.name"] == (
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    )
    assert kafka_properties["allow.everyone.if.no.acl.found"] == "false"
    assert kafka_properties["super.users"] == "User:$admin"
    kafka = script(services["kafka"])
    assert f"admin={ADMIN}\n" in kafka
    # The super user's SCRAM credential is created when the volume is formatted.
    assert "--add-scram" in kafka
    assert "SCRAM-SHA-512=[name=" in kafka


def test_kafka_is_a_single_kraft_node(
    services: dict[str, Any], kafka_properties: dict[str, str]
) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    p = kafka_properties
    assert p["process.roles"] == "broker,controller"
    assert p["controller.listener.names"] == "CONTROLLER"
    assert p["controller.quorum.bootstrap.servers"] == "kafka:9093"
    assert "format --standalone" in script(kafka)
    # One broker: internal topics must not ask for more replicas than exist.
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        assert p[key] == "1", key
    assert len(env(kafka)["CLUSTER_ID"]) == 22  # a base64-encoded UUID, as kafka-storage requires
    health = kafka["healthcheck"]["test"]
    assert "--command-config" in health  # the health check authenticates too


def test_postgres_authenticates_every_connection_with_scram(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert "pg_isready" in pg["healthcheck"]["test"]
    e = env(pg)
    assert e["POSTGRES_INITDB_ARGS"] == "--auth=scram-sha-256"  # local socket lines too
    assert e["POSTGRES_HOST_AUTH_METHOD"] == "scram-sha-256"
    assert e["POSTGRES_PASSWORD_FILE"] == f"{RUN_DIR}/secrets/postgres/postgres.password"
    assert "POSTGRES_PASSWORD" not in e
    init = script(pg)
    assert "trust" not in init
    assert "password_encryption=scram-sha-256" in init
    for role in DATABASE_ROLES:
        assert re.search(rf"\b{role}\b", init), role
    assert "CREATE ROLE $role LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in init
    assert "casebridge_app" not in init  # retired


def test_database_urls_name_the_postgres_service_without_a_user_or_password(
    services: dict[str, Any],
) -> None:
    pg = env(services["postgres"])
    for name, service in {**app_services(services), "setup": services["setup"]}.items():
        url = urlsplit(env(service)["CASEBRIDGE_DATABASE_URL"])
        assert url.scheme == "postgresql+asyncpg", name
        # Each process connects as its own role, with the password from its own file.
        assert (url.hostname, url.port, url.username, url.password) == (
            "postgres",
            5432,
            None,
            None,
        ), name
        assert url.path == "/" + pg["POSTGRES_DB"], name


def test_no_secret_is_in_the_file() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not re.search(r"password\s*[=:]\s*['\"]?[A-Za-z0-9_~.-]{12,}", text, re.I)
    assert "BEGIN" not in text  # no key or certificate


def test_services_start_after_kafka_postgres_and_setup(services: dict[str, Any]) -> None:
    for name, service in app_services(services).items():
        assert service["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "setup": {"condition": "service_completed_successfully"},
        }, name
    assert services["setup"]["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    for name in ("kafka", "postgres"):
        assert services[name]["depends_on"] == {
            "keys": {"condition": "service_completed_successfully"}
        }, name
    assert not services["keys"]["depends_on"]


def test_host_ports_match_the_default_settings(
    services: dict[str, Any], kafka_properties: dict[str, str]
) -> None:
    defaults = Settings.model_construct()
    kafka_port = defaults.kafka_bootstrap.rsplit(":", 1)[1]
    pg_port = str(urlsplit(defaults.database_url).port)
    assert f"127.0.0.1:{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    assert f"127.0.0.1:{pg_port}:5432" in services["postgres"]["ports"]
    assert listeners(kafka_properties["advertised.listeners"])["HOST"] == f"127.0.0.1:{kafka_port}"
    assert listeners(kafka_properties["listeners"])["HOST"] == f":{kafka_port}"


def test_scripts_are_valid_bash(services: dict[str, Any], tmp_path: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    for name in ("keys", "kafka", "postgres", "setup"):
        result = subprocess.run(
            [bash, "-n"], input=script(services[name]), capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, (name, result.stderr)


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("no docker-compose binary on PATH")
    result = subprocess.run(
        [binary, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
