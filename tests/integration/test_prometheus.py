"""Metrics, health and alerts as an operator meets them: Debian's real Prometheus, run with
the template in infra/prometheus/ and the real alert rules, scraping CaseBridge's services.

The services run as an operator would run them: intake alone (`faststream run
services.intake.app:app`) and router, cases and audit with its signer in one process
(`casebridge run`), each serving /metrics on its CASEBRIDGE_METRICS_PORT. Prometheus (its own
config and data directory under the test's tmp dir, a free port; the Debian package's service
plays no part) scrapes them every second and evaluates the rules every second, with every
rule's `for:` set to 0s so the test need not wait minutes (the expressions are the real ones).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas.topics import inbound_topic
from services.audit.tree_head import private_key_pem
from services.runtime.settings import REPO_ROOT
from tests.support.pipeline import Record, adult_referral, publish
from tests.support.stack import Stack, free_ports

RULES_DIR = REPO_ROOT / "infra" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
AGENCY = "id-police-aht"


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} not found: `make setup` installs Debian's prometheus package"
    return path


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("promtool"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_alert_rules_and_the_template_pass_promtool() -> None:
    """`promtool check rules` on the alert file, `promtool test rules` (each alert on made-up
    series: firing after its `for:`, not before, not on look-alikes), `check config` on the
    Prometheus template."""
    for args in (
        ("check", "rules", str(ALERTS)),
        ("test", "rules", str(RULES_DIR / "alerts_test.yml")),
        ("check", "config", str(RULES_DIR / "prometheus.yml")),
    ):
        done = _promtool(*args)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The positive control of the check above: promtool does fail on a bad expression."""
    rules = yaml.safe_load(ALERTS.read_text())
    rules["groups"][0]["rules"][0]["expr"] = "up{job= == 0"
    broken = tmp_path / "alerts.yml"
    broken.write_text(yaml.safe_dump(rules))
    assert _promtool("check", "rules", str(broken)).returncode != 0


def _referral(run: str) -> Record:
    return adult_referral(f"PROM-{run}", f"{run}-1", system="metrics-test", agency=AGENCY)


class Processes:
    """OS processes the test starts, each logging to a file shown when the test fails."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        with (self.logs / f"{name}.log").open("wb") as out:
            self.running[name] = subprocess.Popen(
                cmd, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self, name: str) -> None:
        proc = self.running[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
            for p in sorted(self.logs.glob("*.log"))
        )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Processes(logs)
    try:
        yield started
    finally:
        started.stop_all()


def _prometheus_config(tmp_path: Path, targets: dict[str, int], *, interval: str = "2s") -> Path:
    """The template (infra/prometheus/prometheus.yml) pointed at `targets` (services label:
    port), scraping and evaluating every `interval`, with the real rules at `for: 0s`."""
    rules = yaml.safe_load(ALERTS.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["for"] = "0s"
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    config = yaml.safe_load((RULES_DIR / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": interval, "evaluation_interval": interval}
    config["rule_files"] = [str(tmp_path / "alerts.yml")]
    (job,) = config["scrape_configs"]
    job["scrape_timeout"] = interval
    job["static_configs"] = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"services": services}}
        for services, port in targets.items()
    ]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = _promtool("check", "config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    return path


class PrometheusApi:
    def __init__(self, port: int) -> None:
        self.client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/query", params={"query": expr})
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    async def alerts(self, name: str) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/alerts")
        response.raise_for_status()
        return [a for a in response.json()["data"]["alerts"] if a["labels"]["alertname"] == name]

    async def ready(self) -> bool:
        try:
            return (await self.client.get("/-/ready")).status_code == 200
        except httpx.HTTPError:
            return False


async def _until(what: str, check: Any, *, within_s: float) -> Any:
    """Poll the coroutine function `check` until it returns something truthy."""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within_s:g} s (last: {result!r})")
        await asyncio.sleep(0.5)


async def _readyz(port: int) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = response.json()
    return body if response.status_code == 200 else None


@pytest.mark.kafka
@pytest.mark.postgres
async def test_prometheus_scrapes_every_service_and_alerts_when_one_stops(
    stack: Stack, tmp_path: Path, processes: Processes
) -> None:
    ns = f"t{uuid.uuid4().hex[:10]}."
    database = await stack.create_database()
    try:
        settings = stack.deployment(database=database, topic_prefix=ns, group_prefix=ns + "cb")
        intake_port, others_port, prometheus_port = free_ports(3)
        key_file = tmp_path / "audit-signing-key.pem"
        key_file.write_text(private_key_pem(Ed25519PrivateKey.generate()))
        key_file.chmod(0o600)
        env = {
            **stack.service_env(settings),
            "CASEBRIDGE_AUDIT_SIGNING_KEY_FILE": str(key_file),
            "CASEBRIDGE_AUDIT_EXPORT_DIR": str(tmp_path / "audit"),
            "CASEBRIDGE_AUDIT_STH_EVERY_SECONDS": "1",
            "CASEBRIDGE_AUDIT_POLL_INTERVAL_S": "0.2",
        }
        processes.start(
            "intake",
            [sys.executable, "-m", "faststream", "run", "services.intake.app:app"],
            {**env, "CASEBRIDGE_METRICS_PORT": str(intake_port)},
        )
        processes.start(
            "router-cases-audit",
            [sys.executable, "-m", "services.cli", "run", "--services", "router,cases,audit"],
            {**env, "CASEBRIDGE_METRICS_PORT": str(others_port)},
        )
        ready = await _until("others ready", lambda: _readyz(others_port), within_s=60)
        assert ready["checks"] == {
            "router.broker": "ok",
            "audit.broker": "ok",
            "audit.database": "ok",
            "audit.signer": "ok",
            "cases.broker": "ok",
            "cases.database": "ok",
        }
        ready = await _until("intake ready", lambda: _readyz(intake_port), within_s=60)
        assert ready["checks"] == {"intake.broker": "ok", "intake.database": "ok"}

        config = _prometheus_config(
            tmp_path, {"intake": intake_port, "router,cases,audit": others_port}
        )
        processes.start(
            "prometheus",
            [
                _tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--log.level=warn",
            ],
            dict(os.environ),
        )
        api = PrometheusApi(prometheus_port)
        await _until("prometheus ready", api.ready, within_s=30)

        run = uuid.uuid4().hex[:8]
        headers = [
            (k, f"{run}-2".encode() if k == "ce_id" else v) for k, v in _referral(run).headers
        ]
        bad = Record(inbound_topic(AGENCY), b"not json", None, headers)
        await publish(settings, [_referral(run), bad])

        both_up = 'up{job="casebridge"} == 1'
        await _until("both targets up", lambda: _count(api, both_up, 2), within_s=30)
        for expr in (
            'faststream_received_messages_total{app_name="intake"}',
            'faststream_received_messages_total{app_name="audit"}',
            'casebridge_dead_letters_total{service="intake", reason="NOT_JSON"} == 1',
            'casebridge_case_transitions_total{kind="referral", action="case_opened"} >= 1',
            'casebridge_records_published_total{service="router"} > 0',
            'casebridge_consumer_lag{group="' + ns + 'cb.intake"}',
            'casebridge_consumer_lag{group="' + ns + 'cb.audit"}',
            'casebridge_audit_records_appended_total{outcome="rejected"} >= 1',
            "casebridge_audit_tree_size > 0",
            "casebridge_audit_signed_tree_size > 0",
            "casebridge_audit_signed_head_age_seconds < 60",
            'casebridge_cases_outbox_backlog{service="cases"}',
            'casebridge_health_check_up{service="audit", check="signer"} == 1',
            'casebridge_health_check_up{service="intake", check="database"} == 1',
        ):
            await _until(expr, lambda e=expr: api.query(e), within_s=30)
        for port in (intake_port, others_port):  # labels name topics, never a record
            async with httpx.AsyncClient(timeout=5) as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert f'topic="{ns}casebridge.' in text
            assert run not in text

        # The positive control: a few evaluations with both up, and nothing about them.
        await asyncio.sleep(4)
        assert await _count(api, both_up, 2)
        assert await api.alerts("CaseBridgeServiceDown") == []

        processes.stop("intake")
        assert processes.running["intake"].returncode == 0, "a clean stop, server and all"
        # For intake alone: a scrape of the busy process that runs late on a loaded machine
        # may flap it for one evaluation, so wait for the set to be exactly intake.
        firing = await _until(
            "CaseBridgeServiceDown firing for intake alone",
            lambda: _firing_only(api, "CaseBridgeServiceDown", "intake"),
            within_s=30,
        )
        assert [a["labels"]["services"] for a in firing] == ["intake"]
        assert firing[0]["labels"]["instance"] == f"127.0.0.1:{intake_port}"
        assert firing[0]["labels"]["severity"] == "page"
        assert await _count(api, 'up{job="casebridge", services="router,cases,audit"} == 1', 1)
    except BaseException:
        print(processes.tails())  # what the processes said, for the failure
        raise
    finally:
        processes.stop_all()
        await stack.drop_database(database)


async def _firing_only(api: PrometheusApi, alert: str, services: str) -> list[dict[str, Any]]:
    """The alert's firing instances when they are exactly `services`' (else nothing yet)."""
    firing = await _firing(api, alert)
    return firing if [a["labels"]["services"] for a in firing] == [services] else []


async def _count(api: PrometheusApi, expr: str, n: int) -> bool:
    return len(await api.query(expr)) == n


async def _firing(api: PrometheusApi, name: str) -> list[dict[str, Any]]:
    return [a for a in await api.alerts(name) if a["state"] == "firing"]
