"""The auditors' pages of the console, as a client of the auditors' HTTP API.

The console holds no audit power of its own: it asks the auditors' API (`casebridge audit
serve`) with a metadata-only token configured for it (CASEBRIDGE_CONSOLE_AUDIT_API_TOKEN), so
the API records every query as it records any auditor's, and the console records which person
asked (`casebridge.console.activity`). A record's inclusion proof is checked here, in the
console, against the signer's public key (CASEBRIDGE_AUDIT_PUBLIC_KEY_FILE), never taken on the
API's word; so is the latest signed head's signature.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.proof_checks import check_inclusion
from services.audit.tree_head import sth_from_dict, verify_tree_head

SEARCH_FIELDS = ("case_id", "agency", "type", "outcome")
"""The filters the search form offers (the API's own parameter names)."""


class AuditUnavailableError(Exception):
    """The auditors' API did not answer as expected."""


@dataclass(frozen=True, slots=True)
class CheckedHead:
    tree_size: int
    signed_at: dt.datetime
    root_hash: str
    key_id: str
    signature_ok: bool


@dataclass(frozen=True, slots=True)
class CheckedRecord:
    record: dict[str, Any]
    proof_ok: bool
    proof_message: str
    """What the local check found, e.g. "seq 7 is in the signed tree of size 200"."""


class AuditClient:
    def __init__(self, base_url: str, token: str, public_key: Ed25519PublicKey) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self._key = public_key

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, **params: Any) -> Any:
        try:
            answer = await self._client.get(
                path, params={k: v for k, v in params.items() if v not in (None, "")}
            )
        except httpx.HTTPError as exc:
            raise AuditUnavailableError(f"the auditors' API is unreachable: {exc}") from None
        if answer.status_code == 404:
            return None
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", "")
            except ValueError:
                detail = ""
            raise AuditUnavailableError(f"the auditors' API answered {answer.status_code} {detail}")
        return answer.json()

    async def search(self, filters: dict[str, str], *, limit: int = 50) -> list[dict[str, Any]]:
        """The newest matching records first would need a cursor walk; the API pages oldest
        first, so the search shows the first `limit` matches."""
        page = await self._get("/v1/events", limit=limit, **filters)
        items: list[dict[str, Any]] = [] if page is None else page["items"]
        return items

    async def latest_head(self) -> CheckedHead | None:
        data = await self._get("/v1/tree-heads/latest")
        if data is None:
            return None
        head = sth_from_dict(data)
        return CheckedHead(
            tree_size=head.tree_size,
            signed_at=dt.datetime.fromtimestamp(head.timestamp / 1000, dt.UTC),
            root_hash=data["root_hash"],
            key_id=head.key_id,
            signature_ok=verify_tree_head(self._key, head),
        )

    async def record(self, seq: int) -> CheckedRecord | None:
        body = await self._get(f"/v1/events/{seq}", proof="true")
        if body is None:
            return None
        record, proof = body["record"], body.get("inclusion_proof")
        if not isinstance(proof, dict):
            return CheckedRecord(record, False, "no signed tree head covers this record yet")
        ok, message = check_inclusion(record, proof, self._key)
        return CheckedRecord(record, ok, message)
