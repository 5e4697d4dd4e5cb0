"""Checking what the audit log serves, trusting nothing but the signer's public key: one
record's inclusion proof, and two signed heads' consistency. Pure functions, shared by the
auditors' command line and the console's auditors' pages."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.canonical import entry_leaf_hash
from services.audit.merkle import verify_consistency, verify_inclusion
from services.audit.tree_head import SignedTreeHead, sth_from_dict, verify_tree_head
from services.audit.verify_stored import entry_from_record


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not valid base64") from exc


def check_inclusion(
    record: dict[str, Any], proof: dict[str, Any], public_key: Ed25519PublicKey
) -> tuple[bool, str]:
    """Is `record` (as served or exported) in the log a signed head commits to?

    The leaf hash is recomputed from the record's fields (the served `leaf_hash` is not
    trusted), the head's signature is checked with `public_key`, and the audit path must lead
    from that leaf to the signed root.
    """
    try:
        leaf = entry_leaf_hash(entry_from_record(record))
        head_data = proof.get("tree_head")
        if not isinstance(head_data, dict):
            return False, "the proof names no signed tree head"
        head = sth_from_dict(head_data)
        path = [_unb64(h) for h in proof.get("audit_path") or []]
        index, size = proof.get("leaf_index"), proof.get("tree_size")
    except (TypeError, ValueError) as exc:
        return False, f"malformed record or proof: {exc}"
    if not verify_tree_head(public_key, head):
        return False, "the tree head's signature does not verify with this public key"
    if size != head.tree_size or index != record.get("seq") or not isinstance(index, int):
        return False, "the proof is not for this record and this tree head"
    if not verify_inclusion(leaf, index, head.tree_size, path, head.root_hash):
        return False, f"seq {index} is NOT in the signed tree of size {head.tree_size}"
    return True, f"seq {index} is in the signed tree of size {head.tree_size}"


def check_consistency(
    first: SignedTreeHead,
    second: SignedTreeHead,
    proof: Sequence[bytes],
    public_key: Ed25519PublicKey,
) -> tuple[bool, str]:
    """Do two signed heads describe one append-only log (the first a prefix of the second)?"""
    for head in (first, second):
        if not verify_tree_head(public_key, head):
            return False, f"the head of size {head.tree_size} is not signed by this key"
    if not verify_consistency(
        first.tree_size, second.tree_size, first.root_hash, second.root_hash, proof
    ):
        return False, (
            f"the log of size {first.tree_size} is NOT a prefix of the log of size "
            f"{second.tree_size}"
        )
    return (
        True,
        f"the log of size {first.tree_size} is a prefix of the log of size {second.tree_size}",
    )
