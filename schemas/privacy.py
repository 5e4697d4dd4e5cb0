"""Data-protection requests: the data-protection officer asks CaseBridge to erase a person.

Published on ``casebridge.erasures``, which only the officer's principal may write, and carried
out by the cases service: it destroys the data key of every case concerned (crypto-shredding),
so the person's data is unreadable wherever it was sealed, and records the erasure on each case
so that the agencies involved learn of it. Not an agency event: ``schemas.registry`` does not
list it, so no agency topic can carry one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import CASE_ID_PATTERN, CaseId, StrictModel, Timestamp, Token

__all__ = [
    "ERASURE_REQUESTED",
    "REQUEST_TYPES",
    "ErasureRequested",
    "PersonKey",
    "RequestId",
]

ERASURE_REQUESTED = "org.casebridge.privacy.erasure_requested.v1"

RequestId = Annotated[str, StringConstraints(max_length=64, pattern=CASE_ID_PATTERN)]
"""A request's own id (a UUID, say): the same request delivered twice has one effect."""
PersonKey = Annotated[str, StringConstraints(max_length=80, pattern=r"^pk[0-9]+:[0-9a-f]{1,75}$")]
"""A pseudonymous person key as CaseBridge computes it (``pk1:<hex>``): never a name."""
Requester = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")
]


class ErasureRequested(StrictModel):
    """Erase the personal data of the person one case is about, or of every case sharing a
    person key. Cases and their non-personal facts remain: coordination stays auditable."""

    request_id: RequestId
    case_id: CaseId | None = None
    person_key: PersonKey | None = None
    reason: Token
    """A short code, e.g. ``subject_request`` or ``retention_expired`` (never free text)."""
    requested_by: Requester
    """Who asked (the officer's identifier), kept with the destroyed key."""
    requested_at: Timestamp

    @model_validator(mode="after")
    def _one_subject(self) -> Self:
        if (self.case_id is None) == (self.person_key is None):
            raise PydanticCustomError(
                "erasure_subject", "exactly one of case_id and person_key is required"
            )
        return self


REQUEST_TYPES: Mapping[str, type[BaseModel]] = {ERASURE_REQUESTED: ErasureRequested}
"""Data-protection request types by CloudEvents type (not agency events: see the docstring)."""
