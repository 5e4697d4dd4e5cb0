"""The data-sharing policy (`policy.yaml` beside this module): who may be told what, where, and
for how long. One file for every hop: the router's inbox copies and the cases service's updates
are both cut by it, so a field cannot be withheld in one and leak through the other.

Every field of every document an agency receives (a case update, and the payload of each event
that opens a case) sits in exactly one data class; the loader refuses a file that leaves a
field out, names one twice or names one that does not exist, so a schema change cannot widen
what an agency sees unnoticed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.business import FORCED_LABOUR_REPORTED, ForcedLabourReported
from schemas.cases import CaseUpdate
from schemas.documents import DOCUMENT_REQUESTED, DocumentRequested
from schemas.referral import REFERRAL_SUBMITTED, VictimReferralSubmitted
from schemas.returns import RETURN_REQUESTED, ReturnRequested
from schemas.sar import SAR_ALERT, SarAlertReceived
from schemas.vocab import AgencyKind

POLICY_PATH = Path(__file__).resolve().parent / "policy.yaml"

CASE_UPDATE = "case_update"
"""The document name of a case update in `classes`."""
UPDATE_ENVELOPE = frozenset(
    {"recipient", "case_id", "kind", "version", "status", "occurred_at", "withheld", "role"}
)
"""Case-update fields every recipient gets: they say which case changed, never what it holds."""
PAYLOAD_ENVELOPE = frozenset({"case_id", "reporting_agency"})
"""Payload fields every inbox copy keeps: the case and who reported it."""

DOCUMENTS: Mapping[str, tuple[type[BaseModel], frozenset[str]]] = {
    CASE_UPDATE: (CaseUpdate, UPDATE_ENVELOPE),
    REFERRAL_SUBMITTED: (VictimReferralSubmitted, PAYLOAD_ENVELOPE),
    RETURN_REQUESTED: (ReturnRequested, PAYLOAD_ENVELOPE),
    SAR_ALERT: (SarAlertReceived, PAYLOAD_ENVELOPE),
    FORCED_LABOUR_REPORTED: (ForcedLabourReported, PAYLOAD_ENVELOPE),
    DOCUMENT_REQUESTED: (DocumentRequested, PAYLOAD_ENVELOPE),
}
"""Every document an agency is sent, with the fields outside any class."""

CountryCode = Annotated[str, Field(pattern=r"^[A-Z]{2}$")]
AgencyIdStr = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")]


class DataClass(StrEnum):
    """Kinds of content, from least to most sensitive."""

    operational = "operational"
    referral_lifecycle = "referral_lifecycle"
    """Operational for other cases, but a referral's state itself reveals victim status."""
    victim_status = "victim_status"
    personal = "personal"


CROSS_BORDER_CLASSES = frozenset({DataClass.victim_status, DataClass.personal})
"""What crosses a border only under a sharing agreement."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class SharingAgreement(_Strict):
    """A named legal basis for sending personal or victim-status data abroad."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$")]
    from_country: CountryCode
    to_country: CountryCode | None = None
    to_agency: AgencyIdStr | None = None
    categories: frozenset[DataClass] = Field(min_length=1)
    legal_basis: str = Field(min_length=1, max_length=300)
    expires: dt.date

    @model_validator(mode="after")
    def _one_destination(self) -> Self:
        if (self.to_country is None) == (self.to_agency is None):
            raise ValueError(f"agreement {self.name!r}: name exactly one of to_country, to_agency")
        if not self.categories <= CROSS_BORDER_CLASSES:
            raise ValueError(f"agreement {self.name!r}: categories are victim_status, personal")
        return self

    def covers(self, from_country: str, agency_id: str, agency_country: str, on: dt.date) -> bool:
        return (
            self.from_country == from_country
            and on <= self.expires
            and (self.to_agency == agency_id or self.to_country == agency_country)
        )


class Retention(_Strict):
    """How long Kafka keeps each family of topics (`retention.ms`), set by `agencies sync`."""

    inbound: dt.timedelta
    events_valid: dt.timedelta
    routing_decisions: dt.timedelta
    inbox: dt.timedelta
    updates: dt.timedelta
    rejections: dt.timedelta
    deadletter: dt.timedelta
    case_events: dt.timedelta
    erasures: dt.timedelta


class DataSharingPolicy(_Strict):
    version: str = Field(max_length=40)
    restricted_kinds: frozenset[AgencyKind]
    """Non-punishment principle: these see victim status and personal data (and a referral's
    state) only for a recorded, permitted purpose."""
    permitted_purposes: Mapping[str, frozenset[AgencyKind]]
    """Purpose -> the restricted kinds it may be recorded for."""
    classes: Mapping[DataClass, Mapping[str, frozenset[str]]]
    """Data class -> document -> its fields in that class."""
    sharing_agreements: tuple[SharingAgreement, ...] = ()
    reporter_sees: frozenset[str]
    """The case-update fields a business is told of its own report: its status, never what
    the inspection found about people."""
    retention: Retention

    @model_validator(mode="after")
    def _classes_partition_every_document(self) -> Self:
        problems: list[str] = []
        for document in {d for per_class in self.classes.values() for d in per_class}:
            if document not in DOCUMENTS:
                problems.append(f"unknown document {document!r}")
        for document, (model, envelope) in DOCUMENTS.items():
            listed = [f for per_class in self.classes.values() for f in per_class.get(document, ())]
            content = set(model.model_fields) - envelope
            twice = sorted({f for f in listed if listed.count(f) > 1})
            unknown = sorted(set(listed) - content)
            missing = sorted(content - set(listed))
            if twice or unknown or missing:
                problems.append(
                    f"{document}: classes must partition its fields: listed twice {twice}, "
                    f"unknown {unknown}, unclassified {missing}"
                )
        operational = self.classes.get(DataClass.operational, {}).get(CASE_UPDATE, frozenset())
        lifecycle = self.classes.get(DataClass.referral_lifecycle, {}).get(CASE_UPDATE, frozenset())
        beyond = sorted(self.reporter_sees - operational - lifecycle)
        if beyond:
            problems.append(f"reporter_sees: not operational case-update fields {beyond}")
        names = [a.name for a in self.sharing_agreements]
        problems += [f"agreement {n!r} is named twice" for n in set(names) if names.count(n) > 1]
        for purpose, kinds in self.permitted_purposes.items():
            if not kinds <= self.restricted_kinds:
                problems.append(f"purpose {purpose!r} names a kind that is not restricted")
        if problems:
            raise ValueError("; ".join(sorted(problems)))
        return self

    def fields(self, document: str, classes: frozenset[DataClass]) -> frozenset[str]:
        """The fields of `document` that fall in any of `classes`."""
        return frozenset(f for c in classes for f in self.classes.get(c, {}).get(document, ()))

    def content_fields(self, document: str) -> frozenset[str]:
        """Every classified field of `document`."""
        return frozenset(
            f for per_class in self.classes.values() for f in per_class.get(document, ())
        )

    def purpose_permitted(self, purpose: str, kind: AgencyKind | None) -> bool:
        return kind is not None and kind in self.permitted_purposes.get(purpose, frozenset())

    def agreement_for(
        self, from_country: str, agency_id: str, agency_country: str, on: dt.date
    ) -> SharingAgreement | None:
        return next(
            (
                a
                for a in self.sharing_agreements
                if a.covers(from_country, agency_id, agency_country, on)
            ),
            None,
        )


def parse_policy(text: str) -> DataSharingPolicy:
    """Validate policy YAML text (raises pydantic.ValidationError or yaml.YAMLError)."""
    return DataSharingPolicy.model_validate(yaml.safe_load(text))


def load_policy(path: Path = POLICY_PATH) -> DataSharingPolicy:
    """Read and validate a policy file, the packaged one by default; call once at start-up."""
    return parse_policy(path.read_text(encoding="utf-8"))
