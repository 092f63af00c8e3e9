"""adapters/signing.py: HKDF per RFC 5869, and keys and signatures identical to what the
`cryptography` implementation it replaced derived (deployed secrets keep their keys)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from chalicelib.adapters.signing import Ed25519Keys, hkdf_sha256
from chalicelib.core.wakes import _b64

SEED = "a-seed-of-at-least-thirty-two-characters-0123456789"


def test_hkdf_matches_the_rfc_5869_vectors() -> None:
    # Test case 1 (basic, SHA-256)
    okm = hkdf_sha256(bytes([0x0B] * 22), bytes(range(0xF0, 0xFA)), 42,
                      salt=bytes(range(0x0D)))
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")
    # Test case 3 (no salt, no info)
    okm = hkdf_sha256(bytes([0x0B] * 22), b"", 42)
    assert okm.hex() == ("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
                         "9d201395faa4b61a96c8")


@pytest.mark.parametrize("length", [1, 32, 33, 64, 100])
def test_hkdf_matches_cryptography(length: int) -> None:
    for seed in (SEED, "another seed, also long enough to be used here!!", "é" * 40):
        want = HKDF(algorithm=hashes.SHA256(), length=length, salt=None,
                    info=b"info").derive(seed.encode())
        assert hkdf_sha256(seed.encode(), b"info", length) == want


def test_keys_and_signatures_are_those_cryptography_derived() -> None:
    keys = Ed25519Keys({"seed": SEED})
    old = Ed25519PrivateKey.from_private_bytes(HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None,
        info=b"switchboard webhook signing key v1").derive(SEED.encode()))
    x = _b64(old.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    (jwk,) = keys.jwks()["keys"]  # type: ignore[misc]
    assert jwk["x"] == x and jwk["kid"] == keys.active_kid()
    kid, signature = keys.sign(b"t=1,payload")
    assert kid == keys.active_kid()
    assert signature == old.sign(b"t=1,payload"), "Ed25519 is deterministic: same key, same bytes"
    Ed25519PublicKey.from_public_bytes(old.public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)).verify(signature, b"t=1,payload")
    assert keys.token_keys() == [HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None,
        info=b"switchboard wake token key v1").derive(SEED.encode())]


def test_a_short_seed_is_refused() -> None:
    with pytest.raises(ValueError, match="32 characters"):
        Ed25519Keys({"seed": "short"})
