"""API tokens: a recognisable prefix and 256 random bits, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "trc_"  # noqa: S105 - a public marker, not a secret


@dataclass(frozen=True, slots=True)
class IssuedToken:
    secret: str  # shown to the user once, never stored
    token_hash: bytes
    display_prefix: str  # stored, so a user can tell tokens apart in listings


def issue_token() -> IssuedToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return IssuedToken(secret=secret, token_hash=hash_token(secret), display_prefix=secret[:10])


def hash_token(secret: str) -> bytes:
    """The stored form of a token. Tokens carry 256 random bits, so a plain SHA-256 is enough (no KDF)."""
    return hashlib.sha256(secret.encode()).digest()


def service_credential_matches(presented: str | None, expected: str) -> bool:
    """Constant-time check of the service credential platform components present."""
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())
