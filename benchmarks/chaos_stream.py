"""The records a chaos run publishes, and what each must cause, computed with CaseBridge's rules.

Every record is synthetic (shaped like `benchmarks.pipeline`'s mix). What a record must cause
is not written down by hand: `Model` screens it as intake does, routes it with the routing
policy as the router does, and folds it into its case with the cases domain's own `decide`,
serially, in the order the system must treat it (per case, that is publish order: one agency's
records of one case share a key, so a partition). The oracle then compares these expectations
with what the audit log, the case tables and the topics hold: a serial replay is the
specification, the system under faults is checked against it.

Effects are tuples whose second element is the event id they answer:
`("received", id)`, `("validated", id)`, `("routed", id)`, `("delivered", id, agency)`,
`("dead-letter", id, code, service)`, `("rejection-copy", id)` (the sender's own rejections
topic), `("case-event", id)` (a case event published with the id as its causation) and
`("case-rejected", id)` (a transition refusal sent back to the actor).
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import ConsumerRecord
from aiokafka.partitioner import murmur2

# The pipeline benchmark's synthetic mix (its payload shapes and senders), reused as is.
from benchmarks.chaos_poison import POISON_PREFIX, POISONED, poison_target
from benchmarks.pipeline.events import KINDS, SENDERS, check_registry, event_payload
from schemas.cases import CaseAction, CaseOpened
from schemas.errors import EventRejected, RejectionCode
from schemas.identity import agency_source
from schemas.referral import VictimReferralSubmitted
from schemas.registry import validate_payload
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from schemas.topics import PER_AGENCY_PARTITIONS, inbound_topic
from services.cases.coordinator import directory_of
from services.cases.domain import Case, CaseContext, decide
from services.cases.domain import load_policy as load_case_policy
from services.intake.registry import Registry
from services.intake.screening import screen
from services.privacy.policy import DataSharingPolicy
from services.routing.facts import facts_from
from services.routing.policy import RoutingPolicy, route
from services.runtime.settings import Settings

Effect = tuple[str, ...]
CASE_ACTION_PREFIX = "org.casebridge.case."
MAX_VALUE_BYTES = 256 * 1024
"""Intake's limit (schemas.envelope.MAX_VALUE_BYTES): an oversized record exceeds it."""


@dataclass(frozen=True, slots=True)
class Msg:
    """One record an agency publishes with its own credentials to its own inbound topic."""

    agency: str
    topic: str
    """Logical topic (the run's prefix is added when publishing)."""
    key: bytes
    headers: tuple[tuple[str, bytes], ...]
    value: bytes
    event_id: str
    label: str
    """What it is, for the report: a kind of opening, `action`, `repeat`, `bad:<code>`,
    `poison:<service>`, `ooo` (out-of-order scenario)."""
    partition: int | None = None
    """An explicit partition (a repeat sent to another partition); None: by key."""


@dataclass(frozen=True, slots=True)
class CaseWant:
    """A case as a serial replay leaves it: its state, version and each version's event."""

    kind: str
    state: str
    version: int
    events: tuple[tuple[str, str], ...]
    """(event_type, action_type or "") for versions 1..n, in order."""


@dataclass
class Expected:
    """Everything the records must cause, exactly once each (or `n` times where counted)."""

    audit: Counter[Effect] = field(default_factory=Counter)
    by_record: dict[int, Counter[Effect]] = field(default_factory=dict)
    """The audit effects each record adds, by `id()` of its `Msg` (a repeat adds its own
    sighting and dead letter to its event id's): progress is measured per record."""
    cases: dict[str, CaseWant] = field(default_factory=dict)
    inbox: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(event id, agency): one copy on that agency's inbox topic."""
    dead_letters: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(original event id, reason code, rejecting service) on the dead-letter topic."""
    no_sighting: set[str] = field(default_factory=set)
    """Event ids intake must not record as seen (rejected before: no partial write)."""
    no_claim: set[str] = field(default_factory=set)
    """Event ids the cases service must not claim (its handler failed on them)."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """How the model treated the records (report only)."""

    def copy(self) -> Expected:
        return Expected(
            audit=Counter(self.audit),
            by_record=dict(self.by_record),
            cases=dict(self.cases),
            inbox=Counter(self.inbox),
            dead_letters=Counter(self.dead_letters),
            no_sighting=set(self.no_sighting),
            no_claim=set(self.no_claim),
            outcomes=Counter(self.outcomes),
        )

    @property
    def bad(self) -> int:
        """Records that must end as a dead letter (rejected or set aside)."""
        return sum(self.dead_letters.values())


def case_context(
    policy: RoutingPolicy, sharing: DataSharingPolicy, settings: Settings
) -> CaseContext:
    """The cases service's context (services.bootstrap.wire), without a person-key secret: the
    synthetic persons have no date of birth, so none gets a person key either way."""
    return CaseContext(
        agencies=directory_of(policy),
        policy=load_case_policy(settings.case_policy_path),
        data_sharing=sharing,
    )


class Model:
    """The serial specification: feed records in the order the system must treat them."""

    def __init__(self, policy: RoutingPolicy, sharing: DataSharingPolicy, ctx: CaseContext) -> None:
        self._policy = policy
        self._sharing = sharing
        self._registry = Registry(policy, sharing)
        self._ctx = ctx
        self._seen: set[tuple[str, str]] = set()
        self._cases: dict[str, Case] = {}
        self._fed: Counter[Effect] = Counter()
        self.want = Expected()

    def copy(self) -> Model:
        other = Model.__new__(Model)
        other._policy = self._policy
        other._sharing = self._sharing
        other._registry = self._registry
        other._ctx = self._ctx
        other._seen = set(self._seen)
        other._cases = dict(self._cases)  # Case is immutable
        other._fed = Counter()
        other.want = self.want.copy()
        return other

    def case(self, case_id: str) -> Case | None:
        return self._cases.get(case_id)

    def _add(self, effect: Effect, n: int = 1) -> None:
        self.want.audit[effect] += n
        self._fed[effect] += n

    def _dead_letter(self, event_id: str, code: str, service: str) -> None:
        self._add(("dead-letter", event_id, code, service))
        self.want.dead_letters[(event_id, code, service)] += 1
        if service == "intake":  # intake also tells the sender, on its rejections topic
            self._add(("rejection-copy", event_id))
        self.want.outcomes[f"dead-lettered {code} by {service}"] += 1

    def feed_all(self, messages: Iterable[Msg]) -> None:
        for m in messages:
            self.feed(m)

    def feed(self, msg: Msg) -> None:
        self._fed = self.want.by_record.setdefault(id(msg), Counter())
        self._treat(msg)

    def _treat(self, msg: Msg) -> None:
        eid = msg.event_id
        self._add(("received", eid))
        poison = poison_target(eid)
        if poison == "intake":
            self._dead_letter(eid, RejectionCode.PROCESSING_FAILED.value, "intake")
            self.want.no_sighting.add(eid)
            return
        try:
            screened = screen(_record(msg), msg.agency, self._registry)
        except EventRejected as error:
            self._dead_letter(eid, error.code.value, "intake")
            self.want.no_sighting.add(eid)
            return
        pair = (screened.envelope.source, screened.envelope.id)
        if pair in self._seen:
            self._dead_letter(eid, RejectionCode.DUPLICATE_EVENT.value, "intake")
            return
        self._seen.add(pair)
        self._add(("validated", eid))
        ce_type = screened.envelope.type
        payload = validate_payload(ce_type, screened.data)
        routed_to: tuple[str, ...] = ()
        if not ce_type.startswith(CASE_ACTION_PREFIX):
            chosen = route(
                self._policy, facts_from(ce_type, payload), self._sharing.sharing_agreements
            )
            routed_to = tuple(d.agency for d in chosen.deliveries)
            if poison == "router":
                self._dead_letter(eid, RejectionCode.PROCESSING_FAILED.value, "router")
            else:
                self._add(("routed", eid))
                for agency in routed_to:
                    self._add(("delivered", eid, agency))
                    self.want.inbox[(eid, agency)] += 1
        if poison == "cases":
            self._dead_letter(eid, RejectionCode.PROCESSING_FAILED.value, "cases")
            self.want.no_claim.add(eid)
            return
        if not isinstance(
            payload, VictimReferralSubmitted | ReturnRequested | SarAlertReceived | CaseAction
        ):
            return
        case_id = screened.case_id
        before = self._cases.get(case_id)
        decision = decide(
            before, payload, now=datetime.now(UTC), ctx=self._ctx, routed_to=routed_to
        )
        if decision.rejection is not None:
            self._add(("case-rejected", eid))
            self.want.outcomes[f"case action refused {decision.rejection.reason}"] += 1
            return
        after = decision.case
        assert after is not None
        self._cases[case_id] = after
        self._add(("case-event", eid), len(decision.events) + len(decision.follow_ups))
        previous = self.want.cases.get(case_id)
        events = previous.events if previous is not None else ()
        for e in decision.events:
            action = "" if isinstance(e, CaseOpened) else e.action_type
            events = (*events, (type(e).__name__, action))
        self.want.cases[case_id] = CaseWant(
            after.kind.value, after.state.value, after.version, events
        )
        self.want.outcomes["case opened" if before is None else "case action applied"] += 1


def _record(msg: Msg) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=msg.topic,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=msg.key,
        value=msg.value,
        checksum=None,
        serialized_key_size=len(msg.key),
        serialized_value_size=len(msg.value),
        headers=list(msg.headers),
    )


# --- building records ----------------------------------------------------------------------


def _headers(
    event_id: str, source: str, ce_type: str, case_id: str
) -> tuple[tuple[str, bytes], ...]:
    return (
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("ce_subject", case_id.encode()),
        ("content-type", b"application/json"),
    )


def _event_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def opening(kind: str, n: int, *, run: str, rng: random.Random, event_id: str | None = None) -> Msg:
    """An opening event (referral, return request or SAR alert) of case `n` of the run."""
    agency, system, ce_type = SENDERS[kind]
    case_id = f"{kind[:3].upper()}-{run}-{n:07d}"
    now = datetime.now(UTC).isoformat()
    eid = event_id or _event_id(rng)
    return Msg(
        agency=agency,
        topic=inbound_topic(agency),
        key=case_id.encode(),
        headers=_headers(eid, agency_source(agency, system), ce_type, case_id),
        value=orjson.dumps(event_payload(kind, agency, rng, case_id, n, now)),
        event_id=eid,
        label=kind,
    )


def action(
    agency: str,
    case_id: str,
    name: str,
    *,
    rng: random.Random,
    label: str = "action",
    **fields: Any,
) -> Msg:
    """A case action (`org.casebridge.case.<name>.v1`) from `agency`'s casework system."""
    eid = _event_id(rng)
    data = {"case_id": case_id, "reporting_agency": agency, **fields}
    return Msg(
        agency=agency,
        topic=inbound_topic(agency),
        key=case_id.encode(),
        headers=_headers(
            eid, agency_source(agency, "casework"), f"{CASE_ACTION_PREFIX}{name}.v1", case_id
        ),
        value=orjson.dumps(data),
        event_id=eid,
        label=label,
    )


RETURN_FOLLOW_UPS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("return_risk_assessed", {"risk_level": "low"}),
    ("travel_documents_issued", {}),
)
"""What the returning programme records after a return request, in this order: the case
events' versions must follow it (one agency, one key, so one partition)."""


def base_stream(count: int, *, run: str, policy: RoutingPolicy, seed: int) -> list[Msg]:
    """`count` records: openings in the benchmark's mix, each with a case of its own, and for
    each return its programme's follow-up actions a little later in the stream (by the
    programme itself: same topic, same key, so order per case must be kept)."""
    check_registry(policy)
    rng = random.Random(seed)
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    placed: list[tuple[float, int, Msg]] = []
    n = 0
    while len(placed) < count:
        kind = rng.choices(kinds, weights)[0]
        first = opening(kind, n, run=run, rng=rng)
        placed.append((float(n), len(placed), first))
        if kind == "return":
            at = float(n)
            for name, fields in RETURN_FOLLOW_UPS:
                at += rng.uniform(5.0, 400.0)
                msg = action(first.agency, first.key.decode(), name, rng=rng, **fields)
                placed.append((at, len(placed), msg))
        n += 1
    placed.sort()
    return [m for _, _, m in placed[:count]]


def with_follow_ups(messages: Sequence[Msg]) -> set[str]:
    """Case ids that have records after their opening (not to be repeated under another key)."""
    return {m.key.decode() for m in messages if m.label == "action"}


def partition_of(key: bytes, partitions: int = PER_AGENCY_PARTITIONS) -> int:
    """The partition aiokafka's default partitioner picks for `key`."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def insert(messages: list[Msg], extra: Sequence[tuple[int, Msg]]) -> list[Msg]:
    """`messages` with each (position, msg) of `extra` inserted before that position."""
    by_position: dict[int, list[Msg]] = {}
    for position, msg in extra:
        by_position.setdefault(max(0, min(position, len(messages))), []).append(msg)
    out: list[Msg] = []
    for i, m in enumerate(messages):
        out.extend(by_position.pop(i, ()))
        out.append(m)
    for rest in by_position.values():
        out.extend(rest)
    return out


def repeats(messages: Sequence[Msg], *, share: float, rng: random.Random) -> list[tuple[int, Msg]]:
    """Recipe 7: the same event sent 2-10 times in all, later in the stream (some right after,
    some thousands of records later), half of the repeats on another partition of the
    agency's topic (same key, explicit partition) when it has more than one (agency topics
    have one today, `PER_AGENCY_PARTITIONS`, so every repeat follows on the same one). Only
    openings without follow-ups are repeated: intake keeps the first sighting by position,
    and a copy on another partition that wins could otherwise overtake the case's own later
    records."""
    busy = with_follow_ups(messages)
    candidates = [
        (i, m) for i, m in enumerate(messages) if m.label != "action" and m.key.decode() not in busy
    ]
    chosen = rng.sample(candidates, max(1, int(len(candidates) * share)))
    out: list[tuple[int, Msg]] = []
    for i, m in chosen:
        home = partition_of(m.key)
        for j in range(rng.randint(1, 9)):
            gap = rng.randint(1, 50) if rng.random() < 0.5 else rng.randint(1_000, 20_000)
            other = (home + 1 + j) % PER_AGENCY_PARTITIONS if rng.random() < 0.5 else None
            copy = Msg(
                agency=m.agency,
                topic=m.topic,
                key=m.key,
                headers=m.headers,
                value=m.value,
                event_id=m.event_id,
                label="repeat",
                partition=other,
            )
            out.append((i + gap, copy))
    return out


def bad_records(
    count: int, *, run: str, rng: random.Random, length: int, first: int = 0
) -> list[tuple[int, Msg]]:
    """Recipe 6: oversized (over intake's 256 KiB), not JSON, and schema-invalid records, each
    a CloudEvent with an id of its own, spread over the stream (`first`: case numbers from)."""
    out: list[tuple[int, Msg]] = []
    oversized = max(1, count // 5)
    for k in range(count):
        if k < oversized:
            label = "bad:TOO_LARGE"
        elif k % 2 == 0:
            label = "bad:NOT_JSON"
        else:
            label = "bad:INVALID_PAYLOAD"
        base = opening("referral-adult", 9_000_000 + first + k, run=run, rng=rng)
        if label == "bad:TOO_LARGE":
            doc = orjson.loads(base.value)
            doc["notes"] = "x" * (MAX_VALUE_BYTES + 16 * 1024)
            value = orjson.dumps(doc)
        elif label == "bad:NOT_JSON":
            value = b'{"case_id": "' + base.key + b'", not json'
        else:
            doc = orjson.loads(base.value)
            doc["type_of_exploitation"] = ["NotAFormOfExploitation"]
            value = orjson.dumps(doc)
        msg = Msg(
            agency=base.agency,
            topic=base.topic,
            key=base.key,
            headers=base.headers,
            value=value,
            event_id=base.event_id,
            label=label,
        )
        out.append((rng.randrange(length + 1), msg))
    return out


def poison_records(
    per_service: int, *, run: str, rng: random.Random, length: int
) -> list[tuple[int, Msg]]:
    """Recipe 5: valid openings that intake's, the router's or the cases service's handler
    always fails on (their ids mark them for `benchmarks.chaos_poison`), evenly spread."""
    out: list[tuple[int, Msg]] = []
    total = per_service * len(POISONED)
    k = 0
    for round_ in range(per_service):
        for service in POISONED:
            eid = f"{POISON_PREFIX}{service}-{_event_id(rng)}"
            kind = rng.choice(("referral-adult", "referral-child", "sar-alert"))
            msg = opening(kind, 8_000_000 + k, run=run, rng=rng, event_id=eid)
            msg = Msg(
                agency=msg.agency,
                topic=msg.topic,
                key=msg.key,
                headers=msg.headers,
                value=msg.value,
                event_id=eid,
                label=f"poison:{service}",
            )
            position = int(length * (k + 1) / (total + 1))
            out.append((position, msg))
            k += 1
        del round_
    return out


@dataclass(frozen=True)
class OutOfOrder:
    """Recipe 8: per case, records published in three gated phases so that the cases service
    sees a case's actions before, and out of step with, the referral that opens it."""

    early: list[Msg]
    """Phase A: the owner acknowledges a referral that does not exist yet."""
    openings: list[Msg]
    """Phase B, once every phase-A record was answered: the referrals."""
    late: list[Msg]
    """Phase C, once every case is open: a status decision before screening, an
    acknowledgement and a screening with the right expected versions, then an
    acknowledgement with a stale expected version (the version check)."""

    def logical_order(self) -> list[Msg]:
        return [*self.early, *self.openings, *self.late]


def out_of_order(cases: int, *, run: str, rng: random.Random, model: Model) -> OutOfOrder:
    """The records of `cases` out-of-order cases; `model` (not changed) finds each owner."""
    early: list[Msg] = []
    openings: list[Msg] = []
    late: list[Msg] = []
    probe = model.copy()
    for k in range(cases):
        first = opening("referral-adult", 7_000_000 + k, run=run, rng=rng)
        first = Msg(
            agency=first.agency,
            topic=first.topic,
            key=first.key,
            headers=first.headers,
            value=first.value,
            event_id=first.event_id,
            label="ooo",
        )
        probe.feed(first)
        case_id = first.key.decode()
        opened = probe.case(case_id)
        if opened is None:
            raise ValueError("an out-of-order referral did not open a case in the model")
        owner = opened.owner
        early.append(action(owner, case_id, "referral_acknowledged", rng=rng, label="ooo"))
        openings.append(first)
        late += [
            action(
                owner,
                case_id,
                "trafficking_status_decided",
                rng=rng,
                label="ooo",
                trafficking_status="ActualVictimOfTrafficking",
                status_decided_by="NGO",
            ),
            action(
                owner, case_id, "referral_acknowledged", rng=rng, label="ooo", expected_version=1
            ),
            action(
                owner,
                case_id,
                "screening_recorded",
                rng=rng,
                label="ooo",
                expected_version=2,
                indicators=[
                    {
                        "dimension": "exploitative_conditions",
                        "indicator": "excessive_working_hours",
                        "strength": "medium",
                    }
                ],
                type_of_exploitation=["ForcedLabour"],
            ),
            action(
                owner, case_id, "referral_acknowledged", rng=rng, label="ooo", expected_version=1
            ),
        ]
    return OutOfOrder(early=early, openings=openings, late=late)
