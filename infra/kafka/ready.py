"""Readiness probe for the local Kafka broker (used by infra/kafka/kafka.sh wait).

Connects like any client must: SASL_SSL with SCRAM-SHA-512, as the super user whose settings
(librdkafka format: sasl.username, sasl.password, ssl.ca.location) are in --client-config.
Polls until every address in --bootstrap accepts that login, the cluster answers a
DescribeCluster request with at least --brokers brokers, and a group coordinator is found
(consumer groups work), or until the timeout expires.

Exit codes: 0 ready, 1 timeout, 2 a broker process (--pid, repeatable) died, 3 aiokafka missing,
4 the broker kept refusing the credentials (authentication failed for --auth-grace seconds),
5 the client settings file is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ClientConfig:
    username: str
    password: str = field(repr=False)
    ca_file: str
    mechanism: str


class ConfigError(Exception):
    pass


def _load_client_config(path: Path) -> ClientConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    props: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    missing = sorted({"sasl.username", "sasl.password", "ssl.ca.location"} - props.keys())
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}")
    protocol = props.get("security.protocol", "SASL_SSL")
    if protocol.upper() != "SASL_SSL":
        raise ConfigError(f"{path}: security.protocol={protocol}, the broker only speaks SASL_SSL")
    return ClientConfig(
        username=props["sasl.username"],
        password=props["sasl.password"],
        ca_file=props["ssl.ca.location"],
        mechanism=props.get("sasl.mechanisms", "SCRAM-SHA-512").upper(),
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _connection_kwargs(config: ClientConfig) -> dict[str, Any]:
    from aiokafka.helpers import create_ssl_context

    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": config.mechanism,
        "sasl_plain_username": config.username,
        "sasl_plain_password": config.password,
        # Hostname checking stays on: the broker certificate names 127.0.0.1 and localhost.
        "ssl_context": create_ssl_context(cafile=config.ca_file),
    }


@dataclass
class ProbeResult:
    description: str | None = None
    error: str | None = None
    auth_failed: bool = False


async def _login(
    address: str, kwargs: dict[str, Any], request_timeout_s: float
) -> ProbeResult | None:
    """A bare connection to one broker: None when it accepts the login, else why not. The admin
    client's bootstrap turns every failure into "Unable to bootstrap", while this one says
    whether TLS or the login failed."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import (
        AuthenticationFailedError,
        SaslAuthenticationFailed,
        UnsupportedSaslMechanismError,
    )

    host, _, port = address.rpartition(":")
    try:
        conn = await asyncio.wait_for(
            create_conn(
                host,
                int(port),
                client_id="casebridge-kafka-ready",
                request_timeout_ms=int(request_timeout_s * 1000),
                **kwargs,
            ),
            timeout=request_timeout_s,
        )
    except (SaslAuthenticationFailed, AuthenticationFailedError) as exc:
        return ProbeResult(error=f"{address}: authentication failed: {exc}", auth_failed=True)
    except UnsupportedSaslMechanismError as exc:
        return ProbeResult(error=f"{address}: {exc}", auth_failed=True)
    except ssl.SSLCertVerificationError as exc:
        return ProbeResult(error=f"{address}: TLS: the broker certificate does not verify: {exc}")
    except OSError as exc:  # refused, reset, timed out (TimeoutError is an OSError)
        return ProbeResult(error=f"{address}: {type(exc).__name__}: {exc}")
    except Exception as exc:  # a booting broker can fail in many ways: retry
        return ProbeResult(error=f"{address}: {type(exc).__name__}: {exc}")
    conn.close()
    return None


async def _probe(
    bootstrap: str, config: ClientConfig, request_timeout_s: float, min_brokers: int = 1
) -> ProbeResult:
    """One attempt: the cluster's description, or why it does not answer yet."""
    from aiokafka.admin import AIOKafkaAdminClient

    kwargs = _connection_kwargs(config)
    for address in bootstrap.split(","):
        failed = await _login(address.strip(), kwargs, request_timeout_s)
        if failed is not None:
            return failed

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(request_timeout_s * 1000),
        client_id="casebridge-kafka-ready",
        **kwargs,
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=request_timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=request_timeout_s)
        brokers = cluster.get("brokers") or []
        if len(brokers) < min_brokers:
            return ProbeResult(
                error=f"the cluster lists {len(brokers)} of {min_brokers} broker(s) yet"
            )
        # Ready means consumer groups work too: the first FindCoordinator creates the offsets
        # topic, and until it exists every consumer logs GroupCoordinatorNotAvailable errors.
        await asyncio.wait_for(
            admin.find_coordinator("casebridge.ready-probe"), timeout=request_timeout_s
        )
    except Exception as exc:
        return ProbeResult(error=f"{type(exc).__name__}: {exc}")
    finally:
        with contextlib.suppress(Exception):  # a probe that cannot close cleanly still answered
            await asyncio.wait_for(admin.close(), timeout=request_timeout_s)
    return ProbeResult(
        description=(
            f"cluster_id={cluster.get('cluster_id')} brokers={len(brokers)}"
            f" controller={cluster.get('controller_id')} as {config.username} (SASL_SSL)"
        )
    )


async def _main(args: argparse.Namespace, config: ClientConfig) -> int:
    deadline = time.monotonic() + args.timeout
    auth_failing_since: float | None = None
    last_error = "no attempt yet"
    while True:
        dead = [pid for pid in args.pid if not _process_alive(pid)]
        if dead:
            print(f"kafka ready: broker process {dead[0]} exited", file=sys.stderr)
            return 2
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(
                f"kafka ready: {args.bootstrap} did not answer within {args.timeout:.0f}s"
                f" (last error: {last_error})",
                file=sys.stderr,
            )
            return 1
        result = await _probe(
            args.bootstrap, config, min(5.0, max(remaining, 0.5)), min_brokers=args.brokers
        )
        if result.description is not None:
            print(f"kafka ready: {args.bootstrap} {result.description}")
            return 0
        last_error = result.error or "unknown"
        if result.auth_failed:
            now = time.monotonic()
            auth_failing_since = auth_failing_since or now
            if now - auth_failing_since >= args.auth_grace:
                print(
                    f"kafka ready: {args.bootstrap} refuses {config.username}'s credentials"
                    f" from {args.client_config} ({last_error})",
                    file=sys.stderr,
                )
                return 4
        else:
            auth_failing_since = None
        await asyncio.sleep(min(args.interval, max(deadline - time.monotonic(), 0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--bootstrap", required=True, help="host:port of the broker, or a comma-separated list"
    )
    parser.add_argument(
        "--brokers", type=int, default=1, help="brokers the cluster must list (default 1)"
    )
    parser.add_argument(
        "--client-config",
        required=True,
        type=Path,
        help="librdkafka-style properties: sasl.username, sasl.password, ssl.ca.location",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--interval", type=float, default=0.3, help="poll interval in seconds")
    parser.add_argument(
        "--auth-grace",
        type=float,
        default=10.0,
        help="seconds of refused credentials before giving up (default 10)",
    )
    parser.add_argument(
        "--pid",
        type=int,
        action="append",
        default=[],
        help="a broker pid: fail fast if it dies (repeat for a cluster)",
    )
    args = parser.parse_args()
    try:
        config = _load_client_config(args.client_config)
    except ConfigError as exc:
        print(f"kafka ready: {exc}", file=sys.stderr)
        return 5
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        print("kafka ready: aiokafka is not importable by " + sys.executable, file=sys.stderr)
        return 3
    # aiokafka logs every refused connection at ERROR while the broker boots: hide that noise.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(_main(args, config))


if __name__ == "__main__":
    sys.exit(main())
