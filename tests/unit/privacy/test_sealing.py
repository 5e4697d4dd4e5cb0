"""Sealing under per-person data keys, and the KEK that wraps them."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from services.privacy.keys import (
    KEY_BYTES,
    KeyUnavailableError,
    LocalKek,
    ensure_deployment_keys,
    kek_path,
    load_kek,
    person_key_secret_path,
)
from services.privacy.sealing import (
    SEALED_MARK,
    SealBrokenError,
    is_sealed,
    seal,
    seal_fields,
    unseal,
    unseal_fields,
)

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))
PERSON = {"given_name": "Synthetic", "family_name": "Person", "date_of_birth": "2001-02-03"}


def test_a_sealed_value_opens_with_its_key_and_context_only() -> None:
    blob = seal(KEY, b"Synthetic Person", context=b"case:c-1")
    assert b"Synthetic" not in blob
    assert unseal(KEY, blob, context=b"case:c-1") == b"Synthetic Person"  # positive control
    with pytest.raises(SealBrokenError):
        unseal(OTHER, blob, context=b"case:c-1")
    with pytest.raises(SealBrokenError):
        unseal(KEY, blob, context=b"case:c-2")  # moved to another case's row
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(SealBrokenError):
        unseal(KEY, tampered, context=b"case:c-1")


def test_each_seal_uses_a_fresh_nonce() -> None:
    assert seal(KEY, b"x", context=b"c") != seal(KEY, b"x", context=b"c")


def test_fields_are_sealed_in_place_and_the_rest_stays_plain() -> None:
    document = {"case_id": "c-1", "referral": {"person": PERSON, "location_country": "ID"}}
    paths = [("referral", "person"), ("person_key",), ("absent", "person")]
    sealed = seal_fields(document, paths, KEY, context=b"case:c-1")
    assert document["referral"]["person"] == PERSON  # the caller's document is unchanged
    assert is_sealed(sealed["referral"]["person"])
    assert sealed["referral"]["location_country"] == "ID"
    assert "Synthetic" not in str(sealed)
    assert "person_key" not in sealed
    assert "absent" not in sealed
    opened = unseal_fields(sealed, paths, KEY, context=b"case:c-1")
    assert opened == document
    with pytest.raises(SealBrokenError):
        unseal_fields(sealed, paths, KEY, context=b"case:c-2")


def test_with_the_key_gone_sealed_fields_read_as_erased() -> None:
    sealed = seal_fields({"person": PERSON, "state": "submitted"}, [("person",)], KEY, context=b"c")
    assert unseal_fields(sealed, [("person",)], None, context=b"c") == {
        "person": None,
        "state": "submitted",
    }
    assert unseal_fields(sealed, [("person",)], None, context=b"c", erased={}) == {
        "person": {},
        "state": "submitted",
    }


def test_a_field_path_names_where_it_was_sealed() -> None:
    """A sealed value copied from one field into another does not open there."""
    sealed = seal_fields({"a": "secret", "b": "other"}, [("a",), ("b",)], KEY, context=b"c")
    swapped = {"a": sealed["b"], "b": sealed["a"]}
    with pytest.raises(SealBrokenError):
        unseal_fields(swapped, [("a",), ("b",)], KEY, context=b"c")
    assert set(sealed["a"]) == {SEALED_MARK}


def test_the_kek_binds_a_wrapped_key_to_its_subject() -> None:
    kek = LocalKek(os.urandom(KEY_BYTES))
    data_key = os.urandom(KEY_BYTES)
    wrapped = kek.wrap(data_key, subject="case:a")
    assert data_key not in wrapped
    assert kek.unwrap(wrapped, subject="case:a") == data_key
    with pytest.raises(KeyUnavailableError):
        kek.unwrap(wrapped, subject="case:b")
    with pytest.raises(KeyUnavailableError):
        LocalKek(os.urandom(KEY_BYTES)).unwrap(wrapped, subject="case:a")
    with pytest.raises(ValueError, match="32 bytes"):
        LocalKek(b"short")


def test_set_up_writes_private_key_files_once(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    created = ensure_deployment_keys(secrets)
    assert created == [kek_path(secrets), person_key_secret_path(secrets)]
    assert ensure_deployment_keys(secrets) == []
    for path in created:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(base64.b64decode(path.read_text())) == KEY_BYTES
    assert stat.S_IMODE((secrets / "keys").stat().st_mode) == 0o700
    from_file = load_kek(secrets_dir=secrets, environ={})
    raw = base64.b64decode(kek_path(secrets).read_text())
    assert from_file.key_id == LocalKek(raw).key_id


def test_the_kek_may_come_from_the_environment(tmp_path: Path) -> None:
    key = os.urandom(KEY_BYTES)
    kek = load_kek(secrets_dir=tmp_path, environ={"CASEBRIDGE_KEK": base64.b64encode(key).decode()})
    assert kek.key_id == LocalKek(key).key_id
    with pytest.raises(FileNotFoundError, match="casebridge migrate"):
        load_kek(secrets_dir=tmp_path, environ={})
    with pytest.raises(ValueError, match="not a base64"):
        load_kek(secrets_dir=tmp_path, environ={"CASEBRIDGE_KEK": "not base64!"})
