"""A run's own deployment (database, topics, credentials, ACLs) and its removal."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AclBindingFilter
from sqlalchemy.engine import make_url

from benchmarks.pipeline.config import BENCH_PRINCIPAL, PASSTHROUGH_PARTITIONS, SUPERUSER
from schemas.topics import TopicSpec
from services.access.broker import _binding, admin_client, deployment_plan, sync
from services.access.plan import AccessPlan, Grant, Operation, Resource
from services.routing.policy import RoutingPolicy
from services.runtime.credentials import (
    OWNER_ROLE,
    database_url,
)
from services.runtime.database import asyncpg_dsn
from services.runtime.migrations import upgrade
from services.runtime.settings import Settings


def with_database(settings: Settings, database: str) -> Settings:
    """`settings` on the same server, another database."""
    url = make_url(settings.database_url).set(database=database)
    return settings.model_copy(update={"database_url": url.render_as_string(hide_password=False)})


async def create_database(settings: Settings) -> str:
    """A new database on `settings`' server, set up as infra/postgres/postgres.sh sets up
    `casebridge` (owned by the owner role, nothing for PUBLIC), migrated as the owner; the
    migrations grant each service role what it needs.

    Creating a database needs the superuser (password file under the run directory): the
    owner role is NOCREATEDB by design.
    """
    name = f"cbbench_{uuid.uuid4().hex[:12]}"
    server = asyncpg_dsn(database_url(with_database(settings, "postgres"), SUPERUSER))
    fresh = with_database(settings, name)
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(
            f'CREATE DATABASE "{name}" OWNER "{OWNER_ROLE}" ENCODING \'UTF8\' TEMPLATE template0'
        )
    finally:
        await conn.close()
    conn = await asyncpg.connect(asyncpg_dsn(database_url(fresh, SUPERUSER)))
    try:
        await conn.execute(
            f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC;'
            f' GRANT CONNECT, TEMPORARY ON DATABASE "{name}" TO "{OWNER_ROLE}";'
            " REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
        )
    finally:
        await conn.close()
    await asyncio.to_thread(upgrade, database_url(fresh, OWNER_ROLE))
    return name


async def drop_database(settings: Settings, name: str) -> None:
    conn = await asyncpg.connect(
        asyncpg_dsn(database_url(with_database(settings, "postgres"), SUPERUSER))
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def passthrough_topics(settings: Settings) -> tuple[str, str]:
    """The baseline's input and output topics (outside `casebridge.`: nobody else reads them)."""
    prefix = settings.topic_prefix
    return f"{prefix}bench.passthrough.in", f"{prefix}bench.passthrough.out"


def passthrough_group(settings: Settings) -> str:
    return f"{settings.group_prefix}.passthrough"


def run_access_plan(settings: Settings, policy: RoutingPolicy) -> AccessPlan:
    """The run's deployment as `casebridge agencies sync` plans it (every agency of the
    registry, the run's topic and group prefixes), plus the baseline's principal: its two
    topics, at the services' partition count, and its consumer group, nothing else."""
    plan = deployment_plan(settings, [a.id for a in policy.agencies])
    source, target = passthrough_topics(settings)
    topics = tuple(
        TopicSpec(name, PASSTHROUGH_PARTITIONS, "the original key", "benchmark baseline")
        for name in (source, target)
    )
    grants = (
        Grant(BENCH_PRINCIPAL, Resource.TOPIC, source, Operation.WRITE),  # pre-loading
        Grant(BENCH_PRINCIPAL, Resource.TOPIC, source, Operation.READ),
        Grant(BENCH_PRINCIPAL, Resource.TOPIC, target, Operation.WRITE),
        Grant(BENCH_PRINCIPAL, Resource.GROUP, passthrough_group(settings), Operation.READ),
    )
    return AccessPlan(
        topics=(*plan.topics, *topics),
        principals=(*plan.principals, BENCH_PRINCIPAL),
        grants=tuple(sorted({*plan.grants, *grants})),
        retention_ms=plan.retention_ms,
    )


def run_grants(settings: Settings, plan: AccessPlan) -> list[Grant]:
    """The grants of `plan` that belong to this run alone (named under its prefixes)."""
    prefixes = (settings.topic_prefix, settings.group_prefix + ".")
    if not all(prefixes):
        raise ValueError("a benchmark run needs a topic prefix and a group prefix of its own")
    return [g for g in plan.grants if g.name.startswith(prefixes)]


def tear_down_broker(settings: Settings, plan: AccessPlan) -> list[str]:
    """Delete the run's topics, consumer groups and ACLs (as the super user); what could not
    be deleted, one line each. Credentials stay, as every principal's does, and no longer open
    anything of the run."""
    admin = admin_client(settings)
    prefix = settings.topic_prefix
    if not prefix:
        raise ValueError("refusing to delete topics without a run prefix")
    failed: list[str] = []

    def wait(kind: str, futures: dict[Any, Any]) -> None:
        for what, future in futures.items():
            try:
                future.result(timeout=60)
            except KafkaException as error:
                failed.append(f"{kind} {what}: {error}")

    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    if names:
        wait("topic", admin.delete_topics(names))
    listed = admin.list_consumer_groups().result(timeout=30)
    groups = [
        g.group_id
        for g in listed.valid
        if g.group_id.startswith((settings.group_prefix + ".", prefix))
    ]
    if groups:
        wait("consumer group", admin.delete_consumer_groups(groups))
    filters = [
        AclBindingFilter(
            b.restype,
            b.name,
            b.resource_pattern_type,
            b.principal,
            b.host,
            b.operation,
            b.permission_type,
        )
        for b in (_binding(g) for g in run_grants(settings, plan))
    ]
    if filters:
        wait("ACLs", admin.delete_acls(filters))
    return failed


class Runs:
    """The deployments of one benchmark run, one per measurement: each its own topic and
    group prefix, credentials and ACLs (`casebridge agencies sync`'s plan) and a fresh
    database, removed when it ends unless --keep."""

    def __init__(self, base: Settings, policy: RoutingPolicy, run_id: str, *, keep: bool) -> None:
        self._keep = keep
        self._base = base
        self._policy = policy
        self._run_id = run_id
        self.kept: list[str] = []

    @contextlib.asynccontextmanager
    async def deployment(self, tag: str) -> AsyncIterator[Settings]:
        prefix = f"bench{self._run_id}{tag}."
        settings = self._base.model_copy(
            update={"topic_prefix": prefix, "group_prefix": f"bench-{self._run_id}{tag}"}
        )
        plan = run_access_plan(settings, self._policy)
        database: str | None = None
        synced = False
        try:
            database = await create_database(settings)
            settings = with_database(settings, database)
            synced = True  # from here on, clean-up removes whatever sync got to create
            await asyncio.to_thread(sync, settings, plan)
            yield settings
        finally:
            if self._keep:
                self.kept.append(f"topics {prefix}* and their ACLs, database {database}")
            else:
                await self._remove(settings, plan, database, synced=synced)

    async def _remove(
        self, settings: Settings, plan: AccessPlan, database: str | None, *, synced: bool
    ) -> None:
        failed: list[str] = []
        if synced:
            try:
                failed = await asyncio.to_thread(tear_down_broker, settings, plan)
            except (KafkaException, OSError, ValueError) as error:
                failed = [str(error)]
        for line in failed:
            print(f"clean-up of {settings.topic_prefix}* incomplete: {line}")
        if database is not None:
            try:
                await drop_database(settings, database)
            except (asyncpg.PostgresError, OSError) as error:
                print(f"clean-up: could not drop database {database}: {error}")

    async def clean_up(self) -> None:
        for line in self.kept:
            print(f"kept: {line}")
