"""Readiness probe for the local Kafka broker (used by infra/kafka/kafka.sh wait).

Polls the broker with the aiokafka admin client until it answers a DescribeCluster
request with at least one broker, or until the timeout expires.

Exit codes: 0 ready, 1 timeout, 2 the broker process (--pid) died, 3 aiokafka missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _probe(bootstrap: str, request_timeout_s: float) -> str | None:
    """Return a short description of the cluster, or None when it does not answer yet."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(request_timeout_s * 1000),
        client_id="casebridge-kafka-ready",
    )
    try:
        await asyncio.wait_for(admin.start(), timeout=request_timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout=request_timeout_s)
        # Ready means consumer groups work too: the first FindCoordinator creates the offsets
        # topic, and until it exists every consumer logs GroupCoordinatorNotAvailable errors.
        await asyncio.wait_for(
            admin.find_coordinator("casebridge.ready-probe"), timeout=request_timeout_s
        )
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):  # a probe that cannot close cleanly still answered
            await asyncio.wait_for(admin.close(), timeout=request_timeout_s)
    brokers = cluster.get("brokers") or []
    if not brokers:
        return None
    return (
        f"cluster_id={cluster.get('cluster_id')} brokers={len(brokers)}"
        f" controller={cluster.get('controller_id')}"
    )


async def _main(args: argparse.Namespace) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        if not _process_alive(args.pid):
            print(f"kafka ready: broker process {args.pid} exited", file=sys.stderr)
            return 2
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            print(
                f"kafka ready: {args.bootstrap} did not answer within {args.timeout:.0f}s",
                file=sys.stderr,
            )
            return 1
        desc = await _probe(args.bootstrap, min(5.0, max(remaining, 0.5)))
        if desc is not None:
            print(f"kafka ready: {args.bootstrap} {desc}")
            return 0
        await asyncio.sleep(min(args.interval, max(deadline - time.monotonic(), 0)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True, help="host:port of the broker")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--interval", type=float, default=0.3, help="poll interval in seconds")
    parser.add_argument("--pid", type=int, default=None, help="broker pid: fail fast if it dies")
    args = parser.parse_args()
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        print("kafka ready: aiokafka is not importable by " + sys.executable, file=sys.stderr)
        return 3
    # aiokafka logs every refused connection at ERROR while the broker boots: hide that noise.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
