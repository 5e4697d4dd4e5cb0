"""The priorities agreed at the Bali Process Seventh Ministerial Conference (Bali, 2018).

Every routing and escalation rule names the priority it serves, so that a rule set can be read
against the commitments it implements (`casebridge rules`). Tokens are stable identifiers;
titles follow the conference's wording.
"""

from __future__ import annotations

from enum import StrEnum


class MinisterialPriority(StrEnum):
    VICTIM_IDENTIFICATION_AND_PROTECTION = "victim-identification-and-protection"
    SUSTAINABLE_RETURN_AND_REINTEGRATION = "sustainable-return-and-reintegration"
    SEARCH_AND_RESCUE_AND_LAW_ENFORCEMENT = "search-and-rescue-and-law-enforcement"
    CIVIL_REGISTRATION = "civil-registration"
    PRIVATE_SECTOR_ENGAGEMENT = "private-sector-engagement"
    CIVIL_SOCIETY_ENGAGEMENT = "civil-society-engagement"
    REGIONAL_INFORMATION_SHARING = "regional-information-sharing"
    PUBLIC_INFORMATION = "public-information"

    @property
    def statement(self) -> str:
        return PRIORITY_TITLES[self]


PRIORITY_TITLES: dict[MinisterialPriority, str] = {
    MinisterialPriority.VICTIM_IDENTIFICATION_AND_PROTECTION: (
        "Improved strategies for victim identification and victim protection"
    ),
    MinisterialPriority.SUSTAINABLE_RETURN_AND_REINTEGRATION: (
        "Enhanced cooperation on sustainable return and reintegration"
    ),
    MinisterialPriority.SEARCH_AND_RESCUE_AND_LAW_ENFORCEMENT: (
        "Capacity building in search and rescue operations and in law enforcement"
    ),
    MinisterialPriority.CIVIL_REGISTRATION: (
        "A universal and responsive civil registration and vital statistics system"
    ),
    MinisterialPriority.PRIVATE_SECTOR_ENGAGEMENT: (
        "Constructive private sector engagement against trafficking and exploitation"
    ),
    MinisterialPriority.CIVIL_SOCIETY_ENGAGEMENT: (
        "Engagement with civil society organisations, including on returns and reintegration"
    ),
    MinisterialPriority.REGIONAL_INFORMATION_SHARING: (
        "Links with ASEAN and other processes for sharing information and intelligence"
    ),
    MinisterialPriority.PUBLIC_INFORMATION: (
        "Public information on the risks of irregular migration and regular pathways"
    ),
}
