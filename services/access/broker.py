"""Make the broker enforce an `AccessPlan`: topics, SCRAM credentials, ACLs.

Runs as the super user (`casebridge-admin`), at set-up only. aiokafka has no ACL or SCRAM
admin API, so this uses confluent-kafka's AdminClient (librdkafka), which speaks the same
client file format. Every step is idempotent: an existing topic, credential or ACL is left as
it is, so `sync` can run on every start.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

from services.access.plan import AccessPlan, Grant, plan_access
from services.privacy.policy import load_policy as load_data_sharing_policy
from services.routing.policy import load_policy as load_routing_policy
from services.runtime.credentials import (
    ADMIN,
    KafkaClientConfig,
    kafka_client,
    kafka_client_file,
)
from services.runtime.kafka import MAX_RECORD_BYTES
from services.runtime.settings import Settings

SCRAM_ITERATIONS = 8192
ANY_NAME = cast(str, None)
"""librdkafka's ACL filters take None for "any"; its type stubs say str."""
SERVICE_TOPIC_RECORD_BYTES = MAX_RECORD_BYTES + 64 * 1024
"""`max.message.bytes` of the topics CaseBridge writes (room for a batch's own overhead)."""
CLUSTER_DEFAULT = -1
"""CreateTopics' replication factor for "the broker's `default.replication.factor`" (KIP-464)."""


@dataclass(frozen=True)
class SyncReport:
    topics_created: tuple[str, ...]
    credentials_created: tuple[str, ...]
    grants: int


def admin_client(settings: Settings) -> AdminClient:
    config = kafka_client(settings, ADMIN).librdkafka()
    return AdminClient({**config, "log_level": 3})


def _wait(futures: dict[Any, Future[Any]], *, ignore: Iterable[int] = ()) -> None:
    ignored = set(ignore)
    for future in futures.values():
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() not in ignored:
                raise


def _binding(grant: Grant) -> AclBinding:
    return AclBinding(
        ResourceType[grant.resource.value],
        grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        f"User:{grant.principal}",
        "*",
        AclOperation[grant.operation.value],
        AclPermissionType.ALLOW,
    )


def create_topics(admin: AdminClient, plan: AccessPlan, *, within_s: float = 30.0) -> list[str]:
    """Create missing topics and wait until every partition has a leader; return the new ones.

    Replicas: the cluster's own `default.replication.factor` (and `min.insync.replicas`), so the
    same set-up gives 1 replica on the single dev broker and 3 (2 in sync for an acks=all write)
    on `KAFKA_BROKERS=3`, or whatever a production cluster is configured with. Kafka places
    replicas on registered brokers, a stopped one included: a topic created while one of three
    nodes is down still gets 3 replicas (2 in sync).
    """
    existing = set(admin.list_topics(timeout=30).topics)
    wanted = [
        NewTopic(
            t.name,
            num_partitions=t.partitions,
            replication_factor=CLUSTER_DEFAULT,
            config=_topic_settings(plan, t.name),
        )
        for t in plan.topics
        if t.name not in existing
    ]
    if not wanted:
        return []
    _wait(admin.create_topics(wanted), ignore=[KafkaError.TOPIC_ALREADY_EXISTS])
    names = {t.topic for t in wanted}
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=10).topics
        if all(
            n in meta
            and meta[n].partitions
            and all(p.leader >= 0 for p in meta[n].partitions.values())
            for n in names
        ):
            break
        time.sleep(0.1)
    return sorted(names)


def ensure_credentials(
    admin: AdminClient, settings: Settings, principals: Iterable[str], *, rotate: Iterable[str] = ()
) -> list[str]:
    """Give each principal a SCRAM credential and a client file (0600); a principal whose file
    exists keeps its password unless it is in `rotate`. Returns the principals given a new one."""
    renew = set(rotate)
    changed: list[str] = []
    upserts: list[UserScramCredentialAlteration] = []
    for principal in principals:
        path = kafka_client_file(settings, principal)
        if path.exists() and principal not in renew:
            config = KafkaClientConfig.load(path, bootstrap=settings.kafka_bootstrap)
        else:
            config = KafkaClientConfig(
                bootstrap=settings.kafka_bootstrap,
                username=principal,
                password=secrets.token_urlsafe(32),
                ca_file=(settings.run_dir / "tls" / "ca.pem").resolve(),
            )
            changed.append(principal)
        config.write(path)
        upserts.append(
            UserScramCredentialUpsertion(
                principal,
                ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                config.password.encode(),
            )
        )
    if upserts:
        _wait(admin.alter_user_scram_credentials(upserts))
    return changed


def _await_metadata(admin: AdminClient, plan: AccessPlan, *, within_s: float = 15.0) -> None:
    """Return once the broker serves every credential and ACL of `plan`: they travel through
    the metadata log, so a client connecting right after `sync` could otherwise be refused."""
    wanted_users = set(plan.principals)
    wanted_acls = {_binding(g) for g in plan.grants}
    everything = AclBindingFilter(
        ResourceType.ANY,
        ANY_NAME,
        ResourcePatternType.ANY,
        ANY_NAME,
        ANY_NAME,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deadline = time.monotonic() + within_s
    while True:
        described = admin.describe_user_scram_credentials()  # one future when given no users
        assert isinstance(described, Future)
        users = set(described.result(timeout=30))
        acls = set(admin.describe_acls(everything).result(timeout=30))
        if wanted_users <= users and wanted_acls <= acls:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("the broker did not apply the credentials and ACLs in time")
        time.sleep(0.2)


def _topic_settings(plan: AccessPlan, topic: str) -> dict[str, str]:
    """A planned topic's record limit and, where the policy sets one, its retention."""
    settings = {"max.message.bytes": str(plan.record_bytes.get(topic, SERVICE_TOPIC_RECORD_BYTES))}
    ms = plan.retention_ms.get(topic)
    return settings if ms is None else settings | {"retention.ms": str(ms)}


def apply_topic_settings(admin: AdminClient, plan: AccessPlan) -> None:
    """Set each planned topic's record limit and retention (also on topics that already
    exist, so a changed policy or limit takes effect at the next sync)."""
    resources = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            t.name,
            incremental_configs=[
                ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
                for name, value in _topic_settings(plan, t.name).items()
            ],
        )
        for t in plan.topics
    ]
    if resources:
        _wait(admin.incremental_alter_configs(resources))


def deployment_plan(settings: Settings, agencies: Iterable[str] | None = None) -> AccessPlan:
    """The plan `casebridge agencies sync` applies: the registry's agencies (unless given),
    the deployment's prefixes, and the data-sharing policy's retention."""
    routing = load_routing_policy(settings.routing_policy_path)
    agency_ids = [a.id for a in routing.agencies] if agencies is None else list(agencies)
    return plan_access(
        agency_ids,
        topic_prefix=settings.topic_prefix,
        group_prefix=settings.group_prefix,
        retention=load_data_sharing_policy(settings.data_sharing_policy_path).retention,
        # The regional statistics go to the regional coordinator, when it is deployed.
        statistics_readers=[a for a in (routing.regional_coordinator,) if a in agency_ids],
    )


def sync(settings: Settings, plan: AccessPlan) -> SyncReport:
    """Topics (with their retention), credentials and ACLs of `plan`, created where missing."""
    admin = admin_client(settings)
    topics = create_topics(admin, plan)
    apply_topic_settings(admin, plan)
    created = ensure_credentials(admin, settings, plan.principals)
    _wait(admin.create_acls([_binding(g) for g in plan.grants]))
    _await_metadata(admin, plan)
    return SyncReport(tuple(topics), tuple(created), len(plan.grants))


def rotate(settings: Settings, principal: str) -> None:
    """A new password for `principal`; the old one stops working at once."""
    ensure_credentials(admin_client(settings), settings, [principal], rotate=[principal])


def revoke(settings: Settings, principal: str) -> int:
    """Remove every ACL of `principal` and its credential; return how many ACLs went.

    Its topics and their data stay (the audit log refers to them). A later `sync` restores
    access while the agency is still in the registry: remove it there first.
    """
    admin = admin_client(settings)
    acl_filter = AclBindingFilter(
        ResourceType.ANY,
        ANY_NAME,
        ResourcePatternType.ANY,
        f"User:{principal}",
        ANY_NAME,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    removed = 0
    for future in admin.delete_acls([acl_filter]).values():
        removed += len(future.result(timeout=60))
    deletion = UserScramCredentialDeletion(principal, ScramMechanism.SCRAM_SHA_512)
    deletions: list[UserScramCredentialAlteration] = [deletion]
    _wait(
        admin.alter_user_scram_credentials(deletions),
        ignore=[KafkaError.RESOURCE_NOT_FOUND],
    )
    kafka_client_file(settings, principal).unlink(missing_ok=True)
    return removed
