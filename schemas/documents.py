"""Identity and civil-registration document requests to a civil registry.

Undocumented victims and returnees need a birth registration, an identity card or a travel
document before they can be assisted or travel home. An agency on the person's case asks the
civil registry of the issuing country; the request is a case of its own. A travel-document
request that names the return it serves (``for_return``) gates that return's departure until
the document is collected or refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from pydantic import BaseModel

from schemas.common import CaseId, CountryCode, EventPayload, PersonRef, Timestamp, TrueOnly

__all__ = ["DOCUMENT_REQUESTED", "EVENT_TYPES", "DocumentRequested", "DocumentType"]

DOCUMENT_REQUESTED = "org.casebridge.document.requested.v1"


class DocumentType(StrEnum):
    birth_registration = "birth_registration"
    identity_card = "identity_card"
    travel_document = "travel_document"


class DocumentRequested(EventPayload):
    """An agency asks the issuing country's civil registry for a person's document."""

    requested_at: Timestamp
    person: PersonRef
    document: DocumentType
    issuing_country: CountryCode
    """Whose civil registry issues it (for a returnee, usually the country of origin)."""
    location_country: CountryCode
    """Where the person is now: decides child protection, and whether the request crosses a
    border (then only a sharing agreement lets the person's data reach the registry)."""
    for_return: CaseId | None = None
    """The return case this document is needed for: its departure waits for a travel
    document named here. The requesting agency must have standing on that return."""
    consent_to_share: TrueOnly
    """Must be true: a registry cannot issue a document for someone whose data it may not
    see, so a request without the person's consent to share is not a request."""

    def involves_child(self) -> bool:
        return self.person.is_child_on(self.requested_at.date())


EVENT_TYPES: Mapping[str, type[BaseModel]] = {DOCUMENT_REQUESTED: DocumentRequested}
