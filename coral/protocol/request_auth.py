"""Signed requests: how an agent proves who is asking, on reads and streams.

Writes are signed messages; reads carry a ``Coral`` authorization value:
``Coral did="<did:key>", ts="<unix ms>", sig="<base64url>"`` where the
signature covers the method, the target (HTTP path and query, or the gRPC
method name), the timestamp and the SHA-256 of the body, under a domain
prefix of its own. The timestamp must be within the skew window.
"""

from __future__ import annotations

import hashlib
import re

from coral.protocol.errors import Unauthenticated
from coral.protocol.identity import Identity, PublicIdentity, b64u_decode, b64u_encode

REQUEST_DOMAIN = b"coral/v1/request\x00"
SCHEME = "Coral"
_HEADER_RE = re.compile(r'^Coral\s+did="([^"]+)",\s*ts="(\d{1,16})",\s*sig="([A-Za-z0-9_-]+)"$')


def request_payload(method: str, target: str, timestamp_ms: int, body: bytes) -> bytes:
    """The bytes a request signature covers."""
    digest = hashlib.sha256(body).hexdigest()
    return REQUEST_DOMAIN + f"{method.upper()}\n{target}\n{timestamp_ms}\n{digest}".encode()


def sign_request(identity: Identity, method: str, target: str, body: bytes, now_ms: int) -> str:
    """The authorization value for one request."""
    sig = identity.sign(request_payload(method, target, now_ms, body))
    return f'{SCHEME} did="{identity.did}", ts="{now_ms}", sig="{b64u_encode(sig)}"'


def verify_request(
    header: str | None, method: str, target: str, body: bytes, now_ms: int, max_skew_ms: int
) -> str:
    """Return the caller's did, or raise Unauthenticated with the reason."""
    if not header:
        raise Unauthenticated(
            "this call needs a signed Coral authorization", reason="auth_required"
        )
    match = _HEADER_RE.match(header.strip())
    if match is None:
        raise Unauthenticated("malformed Coral authorization value", reason="bad_auth")
    did, ts_text, sig_text = match.groups()
    ts = int(ts_text)
    if abs(now_ms - ts) > max_skew_ms:
        raise Unauthenticated("request timestamp outside the allowed window", reason="stale_auth")
    try:
        PublicIdentity.from_did(did).verify(
            request_payload(method, target, ts, body), b64u_decode(sig_text)
        )
    except Exception as exc:
        raise Unauthenticated(f"request signature invalid: {exc}", reason="bad_auth") from None
    return did
