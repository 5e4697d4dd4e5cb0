"""The cases service's outgoing ids: stable on replay, and never shared by two agencies that
happen to use the same message id (an agency's consumer drops an id it has seen)."""

from __future__ import annotations

import datetime as dt

from schemas.cases import RejectionReason, ScreeningReferralOpened, TransitionRejected
from services.cases.records import follow_up_records, rejection_record

AT = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
SOURCE_A = "urn:casebridge:agency:id-rcc-jakarta:ops"
SOURCE_B = "urn:casebridge:agency:au-jrcc:ops"


def rejection(actor: str) -> TransitionRejected:
    return TransitionRejected(
        case_id="CASE-1",
        attempted_type="org.casebridge.case.accept.v1",
        actor_agency=actor,
        reason=RejectionReason.STALE_VERSION,
        message="synthetic",
        occurred_at=AT,
    )


def test_a_rejection_id_is_stable_and_includes_the_source_of_what_it_refuses() -> None:
    first = rejection_record(rejection("x"), causation="msg-1", causation_source=SOURCE_A)
    again = rejection_record(rejection("x"), causation="msg-1", causation_source=SOURCE_A)
    other = rejection_record(rejection("x"), causation="msg-1", causation_source=SOURCE_B)
    assert first.headers["ce_id"] == again.headers["ce_id"]
    assert first.headers["ce_id"] != other.headers["ce_id"]
    assert first.headers["ce_causationid"] == "msg-1"  # what the sender correlates on


def test_follow_ups_of_two_agencies_events_with_one_id_do_not_share_ids() -> None:
    """Before, another RCC reusing an RCC's disembarkation id made CaseBridge publish its
    screening referral under the same id as the real one: on `casebridge.cases.events` and
    on the shelter's updates topic, where the shelter's consumer would drop the real one."""

    def ids(source: str) -> list[str]:
        opened = ScreeningReferralOpened(
            screening_id="SCR-1",
            incident_id="SAR-1",
            coordinating_rcc="id-rcc-jakarta",
            place_of_safety="Synthetic harbour",
            country="ID",
            persons=3,
            disembarked_at=AT,
        )
        records = follow_up_records(
            opened, recipients=["id-shelter-ngo"], causation="msg-1", causation_source=source
        )
        return [r.headers["ce_id"] for r in records]

    assert ids(SOURCE_A) == ids(SOURCE_A)
    assert set(ids(SOURCE_A)).isdisjoint(ids(SOURCE_B))
