"""The case policy file: every rule names a priority, code cites only rules that exist, and
rules group by ministerial priority for the CLI."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from pydantic import ValidationError

from schemas.priorities import MinisterialPriority
from services.cases.domain import (
    POLICY_PATH,
    PolicyRule,
    parse_policy,
    policy_rules,
    rules_by_priority,
)
from services.cases.domain.lifecycle import business, handshake, protection, referral, returns, sar
from tests.unit.cases.case_builders import POLICY

CITED_IN_CODE = {
    referral.ADULT_CONSENT_GATE,
    handshake.CONSENT_GATE,
    handshake.ENTITLEMENT,
    handshake.CHILD_WORKFLOW,
    protection.CHILD_WORKFLOW,
    protection.NON_PUNISHMENT,
    protection.DUPLICATES,
    returns.VOLUNTARY_RETURN,
    sar.RCC_KEEPS_COORDINATION,
    sar.SCREENING_AFTER_DISEMBARKATION,
    business.INSPECTION_FOLLOWS_ASSESSMENT,
    business.VICTIMS_REFERRED,
    returns.DOCUMENT_GATE,
}


def test_every_rule_cited_in_code_is_in_the_policy() -> None:
    assert POLICY.rule_ids() >= CITED_IN_CODE


def test_rules_group_by_priority_in_the_ministers_order() -> None:
    grouped = rules_by_priority(policy_rules(POLICY))
    priorities = [p for p, _ in grouped]
    assert priorities == sorted(priorities, key=list(MinisterialPriority).index)
    assert priorities[:3] == [
        MinisterialPriority.VICTIM_IDENTIFICATION_AND_PROTECTION,
        MinisterialPriority.SUSTAINABLE_RETURN_AND_REINTEGRATION,
        MinisterialPriority.SEARCH_AND_RESCUE_AND_LAW_ENFORCEMENT,
    ]
    total = sum(len(rules) for _, rules in grouped)
    assert total == len(POLICY.deadlines) + len(POLICY.protection_rules)
    sar_rules = dict(grouped)[MinisterialPriority.SEARCH_AND_RESCUE_AND_LAW_ENFORCEMENT]
    assert "sar-coordination-detresfa" in [r.rule_id for r in sar_rules]


def test_other_rule_sets_merge_into_the_same_listing() -> None:
    routing = PolicyRule(
        "route-to-civil-society",
        MinisterialPriority.CIVIL_SOCIETY_ENGAGEMENT,
        "Shelters receive referrals.",
        "infra/router-policy.yaml",
    )
    grouped = dict(rules_by_priority([*policy_rules(POLICY), routing]))
    assert grouped[MinisterialPriority.CIVIL_SOCIETY_ENGAGEMENT] == [routing]
    assert MinisterialPriority.PUBLIC_INFORMATION not in grouped


def test_a_rule_without_a_known_priority_is_refused() -> None:
    raw = yaml.safe_load(POLICY_PATH.read_text())
    raw["deadlines"][0]["serves"] = "speed"
    with pytest.raises(ValidationError):
        parse_policy(yaml.safe_dump(raw))


def test_rule_ids_are_unique() -> None:
    raw = yaml.safe_load(POLICY_PATH.read_text())
    raw["protection_rules"].append(raw["protection_rules"][0])
    with pytest.raises(ValidationError, match="used twice"):
        parse_policy(yaml.safe_dump(raw))


def test_casebridge_rules_lists_the_rules_of_the_remaining_priorities() -> None:
    """Business reports, identity documents and regional data sharing each have their rules
    listed under their priority by the command an oversight body runs."""
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "rules"],
        capture_output=True,
        text=True,
        check=True,
    )
    sections = {
        block.splitlines()[0]: block for block in done.stdout.split("\n\n") if block.strip()
    }

    def rules_under(token: str) -> str:
        (block,) = [b for heading, b in sections.items() if heading.endswith(f"[{token}]")]
        return block

    private = rules_under("private-sector-engagement")
    for rule in (
        "business-report-to-labour-inspectorate",
        "business-report-acknowledgement",
        "business-report-assessment",
        "business-sees-status-only",
        "business-report-without-personal-data",
    ):
        assert f"- {rule}:" in private
    civil = rules_under("civil-registration")
    for rule in ("document-request-to-civil-registry", "travel-document-gates-departure"):
        assert f"- {rule}:" in civil
    sharing = rules_under("regional-information-sharing")
    for rule in ("regional-statistics-k-anonymity", "htcds-export-minimised"):
        assert f"- {rule}:" in sharing
