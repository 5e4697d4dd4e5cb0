"""Property tests: random action sequences from random agencies never leave a case in an
impossible state, a refusal never changes the case, and replaying the (serialised) log always
rebuilds the same case."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import event as event_note
from hypothesis import strategies as st

from schemas.cases import (
    SYSTEM_AGENCY,
    AgeAssessed,
    AssistanceImplemented,
    AssistancePlanned,
    CaseAction,
    CaseClosed,
    CaseOpened,
    ConsentRecorded,
    DuplicateReviewed,
    FitnessToTravelAssessed,
    FlagPossibleDuplicate,
    HandoverAccepted,
    HandoverCompleted,
    HandoverDeclined,
    HandoverRequested,
    HandoverRevoked,
    MonitoringVisitRecorded,
    PermittedPurposeRecorded,
    ReferralAcknowledged,
    ReintegrationMeasure,
    ReintegrationPlanned,
    ReturnArrived,
    ReturnDeparted,
    ReturnRiskAssessed,
    ReturnWithdrawn,
    SarConcluded,
    SarCoordinationAccepted,
    SarDisembarked,
    SarPersonsRescued,
    SarPhaseDeclared,
    SarRescueStarted,
    ScreeningRecorded,
    SharingOverrideRecorded,
    TraffickingStatusDecided,
    TransitionRecorded,
    TravelDocumentsIssued,
)
from schemas.referral import IndicatorHit
from schemas.vocab import (
    CaseStatus,
    DecisionMakingOrg,
    ReintegrationDimension,
    SarPhase,
    TraffickingStatus,
)
from services.cases.domain import Case, decide, replay, violations
from services.cases.domain.aggregate import Message
from services.cases.domain.lifecycle import TRANSITIONS
from services.cases.domain.lifecycle import referral as referral_steps
from services.cases.domain.lifecycle import returns as return_steps
from services.cases.domain.lifecycle import sar as sar_steps
from tests.unit.cases.case_builders import (
    AGENCIES,
    CHILD,
    CTX,
    T0,
    referral,
    return_request,
    sar_alert,
)

POOL = [*sorted(AGENCIES), "stranger", SYSTEM_AGENCY]
SERVICES = ["Health", "Legal", "SocialCare"]
HITS = [
    IndicatorHit(dimension="deceptive_recruitment", indicator="false_promises", strength="weak"),
    IndicatorHit(dimension="coercion_at_destination", indicator="debt_bondage", strength="strong"),
]


def fields_for(draw: Any, cls: type[CaseAction], now: dt.datetime) -> dict[str, Any]:
    agency = st.sampled_from(POOL[:-2])
    strategies: dict[type[CaseAction], dict[str, st.SearchStrategy[Any]]] = {
        ScreeningRecorded: {"indicators": st.sets(st.sampled_from(HITS)).map(tuple)},
        TraffickingStatusDecided: {
            "trafficking_status": st.sampled_from(TraffickingStatus),
            "status_decided_by": st.sampled_from(DecisionMakingOrg),
        },
        AssistancePlanned: {"services": st.sets(st.sampled_from(SERVICES), min_size=1).map(tuple)},
        AssistanceImplemented: {
            "services": st.sets(st.sampled_from(SERVICES), min_size=1).map(tuple)
        },
        ConsentRecorded: {"consent_to_share": st.booleans()},
        SharingOverrideRecorded: {
            "for_agency": agency,
            "legal_basis": st.just("order"),
            "reason": st.just("risk"),
        },
        PermittedPurposeRecorded: {
            "for_agency": agency,
            "purpose": st.sampled_from(["non_punishment_review", "residence_permit_for_victim"]),
            "legal_basis": st.just("law"),
        },
        AgeAssessed: {"assessed_as_child": st.booleans()},
        HandoverRequested: {"to_agency": agency, "mode": st.sampled_from(["referral", "transfer"])},
        HandoverDeclined: {"reason": st.just("no_capacity")},
        HandoverRevoked: {"to_agency": agency},
        ReturnRiskAssessed: {"risk_level": st.sampled_from(["low", "low", "medium", "high"])},
        FitnessToTravelAssessed: {"fit_to_travel": st.sampled_from([True, True, False])},
        ReturnDeparted: {
            "receiving_agency": st.none() | agency,
            "escort_agency": st.none() | agency,
        },
        ReintegrationPlanned: {
            "measures": st.just(
                (ReintegrationMeasure(dimension=ReintegrationDimension.social, measure="x"),)
            )
        },
        MonitoringVisitRecorded: {
            "visited_on": st.integers(-60, 1).map(lambda d: now.date() + dt.timedelta(days=d)),
            "economic": st.floats(0, 1),
            "social": st.floats(0, 1),
            "psychosocial": st.floats(0, 1),
        },
        SarPhaseDeclared: {"phase": st.sampled_from(SarPhase)},
        SarPersonsRescued: {"count": st.integers(1, 20)},
        SarDisembarked: {
            "persons": st.integers(1, 20),
            "place_of_safety": st.just("Port"),
            "country": st.just("ID"),
        },
        SarConcluded: {"reason": st.just("done")},
        DuplicateReviewed: {"other_case_id": st.just("other-1"), "same_person": st.booleans()},
        FlagPossibleDuplicate: {"other_case_id": st.sampled_from(["other-1", "case-1"])},
    }
    drawn = {name: draw(s) for name, s in strategies.get(cls, {}).items()}
    if cls is CaseClosed:
        referred = draw(st.booleans())
        drawn = {
            "closure": CaseStatus.ClosedReferred if referred else CaseStatus.Closed,
            "referred_to": draw(agency) if referred else None,
        }
    return drawn


ACTIONS: list[type[CaseAction]] = [
    ReferralAcknowledged, ScreeningRecorded, TraffickingStatusDecided, AssistancePlanned,
    AssistanceImplemented, CaseClosed, ConsentRecorded, SharingOverrideRecorded,
    PermittedPurposeRecorded, AgeAssessed, HandoverRequested, HandoverAccepted, HandoverDeclined,
    HandoverRevoked, HandoverCompleted, ReturnRiskAssessed, TravelDocumentsIssued,
    FitnessToTravelAssessed, ReturnWithdrawn, ReturnDeparted, ReturnArrived,
    ReintegrationPlanned, MonitoringVisitRecorded, SarPhaseDeclared, SarCoordinationAccepted,
    SarRescueStarted, SarPersonsRescued, SarDisembarked, SarConcluded, DuplicateReviewed,
    FlagPossibleDuplicate,
]  # fmt: skip


ENDINGS = {CaseClosed, ReturnWithdrawn, SarConcluded}
LIFECYCLE_STEPS = {*referral_steps.TRANSITIONS, *return_steps.TRANSITIONS, *sar_steps.TRANSITIONS}


def actor_for(draw: Any, case: Case) -> str:
    """Mostly agencies with a part to play, so sequences reach deep into the lifecycles."""
    involved = [case.owner, *case.assigned, *(h.to_agency for h in case.handovers)]
    if case.returns is not None and case.returns.receiving_agency:
        involved.append(case.returns.receiving_agency)
    owner = st.just(case.owner)
    return str(draw(st.one_of(owner, owner, st.sampled_from(involved), st.sampled_from(POOL))))


def message_for(draw: Any, case: Case, now: dt.datetime) -> Message:
    if case.kind == "sar" and draw(st.integers(0, 9)) == 0:
        return sar_alert(
            "case-1",
            sitrep_number=draw(st.integers(1, 6)),
            phase=draw(st.sampled_from(SarPhase)),
            coordinating_rcc=draw(st.sampled_from(["rcc-a", "rcc-b"])),
            reporting_agency=actor_for(draw, case),
        )
    if draw(st.integers(0, 30)) == 0:
        return referral("case-1")  # a repeated opening
    allowed = [
        c
        for c in ACTIONS
        if case.kind in TRANSITIONS[c].kinds
        and case.state in TRANSITIONS[c].sources
        and c not in ENDINGS
    ]
    steps = [c for c in allowed if c in LIFECYCLE_STEPS] or allowed
    # Mostly the lifecycle's own next steps, so sequences reach deep; sometimes anything.
    choice = draw(st.integers(0, 5))
    pool = ACTIONS if choice == 0 or not allowed else allowed if choice < 3 else steps
    cls = draw(st.sampled_from(pool))
    version = draw(st.sampled_from([None, None, case.version, case.version, case.version + 1, 1]))
    return cls(
        case_id="case-1",
        reporting_agency=actor_for(draw, case),
        expected_version=version,
        **fields_for(draw, cls, now),
    )


OPENINGS = st.sampled_from([
    referral("case-1"),
    referral("case-1", person=CHILD, adult_consent=None, consent_to_share=False),
    referral("case-1", adult_consent=False),
    return_request("case-1"),
    return_request("case-1", person=CHILD, trafficking_victim=False, escort_required=True),
    sar_alert("case-1"),
    sar_alert("case-1", phase=SarPhase.INCERFA, children_reported=True),
])  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    opening=OPENINGS, routed=st.lists(st.sampled_from(sorted(AGENCIES)), max_size=2), data=st.data()
)
def test_random_sequences_keep_cases_possible_and_replayable(
    opening: Message, routed: list[str], data: st.DataObject
) -> None:
    now = T0
    first = decide(None, opening, now=now, ctx=CTX, routed_to=routed)
    assert first.case is not None
    case, log = first.case, list(first.events)
    for _ in range(data.draw(st.integers(5, 60))):
        now += dt.timedelta(minutes=data.draw(st.integers(0, 60 * 24 * 40)))
        message = message_for(data.draw, case, now)
        decision = decide(case, message, now=now, ctx=CTX)
        if decision.rejection is not None:
            assert decision.case is case
            assert decision.events == ()
            assert "Mai" not in decision.rejection.message
            assert "Tran" not in decision.rejection.message
            continue
        assert decision.case is not None
        (event,) = decision.events
        assert isinstance(event, TransitionRecorded)
        assert event.version == case.version + 1 == decision.case.version
        case = decision.case
        log.append(event)
        event_note(f"reached {case.state}")
        assert violations(case, AGENCIES) == [], (message, case)
    assert replay(log) == case
    wire = [(type(e), e.model_dump_json()) for e in log]
    assert isinstance(log[0], CaseOpened)
    assert replay(cls.model_validate_json(text) for cls, text in wire) == case
