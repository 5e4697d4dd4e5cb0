"""What intake checks against the agency registry and the data-sharing policy.

An event may only name agencies CaseBridge knows (an unknown one could be a typo that routes a
person's data nowhere, or a forged recipient), and purposes recorded with a referral must be
ones the policy permits for the named agency's kind, recorded by an agency that may record
them (never an immigration or enforcement agency for itself: non-punishment principle).
"""

from __future__ import annotations

from pydantic import BaseModel

from schemas.business import ForcedLabourReported
from schemas.common import PurposeGrant
from schemas.errors import EventRejected, RejectionCode
from schemas.identity import named_agencies
from schemas.vocab import AgencyKind
from services.privacy.policy import DataSharingPolicy
from services.routing.policy import RoutingPolicy


class Registry:
    def __init__(self, directory: RoutingPolicy, sharing: DataSharingPolicy) -> None:
        self._directory = directory
        self._sharing = sharing

    def check(self, payload: BaseModel) -> None:
        """Raise `EventRejected` naming the first field that fails (never its value)."""
        self._check_sender(payload)
        for path, agency_id in named_agencies(payload):
            if self._directory.agency(agency_id) is None:
                raise EventRejected(
                    RejectionCode.UNKNOWN_AGENCY,
                    f"{path} names an agency that is not in the CaseBridge registry",
                    [{"loc": path, "type": "unknown_agency", "msg": "not a registered agency"}],
                )
        grants: tuple[PurposeGrant, ...] = getattr(payload, "permitted_purposes", ())
        if not grants:
            return
        reporter = self._directory.agency(str(getattr(payload, "reporting_agency", "")))
        if reporter is None or reporter.kind in self._sharing.restricted_kinds:
            raise _purpose_refused(
                "permitted_purposes",
                "an immigration or enforcement agency cannot record a permitted purpose",
            )
        for i, grant in enumerate(grants):
            target = self._directory.agency(grant.for_agency)
            if not self._sharing.purpose_permitted(grant.purpose, target.kind if target else None):
                raise _purpose_refused(
                    f"permitted_purposes[{i}].purpose",
                    "not a purpose the data-sharing policy permits for that agency's kind",
                )

    def _check_sender(self, payload: BaseModel) -> None:
        """Only a registered business reports forced-labour indicators, and a business
        publishes nothing else: it is told its reports' status, it works on no case."""
        reporter = self._directory.agency(str(getattr(payload, "reporting_agency", "")))
        is_business = reporter is not None and reporter.kind == AgencyKind.business
        if isinstance(payload, ForcedLabourReported) == is_business:
            return
        message = (
            "only a registered business reports forced-labour indicators"
            if isinstance(payload, ForcedLabourReported)
            else "a business publishes only forced-labour reports"
        )
        raise EventRejected(
            RejectionCode.SENDER_NOT_PERMITTED,
            message,
            [{"loc": "reporting_agency", "type": "sender_not_permitted", "msg": message}],
        )


def _purpose_refused(loc: str, message: str) -> EventRejected:
    return EventRejected(
        RejectionCode.PURPOSE_NOT_PERMITTED,
        f"{loc}: {message}",
        [{"loc": loc, "type": "purpose_not_permitted", "msg": message}],
    )
