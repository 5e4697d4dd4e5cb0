"""docs/schemas.md names every code a sender can be given back: each intake rejection code and
each case refusal reason has its row in section 9, so an integrator never meets one the guide
does not explain."""

from __future__ import annotations

from schemas.cases import RejectionReason
from schemas.errors import RejectionCode
from services.runtime.settings import REPO_ROOT

GUIDE = (REPO_ROOT / "docs" / "schemas.md").read_text(encoding="utf-8")
SECTION = GUIDE[GUIDE.index("## 9. Rejections and refusals") :]
ROWS = {
    line.split("|")[1].strip().strip("`") for line in SECTION.splitlines() if line.startswith("| `")
}

# Not sent to agencies: erasure requests come from the data-protection officer's tooling.
OPERATORS_ONLY = {RejectionCode.NO_MATCHING_CASE}


def test_every_rejection_code_an_agency_can_receive_is_explained() -> None:
    missing = {c.value for c in RejectionCode} - {c.value for c in OPERATORS_ONLY} - ROWS
    assert missing == set()


def test_every_case_refusal_reason_is_explained() -> None:
    assert {r.value for r in RejectionReason} - ROWS == set()
