"""Business reports of forced-labour indicators found in a supply chain.

A registered business (an agency of kind ``business``) reports what its due diligence found at
a supplier's site: where (country, sector, supplier tier), which ILO forced-labour indicators
were observed and how strongly, and how many workers seem affected, as a band. The report
carries no personal data at all: a worker's name or a person record is refused by name
(``personal_data_not_allowed``), so a business cannot put a worker at risk by reporting. The
labour inspectorate of the site's country acts on it; the business sees only its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from schemas.common import CountryCode, EventPayload, StrictModel, Timestamp, Token, UniqueTuple
from schemas.vocab import IndicatorStrength

__all__ = [
    "EVENT_TYPES",
    "FORCED_LABOUR_REPORTED",
    "PERSONAL_FIELDS",
    "ForcedLabourIndicator",
    "ForcedLabourReported",
    "IndicatorObserved",
    "Sector",
    "Site",
    "SupplierTier",
    "WorkersAffected",
]

FORCED_LABOUR_REPORTED = "org.casebridge.business.forced_labour_reported.v1"


class ForcedLabourIndicator(StrEnum):
    """The ILO's eleven indicators of forced labour (ILO, 2012)."""

    abuse_of_vulnerability = "abuse_of_vulnerability"
    deception = "deception"
    restriction_of_movement = "restriction_of_movement"
    isolation = "isolation"
    physical_and_sexual_violence = "physical_and_sexual_violence"
    intimidation_and_threats = "intimidation_and_threats"
    retention_of_identity_documents = "retention_of_identity_documents"
    withholding_of_wages = "withholding_of_wages"
    debt_bondage = "debt_bondage"
    abusive_working_and_living_conditions = "abusive_working_and_living_conditions"
    excessive_overtime = "excessive_overtime"


class Sector(StrEnum):
    """Sectors with known forced-labour risk in Asia-Pacific supply chains."""

    agriculture = "agriculture"
    fishing_and_seafood = "fishing_and_seafood"
    palm_oil = "palm_oil"
    textiles_and_garments = "textiles_and_garments"
    electronics = "electronics"
    construction = "construction"
    manufacturing = "manufacturing"
    mining = "mining"
    domestic_work = "domestic_work"
    hospitality = "hospitality"
    logistics = "logistics"
    other = "other"


class SupplierTier(StrEnum):
    """How far up the reporting business's supply chain the site is."""

    own_operations = "own_operations"
    tier_1 = "tier_1"
    tier_2 = "tier_2"
    tier_3_or_beyond = "tier_3_or_beyond"
    unknown = "unknown"


class WorkersAffected(StrEnum):
    """How many workers seem affected, as a band: a count is not asked for, names never."""

    band_1_10 = "1-10"
    band_11_50 = "11-50"
    band_51_250 = "51-250"
    band_over_250 = "251+"
    unknown = "unknown"


class Site(StrictModel):
    """The supplier's site, as the business knows it."""

    country: CountryCode
    """Decides which country's labour inspectorate acts."""
    sector: Sector
    supplier_tier: SupplierTier
    site_reference: Token | None = None
    """The business's own code for the site (a code, never a name or an address)."""


class IndicatorObserved(StrictModel):
    indicator: ForcedLabourIndicator
    strength: IndicatorStrength


PERSONAL_FIELDS = frozenset(
    {
        "person",
        "persons",
        "worker",
        "workers",
        "worker_names",
        "given_name",
        "family_name",
        "name",
        "date_of_birth",
        "nationality",
        "passport_number",
        "contact",
        "phone",
        "email",
        "address",
    }
)
"""Field names a business report is refused for by name, anywhere in it: a report is about a
site, never about a person."""


def _personal_fields(data: Any) -> list[str]:
    """Paths of personal field names anywhere in parsed JSON (iterative: any depth is safe)."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(key, str) and key in PERSONAL_FIELDS:
                    found.append(f"{path}{key}")
                stack.append((f"{path}{key}.", inner))
        elif isinstance(value, list):
            stack.extend((f"{path}{i}.", item) for i, item in enumerate(value))
    return found


class ForcedLabourReported(EventPayload):
    """A business reports forced-labour indicators at a supplier's site; opens a report case
    (``case_id`` is the report id) owned by the labour inspectorate of the site's country."""

    reported_at: Timestamp
    site: Site
    indicators: Annotated[UniqueTuple[IndicatorObserved], Field(min_length=1, max_length=11)]
    workers_affected: WorkersAffected

    @model_validator(mode="before")
    @classmethod
    def _no_personal_data(cls, data: Any) -> Any:
        found = _personal_fields(data)
        if found:
            # Only names from PERSONAL_FIELDS, never the path (its keys are the sender's).
            names = ", ".join(sorted({path.rsplit(".", 1)[-1] for path in found}))
            raise PydanticCustomError(
                "personal_data_not_allowed",
                f"a business report carries no personal data: remove {names}",
            )
        return data


EVENT_TYPES: Mapping[str, type[BaseModel]] = {FORCED_LABOUR_REPORTED: ForcedLabourReported}
