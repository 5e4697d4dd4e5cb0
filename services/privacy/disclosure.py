"""Need to know: which data classes an agency is told in a situation, and cutting a document.

One function decides for both hops (the router's first copy and every later case update), from
facts either hop knows: the recipient's kind and country, its role on the case, consent,
purpose, and where the case is. Pure: no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from schemas.vocab import AgencyKind
from services.privacy.policy import CROSS_BORDER_CLASSES, DataClass, DataSharingPolicy

Role = Literal["owner", "assigned", "pending", "former", "reporter"]


@dataclass(frozen=True, slots=True)
class Recipient:
    """An agency as the directory knows it; kind None (not in the directory) is restricted."""

    agency_id: str
    kind: AgencyKind | None
    country: str | None


@dataclass(frozen=True, slots=True)
class Situation:
    """What is known of the case when something is sent to `Recipient`."""

    is_referral: bool
    role: Role
    case_country: str | None
    """Where the person is (referral location, return host country, SAR search region)."""
    consent_to_share: bool
    override: bool = False
    """An authorised, audited override of the consent gate for this recipient."""
    child: bool = False
    adult_consent: bool | None = None
    purpose_recorded: bool = False
    """A permitted purpose is recorded for this recipient (checked against its kind)."""
    on: dt.date = dt.date.min


def withheld_classes(
    policy: DataSharingPolicy, recipient: Recipient, situation: Situation
) -> frozenset[DataClass]:
    """The data classes `recipient` must not be sent (see the header of policy.yaml)."""
    restricted = recipient.kind is None or recipient.kind in policy.restricted_kinds
    unpurposed = restricted and not situation.purpose_recorded
    member = situation.role in ("owner", "assigned")
    shared = situation.role == "owner" or (
        member and (situation.consent_to_share or situation.override)
    )
    if restricted and not situation.child and situation.adult_consent is not True:
        shared = False  # an adult's data reaches enforcement only with the adult's consent
    withheld: set[DataClass] = set()
    if not shared or unpurposed:
        withheld.add(DataClass.personal)
    if not member or unpurposed:
        withheld.add(DataClass.victim_status)
    if situation.is_referral and unpurposed:
        withheld.add(DataClass.referral_lifecycle)
    if _abroad(recipient, situation):
        agreement = None
        if situation.case_country is not None and recipient.country is not None:
            agreement = policy.agreement_for(
                situation.case_country, recipient.agency_id, recipient.country, situation.on
            )
        allowed = agreement.categories if agreement is not None else frozenset()
        withheld |= CROSS_BORDER_CLASSES - allowed
    return frozenset(withheld)


def _abroad(recipient: Recipient, situation: Situation) -> bool:
    """Unknown on either side counts as abroad: no agreement can be shown to cover it."""
    return (
        recipient.country is None
        or situation.case_country is None
        or recipient.country != situation.case_country
    )


def withheld_fields(
    policy: DataSharingPolicy, document: str, recipient: Recipient, situation: Situation
) -> frozenset[str]:
    """The fields of `document` (see `policy.DOCUMENTS`) the recipient must not be sent. A
    business that reported is sent only `reporter_sees`, whatever else would apply."""
    if situation.role == "reporter":
        return policy.content_fields(document) - policy.reporter_sees
    return policy.fields(document, withheld_classes(policy, recipient, situation))


def minimised(payload: Mapping[str, Any], withheld: frozenset[str]) -> dict[str, Any]:
    """The payload without the withheld fields: absent, not emptied."""
    return {k: v for k, v in payload.items() if k not in withheld}
