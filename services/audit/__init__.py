"""Tamper-evident audit log: Merkle tree, canonical leaves, signed tree heads, verification."""
