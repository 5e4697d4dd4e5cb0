"""The routing policy: a data file of agencies and rules, validated before the router starts.

Rules are additive: every rule whose conditions hold contributes its agencies, and an agency
chosen by several rules keeps the most urgent priority. When no rule matches, the policy's
`default_route` applies, so an event is never routed to nobody. Every rule names the
ministerial priority it serves.

Agencies of a kind are looked for in the event's country. Where there are none, an agency
abroad is chosen only when a sharing agreement (the data-sharing policy's) covers it; otherwise
the regional coordinator receives the event, and what it is told is cut to what may cross a
border without an agreement. A referral is never sent to every agency of a kind everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from schemas.business import ForcedLabourReported
from schemas.priorities import MinisterialPriority
from schemas.registry import EVENT_TYPES
from schemas.returns import ReturnRequested
from schemas.sar import SarAlertReceived
from schemas.vocab import AgencyKind
from services.privacy.policy import SharingAgreement
from services.runtime.settings import Settings

AgencyIdStr = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]
"""Lower-case letters, digits and '-': an agency id names its inbox topic, and Kafka treats
'.' and '_' in topic names as colliding."""


class Priority(StrEnum):
    """How fast the receiving agency must look, most urgent first."""

    IMMEDIATE = "immediate"
    HIGH = "high"
    NORMAL = "normal"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Priority.IMMEDIATE: 0, Priority.HIGH: 1, Priority.NORMAL: 2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class Agency(_Strict):
    id: AgencyIdStr
    name: str = Field(max_length=200)
    kind: AgencyKind
    country: str = Field(pattern=r"^[A-Z]{2}$")
    fallback: AgencyIdStr | None = None
    """Who is told when this agency misses a deadline: a supervising or fallback agency."""


class Conditions(_Strict):
    """All given conditions must hold; an omitted one does not constrain."""

    event_types: frozenset[str] | None = None
    child: bool | None = None
    exploitation_any: frozenset[str] | None = None
    sar_phase_any: frozenset[str] | None = None
    country_any: frozenset[str] | None = None


class Targets(_Strict):
    agencies: tuple[AgencyIdStr, ...] = ()
    kinds: tuple[AgencyKind, ...] = ()
    """Agencies of these kinds in the event's country; if it has none, those abroad that a
    sharing agreement covers, else the regional coordinator."""
    origin_kinds: tuple[AgencyKind, ...] = ()
    """As `kinds`, in the event's country of origin (a return's home country, a document's
    issuing country)."""
    kinds_everywhere: tuple[AgencyKind, ...] = ()
    """Agencies of these kinds in every country: for coordination that carries nothing a
    border withholds (neighbouring rescue centres); disclosure still cuts each copy."""
    coordinating_rcc: bool = False
    """The rescue coordination centre the event names as coordinating."""


class Rule(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$")
    serves: MinisterialPriority
    why: str = Field(max_length=300)
    when: Conditions
    route_to: Targets
    priority: Priority


class RoutingPolicy(_Strict):
    version: str = Field(max_length=40)
    agencies: tuple[Agency, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    default_route: tuple[AgencyIdStr, ...] = Field(min_length=1)
    regional_coordinator: AgencyIdStr
    """Receives what no agency in the event's country can, without what a border withholds."""

    @model_validator(mode="after")
    def _references_resolve(self) -> RoutingPolicy:
        ids = [a.id for a in self.agencies]
        problems = [f"agency id {i!r} is listed twice" for i in set(ids) if ids.count(i) > 1]
        known = set(ids)
        names = [r.name for r in self.rules]
        problems += [f"rule name {n!r} is used twice" for n in set(names) if names.count(n) > 1]
        for agency in self.agencies:
            if agency.fallback is not None and agency.fallback not in known:
                problems.append(f"agency {agency.id!r}: unknown fallback {agency.fallback!r}")
        for rule in self.rules:
            for target in rule.route_to.agencies:
                if target not in known:
                    problems.append(f"rule {rule.name!r}: unknown agency {target!r}")
            kinds = {a.kind for a in self.agencies}
            for kind in (
                *rule.route_to.kinds,
                *rule.route_to.origin_kinds,
                *rule.route_to.kinds_everywhere,
            ):
                if kind not in kinds:
                    problems.append(f"rule {rule.name!r}: no agency of kind {kind!s}")
            t = rule.route_to
            if not (
                t.agencies or t.kinds or t.origin_kinds or t.kinds_everywhere or t.coordinating_rcc
            ):
                problems.append(f"rule {rule.name!r}: routes to nobody")
        problems += [
            f"default_route: unknown agency {a!r}" for a in self.default_route if a not in known
        ]
        if self.regional_coordinator not in known:
            problems.append(f"regional_coordinator: unknown agency {self.regional_coordinator!r}")
        if problems:
            raise ValueError("; ".join(sorted(problems)))
        return self

    def agency(self, agency_id: str) -> Agency | None:
        return self._by_id().get(agency_id)

    def _by_id(self) -> Mapping[str, Agency]:
        return {a.id: a for a in self.agencies}


class PolicyError(Exception):
    """The policy file cannot be used; the message says where and why."""


def load_policy(path: Path, *, known_event_types: Iterable[str] = ()) -> RoutingPolicy:
    """Read and validate a policy file; refuse (PolicyError) with every problem named."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"routing policy {path}: cannot read: {exc}") from exc
    try:
        policy = RoutingPolicy.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors()
        ]
        raise PolicyError(f"routing policy {path} is invalid:\n" + "\n".join(lines)) from exc
    known = set(known_event_types)
    if known:
        unknown = sorted(
            f"rule {r.name!r}: unknown event type {t!r}"
            for r in policy.rules
            for t in (r.when.event_types or ())
            if t not in known
        )
        if unknown:
            raise PolicyError(f"routing policy {path} is invalid:\n  " + "\n  ".join(unknown))
    return policy


@dataclass(frozen=True, slots=True)
class Facts:
    """What routing may look at in an event: no personal field, only its consequences."""

    event_type: str
    reporting_agency: str
    child: bool = False
    exploitation: frozenset[str] = frozenset()
    sar_phase: str | None = None
    country: str | None = None
    origin_country: str | None = None
    coordinating_rcc: str | None = None
    on: dt.date = dt.date.min
    """The event's own date (referred, requested, observed): agreements are judged on it, so
    every service that routes the event reaches the same route."""


@dataclass(frozen=True, slots=True)
class Delivery:
    agency: str
    priority: Priority
    rule: str
    via: str | None = None
    """Why an agency outside the event's country is on the route: a sharing agreement's
    name, or `regional-coordinator`."""


@dataclass(frozen=True, slots=True)
class Route:
    matched_rules: tuple[str, ...]
    deliveries: tuple[Delivery, ...]


def _holds(c: Conditions, f: Facts) -> bool:
    return (
        (c.event_types is None or f.event_type in c.event_types)
        and (c.child is None or c.child == f.child)
        and (c.exploitation_any is None or bool(c.exploitation_any & f.exploitation))
        and (c.sar_phase_any is None or f.sar_phase in c.sar_phase_any)
        and (c.country_any is None or f.country in c.country_any)
    )


REGIONAL_COORDINATOR = "regional-coordinator"


def _of_kind_in(
    policy: RoutingPolicy,
    kind: AgencyKind,
    country: str | None,
    agreements: Sequence[SharingAgreement],
    on: dt.date,
) -> list[tuple[str, str | None]]:
    """Agencies of `kind` in `country`; else those abroad an agreement from `country` covers;
    else the regional coordinator. Each with why it is there (None: in the country)."""
    of_kind = [a for a in policy.agencies if a.kind == kind]
    here: list[tuple[str, str | None]] = [(a.id, None) for a in of_kind if a.country == country]
    if here:
        return here
    abroad: list[tuple[str, str | None]] = []
    for agency in of_kind:
        agreement = next(
            (g for g in agreements if country and g.covers(country, agency.id, agency.country, on)),
            None,
        )
        if agreement is not None:
            abroad.append((agency.id, agreement.name))
    return abroad or [(policy.regional_coordinator, REGIONAL_COORDINATOR)]


def _targets(
    policy: RoutingPolicy, t: Targets, f: Facts, agreements: Sequence[SharingAgreement]
) -> list[tuple[str, str | None]]:
    chosen: list[tuple[str, str | None]] = [(a, None) for a in t.agencies]
    for kind in t.kinds:
        chosen += _of_kind_in(policy, kind, f.country, agreements, f.on)
    for kind in t.origin_kinds:
        chosen += _of_kind_in(policy, kind, f.origin_country, agreements, f.on)
    for kind in t.kinds_everywhere:
        chosen += [(a.id, None) for a in policy.agencies if a.kind == kind]
    if t.coordinating_rcc and f.coordinating_rcc and policy.agency(f.coordinating_rcc):
        chosen.append((f.coordinating_rcc, None))
    return chosen


def route(
    policy: RoutingPolicy, facts: Facts, agreements: Sequence[SharingAgreement] = ()
) -> Route:
    """Which agencies must act on an event with these facts, each with a priority and a rule;
    `agreements` (the data-sharing policy's) allow agencies abroad."""
    best: dict[str, Delivery] = {}
    matched: list[str] = []
    for rule in policy.rules:
        if not _holds(rule.when, facts):
            continue
        matched.append(rule.name)
        for agency, via in _targets(policy, rule.route_to, facts, agreements):
            current = best.get(agency)
            if current is None or rule.priority.rank < current.priority.rank:
                best[agency] = Delivery(agency, rule.priority, rule.name, via)
    best.pop(facts.reporting_agency, None)
    if not best:
        # The default route applies even to its own members: an event nobody else must act
        # on still lands with the coordinator, never with no one.
        best = {a: Delivery(a, Priority.NORMAL, "default-route") for a in policy.default_route}
    # Most urgent first (the first agency owns a new case), then by id for a stable order.
    ordered = sorted(best.values(), key=lambda d: (d.priority.rank, d.agency))
    return Route(tuple(matched), tuple(ordered))


def opening_owner(opening: object, deliveries: Sequence[str]) -> str:
    """Who owns the case an opening event starts: the coordinating RCC of a SAR incident; the
    reporting programme of a return (until the receiving agency accepts on arrival); the most
    urgent delivery other than the business of a business report; the most urgent delivery of
    a referral or document request (the reporting agency when there is none)."""
    reporter = str(getattr(opening, "reporting_agency", ""))
    if isinstance(opening, SarAlertReceived):
        return opening.coordinating_rcc
    if isinstance(opening, ReturnRequested):
        return reporter
    if isinstance(opening, ForcedLabourReported):
        # Never the business: it is told its report's status, it does not work on it.
        return next((d for d in deliveries if d != reporter), reporter)
    return deliveries[0] if deliveries else reporter


def deployment_policy(settings: Settings) -> RoutingPolicy:
    """The deployment's agency registry and routing rules, checked against the event types
    CaseBridge knows."""
    return load_policy(settings.routing_policy_path, known_event_types=EVENT_TYPES)
