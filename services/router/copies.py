"""Each agency's first copy of an event: only what the data-sharing policy lets it be told.

The situation is the one the case will be in once the cases service opens it (the same owner
rule, the consent and purposes the event records), so the first copy and the first case update
withhold the same things. Withheld fields are absent, and named in the `cb_withheld` header.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from schemas.common import PurposeGrant
from schemas.documents import DocumentRequested
from schemas.referral import VictimReferralSubmitted
from schemas.returns import ReturnRequested
from services.privacy.disclosure import Recipient, Role, Situation, minimised, withheld_fields
from services.privacy.policy import DataSharingPolicy
from services.routing.facts import Opening
from services.routing.policy import RoutingPolicy


@dataclass(frozen=True, slots=True)
class InboxCopy:
    value: bytes
    withheld: frozenset[str]


def inbox_copy(
    opening: Opening,
    agency_id: str,
    *,
    owner: str,
    sharing: DataSharingPolicy,
    directory: RoutingPolicy,
) -> InboxCopy:
    agency = directory.agency(agency_id)
    recipient = Recipient(
        agency_id, agency.kind if agency else None, agency.country if agency else None
    )
    withheld = withheld_fields(
        sharing, opening.event_type, recipient, _situation(opening, recipient, owner, sharing)
    )
    if not withheld:
        return InboxCopy(orjson.dumps(opening.data), withheld)
    return InboxCopy(orjson.dumps(minimised(opening.data, withheld)), withheld)


def _situation(
    opening: Opening, recipient: Recipient, owner: str, sharing: DataSharingPolicy
) -> Situation:
    payload = opening.payload
    role: Role = "owner" if recipient.agency_id == owner else "assigned"
    consent = False
    adult_consent: bool | None = True  # returns: voluntariness is confirmed to open one
    purposes: tuple[PurposeGrant, ...] = ()
    if isinstance(payload, VictimReferralSubmitted | ReturnRequested | DocumentRequested):
        consent = payload.consent_to_share
    if isinstance(payload, VictimReferralSubmitted | ReturnRequested):
        purposes = payload.permitted_purposes
    if isinstance(payload, VictimReferralSubmitted):
        adult_consent = payload.adult_consent
    return Situation(
        is_referral=isinstance(payload, VictimReferralSubmitted),
        role=role,
        case_country=opening.facts.country,
        consent_to_share=consent,
        child=opening.facts.child,
        adult_consent=adult_consent,
        purpose_recorded=any(
            g.for_agency == recipient.agency_id
            and sharing.purpose_permitted(g.purpose, recipient.kind)
            for g in purposes
        ),
        on=opening.facts.on,
    )
