"""Pseudonymous person keys: HMAC-SHA256 over normalised name and date of birth.

Two referrals of the same person by different agencies rarely spell a name the same way, so
names are reduced to comparable tokens first (accents, case, punctuation and word order
dropped). The key is keyed with a secret held outside the database: a leaked table of keys
cannot be reversed by hashing guessed names. Keys only ever flag cases for human review.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata

from schemas.common import PersonRef

KEY_VERSION = "pk1"
MIN_SECRET_BYTES = 32


def normalise_name(*parts: str | None) -> str:
    """Comparable form of a name: NFKD without marks, case-folded, letters and digits only,
    tokens sorted (so "Nguyen Van An" equals "An Nguyen-Van")."""
    text = " ".join(p for p in parts if p)
    decomposed = unicodedata.normalize("NFKD", text)
    kept = "".join(
        ch if ch.isalnum() else " " for ch in decomposed.casefold() if not unicodedata.combining(ch)
    )
    return " ".join(sorted(kept.split()))


def person_key(person: PersonRef, secret: bytes) -> str | None:
    """``pk1:<hex>`` for a person with a name and a date of birth; None otherwise (a key on a
    name alone would flag every namesake)."""
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the person-key secret must be at least {MIN_SECRET_BYTES} bytes")
    name = normalise_name(person.given_name, person.family_name)
    if not name or person.date_of_birth is None:
        return None
    message = f"{name}|{person.date_of_birth.isoformat()}".encode()
    return f"{KEY_VERSION}:{hmac.new(secret, message, hashlib.sha256).hexdigest()}"
