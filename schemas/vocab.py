"""Controlled vocabularies used on the wire.

Values that come from a published standard are copied verbatim (spelling, case, even typos) so
that agencies already using that standard can map their data without translation tables.
CaseBridge's own vocabularies use lower-case snake_case tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "HTCDS_FIELDS",
    "AgencyKind",
    "AvrrStage",
    "CaseStatus",
    "DataClassification",
    "DecisionMakingOrg",
    "Gender",
    "IndicatorDimension",
    "IndicatorStrength",
    "MethodOfControl",
    "RecruitmentMethod",
    "ReintegrationDimension",
    "SarPhase",
    "SarPriority",
    "TraffickingStatus",
    "TypeOfExploitation",
]


# --- HTCDS 2.0 (IOM, CC BY 4.0): picklist value names, verbatim ---------------------------


class TypeOfExploitation(StrEnum):
    """HTCDS 2.0 ``vic_TypeOfExploitation`` (multiselect picklist)."""

    ForcedLabour = "ForcedLabour"
    SexualExploitation = "SexualExploitation"
    ChildLabour = "ChildLabour"
    ForcedMarriage = "ForcedMarriage"
    Servitude = "Servitude"
    ForcedMilitaryByNonStateActors = "ForcedMilitaryByNonStateActors"
    OrganRemoval = "OrganRemoval"
    ForcedBegging = "ForcedBegging"
    ForcedAdoption = "ForcedAdoption"
    Surrogacy = "Surrogacy"
    Other = "Other"


class TraffickingStatus(StrEnum):
    """HTCDS 2.0 ``vic_TraffickingStatus``."""

    PossibleVictimOfTrafficking = "PossibleVictimOfTrafficking"
    ActualVictimOfTrafficking = "ActualVictimOfTrafficking"
    NotAVictimOfTrafficking = "NotAVictimOfTrafficking"


class DecisionMakingOrg(StrEnum):
    """HTCDS 2.0 ``vic_TraffickingStatusDecisionMakingOrg``: who decided the status."""

    Police = "Police"
    NGO = "NGO"
    CourtOrProsecution = "CourtOrProsecution"
    NonPoliceGovernmentalOrganization = "NonPoliceGovernmentalOrganization"
    Other = "Other"


class Gender(StrEnum):
    """HTCDS 2.0 ``prs_Gender``."""

    Feminine = "Feminine"
    Masculine = "Masculine"
    TransgenderFeminine = "TransgenderFeminine"
    TransgenderMasculine = "TransgenderMasculine"
    NonConforming = "NonConforming"
    NonSpecifiedUnknown = "NonSpecifiedUnknown"


class MethodOfControl(StrEnum):
    """HTCDS 2.0 ``vic_MethodsOfControl`` (16 values, multiselect)."""

    PhysicalThreats = "PhysicalThreats"
    ThreatsLawEnforcement = "ThreatsLawEnforcement"
    ThreatensChildrenFamily = "ThreatensChildrenFamily"
    DebtBondage = "DebtBondage"
    FalsePromises = "FalsePromises"
    PhysicalAbuse = "PhysicalAbuse"
    SexualAbuse = "SexualAbuse"
    TakesEarnings = "TakesEarnings"
    RestrictsFinancialAccess = "RestrictsFinancialAccess"
    RestrictsMedicalCare = "RestrictsMedicalCare"
    WithholdsNecessities = "WithholdsNecessities"
    PsychologicalAbuse = "PsychologicalAbuse"
    PsychoactiveSubstance = "PsychoactiveSubstance"
    ExcessiveWorkingHours = "ExcessiveWorkingHours"
    WithholdsDocuments = "WithholdsDocuments"
    Other = "Other"


class RecruitmentMethod(StrEnum):
    """HTCDS 2.0 ``vic_MethodOfRecruitment`` (multiselect)."""

    AtAPlaceOfBusiness = "AtAPlaceOfBusiness"
    AtAnEducationalInstitution = "AtAnEducationalInstitution"
    AtWork = "AtWork"
    ThroughOnlineSocialNetworks = "ThroughOnlineSocialNetworks"
    ThroughAnOnlineAdvertisement = "ThroughAnOnlineAdvertisement"
    ThroughATelevisionAdvert = "ThroughATelevisionAdvert"
    ThroughANewspaperAdvert = "ThroughANewspaperAdvert"
    ThroughFamilyOrFamilyEvents = "ThroughFamilyOrFamilyEvents"
    ThroughFriendsOrSocialEvents = "ThroughFriendsOrSocialEvents"
    Other = "Other"


class CaseStatus(StrEnum):
    """HTCDS 2.0 ``cas_Status``."""

    Active = "Active"
    FollowUp = "FollowUp"
    Closed = "Closed"
    ClosedReferred = "ClosedReferred"


HTCDS_FIELDS: Mapping[type[StrEnum], str] = MappingProxyType(
    {
        TypeOfExploitation: "vic_TypeOfExploitation",
        TraffickingStatus: "vic_TraffickingStatus",
        DecisionMakingOrg: "vic_TraffickingStatusDecisionMakingOrg",
        Gender: "prs_Gender",
        MethodOfControl: "vic_MethodsOfControl",
        RecruitmentMethod: "vic_MethodOfRecruitment",
        CaseStatus: "cas_Status",
    }
)
"""Each HTCDS-derived enum and the HTCDS field it copies (checked against the sheet in tests)."""


# --- ILO/EC operational indicators of trafficking in human beings (2009) -------------------


class IndicatorStrength(StrEnum):
    """ILO/EC (2009) grading of an indicator: strong, medium or weak."""

    strong = "strong"
    medium = "medium"
    weak = "weak"


class IndicatorDimension(StrEnum):
    """The six ILO/EC (2009) indicator dimensions, as snake_case tokens."""

    deceptive_recruitment = "deceptive_recruitment"
    coercive_recruitment = "coercive_recruitment"
    recruitment_by_abuse_of_vulnerability = "recruitment_by_abuse_of_vulnerability"
    exploitative_conditions = "exploitative_conditions"
    coercion_at_destination = "coercion_at_destination"
    abuse_of_vulnerability_at_destination = "abuse_of_vulnerability_at_destination"


# --- Search and rescue: ICAO Annex 12 / IAMSAR Manual (upper case as in SAR messages) -------


class SarPhase(StrEnum):
    """ICAO Annex 12 / IAMSAR emergency phase; may be raised or lowered during an incident."""

    INCERFA = "INCERFA"
    """Uncertainty phase."""
    ALERFA = "ALERFA"
    """Alert phase."""
    DETRESFA = "DETRESFA"
    """Distress phase."""


class SarPriority(StrEnum):
    """IAMSAR SITREP message priority."""

    DISTRESS = "DISTRESS"
    URGENCY = "URGENCY"
    SAFETY = "SAFETY"
    ROUTINE = "ROUTINE"


# --- Assisted voluntary return and reintegration (IOM Reintegration Handbook, 2019) --------


class AvrrStage(StrEnum):
    """IOM-style AVRR stage. Tokens are snake_case: ``pre_departure`` and ``post_arrival``."""

    pre_departure = "pre_departure"
    travel = "travel"
    post_arrival = "post_arrival"
    reintegration = "reintegration"
    monitoring = "monitoring"


class ReintegrationDimension(StrEnum):
    """IOM Reintegration Handbook (2019): the three dimensions of sustainable reintegration."""

    economic = "economic"
    social = "social"
    psychosocial = "psychosocial"


# --- CaseBridge's own vocabularies ----------------------------------------------------------


class AgencyKind(StrEnum):
    """CaseBridge agency role; drives entitlement and need-to-know field visibility."""

    police = "police"
    immigration = "immigration"
    labour_inspectorate = "labour_inspectorate"
    child_protection = "child_protection"
    social_welfare = "social_welfare"
    shelter_ngo = "shelter_ngo"
    rcc = "rcc"
    """Maritime (or joint) rescue coordination centre."""
    return_programme = "return_programme"
    embassy = "embassy"
    prosecutor = "prosecutor"
    civil_registry = "civil_registry"
    """Issues birth registrations, identity cards and travel documents."""
    business = "business"
    """A registered business reporting on its supply chain; sees only its reports' status."""


class DataClassification(StrEnum):
    """CloudEvents ``dataclassification`` extension values (CloudEvents extension spec)."""

    public = "public"
    internal = "internal"
    confidential = "confidential"
    restricted = "restricted"
