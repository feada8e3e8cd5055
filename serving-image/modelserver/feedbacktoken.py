"""Feedback tokens: where a prediction was made, signed so that only our own replicas can name it.

A /predict answer carries a token naming the replica that answered (its pod address) and the
request id. Feedback may then reach any replica, through any load balancer: the replica that
gets it checks the signature and, when the token names another replica, forwards it there. The
replica that answered scores the label against what it predicted (its memory forgets a request
once labelled), so a label counts once, for the revision that answered, with no shared state and
no change to the metrics. The signature is what makes forwarding safe: a forged token cannot send
a replica's request anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

import orjson

MIN_KEY_BYTES = 16


class TokenError(ValueError):
    """A token that does not verify; the message says why, without echoing secrets."""


class TokenExpired(TokenError):
    """A genuine token past its time: the prediction is too old to label."""


@dataclass(frozen=True)
class Claim:
    address: str  # host:port of the replica that answered
    request_id: str
    expires: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Issues and verifies tokens with a key every replica of a model shares."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the feedback key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, claim: Claim) -> str:
        payload = _b64(orjson.dumps([claim.address, claim.request_id, claim.expires]))
        return f"{payload}.{self._mac(payload)}"

    def verify(self, token: str, now: float) -> Claim:
        payload, dot, mac = token.partition(".")
        if not dot or not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenError("the token's signature does not verify: it was not issued by this model")
        try:
            address, request_id, expires = orjson.loads(_unb64(payload))
        except (binascii.Error, orjson.JSONDecodeError, ValueError, TypeError) as err:
            raise TokenError("the token is malformed") from err
        if not (isinstance(address, str) and isinstance(request_id, str) and isinstance(expires, int)):
            raise TokenError("the token is malformed")
        if now >= expires:
            raise TokenExpired("the token has expired")
        return Claim(address, request_id, expires)
