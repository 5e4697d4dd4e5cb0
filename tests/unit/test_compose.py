"""docker-compose.yml stays the same topology as the code: every service, consistently wired.

Parsed with PyYAML (merge keys resolved); when a `docker-compose` binary is on PATH, Compose
itself must accept the file too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from services.bootstrap import SERVICES
from services.runtime.settings import REPO_ROOT, Settings

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = "infra/docker/Dockerfile"
SETTING_VARS = {f"CASEBRIDGE_{name.upper()}" for name in Settings.model_fields}


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


def app_services(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: services[name] for name in SERVICES}


def test_every_pipeline_service_is_in_compose(services: dict[str, Any]) -> None:
    missing = sorted(set(SERVICES) - set(services))
    assert not missing, f"add {missing} to docker-compose.yml"


def test_each_service_runs_its_own_faststream_app(services: dict[str, Any]) -> None:
    for name, service in app_services(services).items():
        assert service["command"] == ["faststream", "run", f"services.{name}.app:app"], name
        assert (REPO_ROOT / "services" / name / "app.py").is_file(), name


def test_app_images_are_built_from_the_one_dockerfile(services: dict[str, Any]) -> None:
    built = {**app_services(services), "migrate": services["migrate"]}
    for name, service in built.items():
        assert service["build"] == {"context": ".", "dockerfile": DOCKERFILE}, name
    assert len({s["image"] for s in built.values()}) == 1
    assert (REPO_ROOT / DOCKERFILE).is_file()


def test_environment_uses_only_real_settings(services: dict[str, Any]) -> None:
    for name, service in services.items():
        names = {k for k in env(service) if k.startswith("CASEBRIDGE_")}
        assert names <= SETTING_VARS, f"{name}: unknown settings {sorted(names - SETTING_VARS)}"


def test_services_share_one_configuration(services: dict[str, Any]) -> None:
    envs = {name: env(s) for name, s in app_services(services).items()}
    first = next(iter(envs.values()))
    for name, values in envs.items():
        assert values == first, name
    assert {"CASEBRIDGE_KAFKA_BOOTSTRAP", "CASEBRIDGE_DATABASE_URL"} <= set(first)


def test_services_reach_kafka_on_its_advertised_in_network_listener(
    services: dict[str, Any],
) -> None:
    kafka = env(services["kafka"])
    advertised = dict(
        listener.split("://", 1) for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    for name, service in app_services(services).items():
        bootstrap = env(service)["CASEBRIDGE_KAFKA_BOOTSTRAP"]
        assert bootstrap == advertised["PLAINTEXT"], name
        assert bootstrap.split(":")[0] == "kafka"


def test_database_urls_name_the_postgres_service_and_the_right_roles(
    services: dict[str, Any],
) -> None:
    pg = env(services["postgres"])
    for name, service in {**app_services(services), "migrate": services["migrate"]}.items():
        values = env(service)
        for var, role in (
            ("CASEBRIDGE_DATABASE_URL", "casebridge_app"),
            ("CASEBRIDGE_MIGRATION_DATABASE_URL", "casebridge_owner"),
        ):
            if var not in values:
                continue
            url = urlsplit(values[var])
            assert url.scheme == "postgresql+asyncpg", (name, var)
            assert (url.hostname, url.port, url.username) == ("postgres", 5432, role), (name, var)
            assert url.path == "/" + pg["POSTGRES_DB"], (name, var)
    assert "CASEBRIDGE_MIGRATION_DATABASE_URL" in env(services["migrate"])
    init_script = services["postgres"]["command"][0]
    for role in ("casebridge_app", "casebridge_owner"):
        assert f"CREATE ROLE {role}" in init_script


def test_services_start_after_kafka_postgres_and_migrations(services: dict[str, Any]) -> None:
    for name, service in app_services(services).items():
        assert service["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    migrate = services["migrate"]
    assert migrate["command"] == ["casebridge", "migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_kafka_is_a_single_kraft_node(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    e = env(kafka)
    assert e["KAFKA_PROCESS_ROLES"] == "broker,controller"
    node = e["KAFKA_NODE_ID"]
    assert e["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert e["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    listeners = {x.split("://")[0] for x in e["KAFKA_LISTENERS"].split(",")}
    protocols = dict(x.split(":") for x in e["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners == set(protocols)
    assert {"CONTROLLER", e["KAFKA_INTER_BROKER_LISTENER_NAME"]} <= listeners
    # One broker: internal topics must not ask for more replicas than exist.
    for var in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
    ):
        assert e[var] == "1", var
    assert len(e["CLUSTER_ID"]) == 22  # a base64-encoded UUID, as kafka-storage requires
    assert "healthcheck" in kafka


def test_postgres_is_15_with_a_healthcheck(services: dict[str, Any]) -> None:
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert "pg_isready" in pg["healthcheck"]["test"]


def test_host_ports_match_the_default_settings(services: dict[str, Any]) -> None:
    defaults = Settings.model_construct()
    kafka_port = defaults.kafka_bootstrap.rsplit(":", 1)[1]
    pg_port = str(urlsplit(defaults.database_url).port)
    assert f"127.0.0.1:{kafka_port}:{kafka_port}" in services["kafka"]["ports"]
    assert f"127.0.0.1:{pg_port}:5432" in services["postgres"]["ports"]
    advertised = env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"127.0.0.1:{kafka_port}" in advertised


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
