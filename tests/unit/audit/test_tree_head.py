"""Signed tree heads: message layout, signature checks, JSON and key handling, and the
screening every reader of a set of heads applies."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.tree_head import (
    HEAD_BAD_SIGNATURE,
    HEAD_BEYOND_LOG,
    HEAD_CONFLICTING_ROOT,
    HEAD_TIME_REVERSED,
    SignedTreeHead,
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    private_key_pem,
    public_key_pem,
    screen_tree_heads,
    sign_tree_head,
    sth_from_dict,
    sth_from_json,
    sth_message,
    sth_to_dict,
    sth_to_json,
    verify_tree_head,
)

SEED = bytes(range(32))
PRIVATE = Ed25519PrivateKey.from_private_bytes(SEED)
PUBLIC = PRIVATE.public_key()
ROOT = hashlib.sha256(b"root").digest()
TS = 1_715_938_212_345
_B64_ROOT = base64.b64encode(ROOT).decode()


@pytest.fixture
def sth() -> SignedTreeHead:
    return sign_tree_head(PRIVATE, 1234, ROOT, TS)


def test_message_layout_is_as_documented() -> None:
    expected = b"cb-sth-v1" + (1234).to_bytes(8, "big") + TS.to_bytes(8, "big") + ROOT
    assert sth_message(1234, TS, ROOT) == expected
    assert len(expected) == 57


def test_signature_covers_the_documented_message(sth: SignedTreeHead) -> None:
    # Checked with the library directly, so a change of layout in sth_message is caught.
    message = b"cb-sth-v1" + (1234).to_bytes(8, "big") + TS.to_bytes(8, "big") + ROOT
    PUBLIC.verify(sth.signature, message)
    assert (sth.tree_size, sth.root_hash, sth.timestamp) == (1234, ROOT, TS)
    assert len(sth.signature) == 64


def test_key_id_is_sha256_of_raw_public_key(sth: SignedTreeHead) -> None:
    raw = PUBLIC.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert sth.key_id == key_id(PUBLIC) == hashlib.sha256(raw).hexdigest()


def test_valid_head_verifies(sth: SignedTreeHead) -> None:
    assert verify_tree_head(PUBLIC, sth)


def _flip(b: bytes, bit: int) -> bytes:
    out = bytearray(b)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize(
    "change",
    [
        {"tree_size": 1235},
        {"tree_size": 1233},
        {"timestamp": TS + 1},
        {"root_hash": _flip(ROOT, 0)},
        {"root_hash": _flip(ROOT, 255)},
        {"root_hash": ROOT[:31]},
        {"key_id": "0" * 64},
        {"tree_size": -1},
        {"tree_size": 2**64},
        {"signature": b""},
    ],
)
def test_tampered_head_is_rejected(sth: SignedTreeHead, change: dict[str, Any]) -> None:
    assert not verify_tree_head(PUBLIC, dataclasses.replace(sth, **change))


def test_every_signature_bit_flip_is_rejected(sth: SignedTreeHead) -> None:
    for bit in range(512):
        assert not verify_tree_head(
            PUBLIC, dataclasses.replace(sth, signature=_flip(sth.signature, bit))
        )


def test_other_key_is_rejected(sth: SignedTreeHead) -> None:
    _, other_public = generate_keypair()
    assert not verify_tree_head(other_public, sth)
    # Even with the key id rewritten to match, the signature is over the wrong key.
    assert not verify_tree_head(other_public, dataclasses.replace(sth, key_id=key_id(other_public)))


@pytest.mark.parametrize(
    ("size", "root", "ts", "message"),
    [
        (-1, ROOT, TS, "tree_size"),
        (2**64, ROOT, TS, "tree_size"),
        (True, ROOT, TS, "tree_size"),
        (1, ROOT, -1, "timestamp"),
        (1, ROOT[:31], TS, "root_hash must be 32 bytes"),
    ],
)
def test_signing_rejects_out_of_range_values(size: int, root: bytes, ts: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sign_tree_head(PRIVATE, size, root, ts)


def test_json_round_trip(sth: SignedTreeHead) -> None:
    exported = sth_to_json(sth)
    data = json.loads(exported)
    assert data == {
        "version": 1,
        "tree_size": 1234,
        "timestamp": TS,
        "root_hash": base64.b64encode(ROOT).decode(),
        "signature": base64.b64encode(sth.signature).decode(),
        "key_id": key_id(PUBLIC),
    }
    assert sth_from_json(exported) == sth
    assert sth_from_json(exported.decode()) == sth
    assert sth_from_dict(sth_to_dict(sth)) == sth
    assert verify_tree_head(PUBLIC, sth_from_json(exported))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 2}, "unsupported STH version"),
        ({"version": True}, "unsupported STH version"),
        ({"version": None}, "unsupported STH version"),
        ({"tree_size": True}, "must be integers"),
        ({"tree_size": "1234"}, "must be integers"),
        ({"tree_size": -1}, "tree_size must be"),
        ({"timestamp": 1.5}, "must be integers"),
        ({"root_hash": "not base64!"}, "root_hash is not valid base64"),
        ({"root_hash": base64.b64encode(ROOT[:31]).decode()}, "root_hash must decode to 32"),
        ({"root_hash": base64.b64encode(ROOT).decode().rstrip("=") + "@"}, "not valid base64"),
        ({"root_hash": _B64_ROOT[:8] + "!" + _B64_ROOT[8:]}, "root_hash is not valid base64"),
        ({"root_hash": _B64_ROOT[:8] + "\n" + _B64_ROOT[8:]}, "root_hash is not valid base64"),
        ({"signature": base64.b64encode(b"x" * 63).decode()}, "signature must decode to 64"),
        ({"signature": None}, "signature must be a base64 string"),
        ({"key_id": 5}, "key_id must be a string"),
    ],
)
def test_json_parsing_is_strict(sth: SignedTreeHead, change: dict[str, Any], message: str) -> None:
    data = {**sth_to_dict(sth), **change}
    with pytest.raises(ValueError, match=message):
        sth_from_dict(data)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("tree_size", "must be integers"),
        ("timestamp", "must be integers"),
        ("root_hash", "root_hash must be a base64 string"),
        ("signature", "signature must be a base64 string"),
        ("key_id", "key_id must be a string"),
    ],
)
def test_json_missing_field_is_rejected(sth: SignedTreeHead, field: str, message: str) -> None:
    data = sth_to_dict(sth)
    del data[field]
    with pytest.raises(ValueError, match=message):
        sth_from_dict(data)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'"x"', "JSON object"),
    ],
)
def test_json_garbage_is_rejected(text: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sth_from_json(text)


def test_private_key_from_pem_and_raw_base64() -> None:
    pem = private_key_pem(PRIVATE)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    for source in (pem, pem.encode(), "\n" + pem + "\n", base64.b64encode(SEED).decode()):
        key = load_private_key(source)
        assert key_id(key.public_key()) == key_id(PUBLIC)


def test_public_key_pem_round_trip() -> None:
    pem = public_key_pem(PRIVATE)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert public_key_pem(PUBLIC) == pem
    assert key_id(load_public_key(pem)) == key_id(PUBLIC)
    raw = PUBLIC.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(load_public_key(base64.b64encode(raw).decode())) == key_id(PUBLIC)


def test_generated_keys_sign_and_verify() -> None:
    private, public = generate_keypair()
    head = sign_tree_head(private, 0, hashlib.sha256(b"").digest(), 0)
    assert verify_tree_head(public, head)
    assert verify_tree_head(load_public_key(public_key_pem(private)), head)
    assert not verify_tree_head(PUBLIC, head)


def test_non_ed25519_and_garbage_keys_are_rejected() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_private_pem = ec_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    ec_public_pem = (
        ec_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    bad_private = [
        (ec_private_pem, "not Ed25519"),
        ("not a key", "neither PEM nor base64"),
        (base64.b64encode(b"short").decode(), "must be 32 bytes"),
    ]
    for text, message in bad_private:
        with pytest.raises(ValueError, match=message):
            load_private_key(text)
    bad_public = [
        (ec_public_pem, "not Ed25519"),
        ("not a key", "neither PEM nor base64"),
        (base64.b64encode(b"x" * 31).decode(), "must be 32 bytes"),
    ]
    for text, message in bad_public:
        with pytest.raises(ValueError, match=message):
            load_public_key(text)


# --- screening -----------------------------------------------------------------------------


def signed_at(size: int, timestamp: int | None = None, root: bytes | None = None) -> SignedTreeHead:
    root = root or hashlib.sha256(b"root-%d" % size).digest()
    return sign_tree_head(PRIVATE, size, root, TS + size if timestamp is None else timestamp)


HONEST = [signed_at(s) for s in (10, 20, 30, 40)]


def reasons(heads: list[SignedTreeHead], **kwargs: Any) -> dict[int, str]:
    return {r.head.tree_size: r.reason for r in screen_tree_heads(heads, PUBLIC, **kwargs).rejected}


def test_honest_heads_are_all_accepted_once_each_in_order() -> None:
    screened = screen_tree_heads([*reversed(HONEST), HONEST[1]], PUBLIC, log_size=40)
    assert screened.accepted == tuple(HONEST)
    assert screened.rejected == ()
    assert screened.latest == HONEST[-1]
    assert screened.at(20) == HONEST[1]
    assert screened.at(25) is None


def test_a_head_not_signed_by_the_key_is_rejected_and_never_latest() -> None:
    forged = dataclasses.replace(signed_at(50), signature=bytes(64))
    other = sign_tree_head(generate_keypair()[0], 60, ROOT, TS + 60)
    screened = screen_tree_heads([*HONEST, forged, other], PUBLIC)
    assert screened.latest == HONEST[-1]
    assert reasons([*HONEST, forged, other]) == {50: HEAD_BAD_SIGNATURE, 60: HEAD_BAD_SIGNATURE}
    assert screened.rejected[0].to_dict()["tree_head"]["tree_size"] == 50


def test_a_head_beyond_the_log_is_rejected_only_when_the_size_is_known() -> None:
    assert reasons(HONEST, log_size=35) == {40: HEAD_BEYOND_LOG}
    assert screen_tree_heads(HONEST, PUBLIC, log_size=35).latest == HONEST[2]
    assert reasons(HONEST) == {}


def test_two_roots_for_one_size_are_both_rejected() -> None:
    fork = signed_at(30, root=bytes(32))
    assert reasons([*HONEST, fork]) == {30: HEAD_CONFLICTING_ROOT}
    assert screen_tree_heads([*HONEST, fork], PUBLIC).at(30) is None


def test_a_head_dated_before_a_smaller_one_is_rejected_and_never_latest() -> None:
    backdated = signed_at(50, timestamp=TS)  # earlier than the head of size 10
    screened = screen_tree_heads([*HONEST, backdated], PUBLIC)
    assert reasons([*HONEST, backdated]) == {50: HEAD_TIME_REVERSED}
    assert screened.latest == HONEST[-1]
    # Of two heads that contradict each other in time, the smaller one is kept.
    pair = [signed_at(10, timestamp=TS + 100), signed_at(20, timestamp=TS + 1)]
    assert screen_tree_heads(pair, PUBLIC).latest == pair[0]


def test_one_far_future_head_does_not_push_the_honest_ones_out() -> None:
    """The longest run of heads in time order is kept, not the first one's."""
    future = signed_at(5, timestamp=2**62)
    screened = screen_tree_heads([future, *HONEST], PUBLIC)
    assert screened.accepted == tuple(HONEST)
    assert reasons([future, *HONEST]) == {5: HEAD_TIME_REVERSED}


def test_a_memoised_signature_check_can_replace_the_default() -> None:
    calls: list[int] = []

    def signed(head: SignedTreeHead) -> bool:
        calls.append(head.tree_size)
        return verify_tree_head(PUBLIC, head)

    assert screen_tree_heads(HONEST, PUBLIC, signed=signed).accepted == tuple(HONEST)
    assert sorted(calls) == [10, 20, 30, 40]
