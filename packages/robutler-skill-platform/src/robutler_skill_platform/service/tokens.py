"""The platform's RS256 signing keys and the JWTs it signs (payment tokens, owner assertions).

Tokens are JSON Web Tokens (RFC 7519) signed with RS256 (RFC 7518) through PyJWT. The key pair
is made at the first start and kept in PostgreSQL (``platform_signing_keys``), so that every
worker and every restart signs with the same key; ``GET /api/auth/jwks`` publishes its public
half as a JSON Web Key Set (RFC 7517), each key with its ``kid``.

Payment token claims: ``iss`` (the platform's issuer), ``sub`` (the paying user's id), ``aud``
(the name of the agent it pays), ``exp``, ``iat``, ``jti`` (the token id), and ``payment``:
``{"balance": "<dollars at minting>", "max_depth": N, "depth": D}``; the spendable balance is the
ledger's, not the claim's. Owner assertions: ``iss``, ``sub`` (the owner's user id), ``aud``
(the agent's name), ``exp``, ``iat``, ``jti`` and ``typ: "owner"``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from robutler_core.errors import PaymentRequiredError

ALGORITHM = "RS256"
KEY_SIZE = 2048


class TokenError(PaymentRequiredError):
    """402: a payment token that is malformed, forged, expired, from another issuer, for
    another agent, or closed. ``code`` says which."""

    code = "invalid_payment_token"


def _kid(public_jwk: dict[str, Any]) -> str:
    """The key's RFC 7638 thumbprint (SHA-256, base64url): its ``kid``."""
    members = json.dumps({k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(members.encode()).digest()).rstrip(b"=").decode()


class Signer:
    """Signs and verifies the platform's tokens with its RS256 key pair."""

    def __init__(self, private_pem: str, issuer: str) -> None:
        self.issuer = issuer
        self._private = serialization.load_pem_private_key(private_pem.encode(), password=None)
        self._public = self._private.public_key()
        jwk = RSAAlgorithm.to_jwk(self._public, as_dict=True)
        self.kid = _kid(jwk)
        self.public_jwk = {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    @staticmethod
    def new_private_pem() -> str:
        """A new 2048-bit RSA private key in PKCS#8 PEM."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    @staticmethod
    async def load_or_create(connection: Any, issuer: str) -> Signer:
        """The signer of the key in ``platform_signing_keys``, made (off the event loop) and
        stored when there is none; concurrent first starts agree on one key."""
        pem = await connection.fetchval("SELECT private_pem FROM platform_signing_keys WHERE active")
        if pem is None:
            candidate = await asyncio.to_thread(Signer.new_private_pem)
            await connection.execute(
                "INSERT INTO platform_signing_keys (private_pem, active) VALUES ($1, true) "
                "ON CONFLICT (active) DO NOTHING",
                candidate,
            )
            pem = await connection.fetchval("SELECT private_pem FROM platform_signing_keys WHERE active")
        return Signer(pem, issuer)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set: ``{"keys": [public JWK]}``."""
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any], ttl: float) -> tuple[str, dict[str, Any]]:
        """A token of ``claims`` plus ``iss``, ``iat``, ``exp`` (now + ``ttl`` seconds) and a
        new ``jti`` unless given; returns the token and its full claims."""
        now = int(time.time())
        full = {"iss": self.issuer, "iat": now, "exp": now + int(ttl), "jti": f"tok_{uuid.uuid4().hex}", **claims}
        return jwt.encode(full, self._private, algorithm=ALGORITHM, headers={"kid": self.kid}), full

    def verify(self, token: Any, *, audience: str | None = None, kind: str = "payment") -> dict[str, Any]:
        """The claims of ``token`` after checking its signature (this platform's key only),
        ``exp``, ``iss`` and, when given, ``aud``.

        Raises TokenError with code ``invalid_payment_token`` (malformed, forged, another
        issuer, wrong kind), ``payment_token_expired`` or ``wrong_audience``.
        """
        if not isinstance(token, str) or not token:
            raise TokenError(f"the {kind} token must be a non-empty string")
        try:
            claims = jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=audience,
                options={"require": ["exp", "iss", "sub", "aud", "jti"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError(f"the {kind} token has expired", code="payment_token_expired") from None
        except jwt.InvalidAudienceError:
            raise TokenError(
                f"the {kind} token is for another agent, not '{audience}'", code="wrong_audience"
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenError(f"the {kind} token was not issued by this platform ({self.issuer})") from None
        except jwt.InvalidSignatureError:
            raise TokenError(f"the {kind} token's signature is not this platform's") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"the {kind} token is not valid: {exc}") from None
        if (kind == "payment") != isinstance(claims.get("payment"), dict):
            raise TokenError(f"the token is not a {kind} token")
        return claims
