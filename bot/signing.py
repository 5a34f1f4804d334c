"""Request signatures at the public edge: Slack's v0 scheme on /slack/events and clusterbot's v1 on
/push are the same construction (HMAC-SHA256 over "version:timestamp:body"), verified here once.

Everything in a request is hostile until the signature checks out: the headers are parsed with
bounds (a timestamp is at most 12 ASCII digits), the comparison is over bytes (no exception on
non-ASCII input) and in constant time, and the reason for a refusal is for the log, never the client.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_SKEW_S: Final = 300  # older (or further in the future) requests are refused as stale
_MAX_TS_DIGITS: Final = 12  # ~31,000 years of seconds: anything longer is not a timestamp


@dataclass(frozen=True)
class Scheme:
    version: str
    timestamp_header: str
    signature_header: str


SLACK: Final = Scheme("v0", "X-Slack-Request-Timestamp", "X-Slack-Signature")
PUSH: Final = Scheme("v1", "X-Clusterbot-Timestamp", "X-Clusterbot-Signature")


def sign(scheme: Scheme, secret: str | bytes, timestamp: str, body: bytes) -> str:
    """"{version}=" + hex HMAC-SHA256 over "{version}:{timestamp}:{body}"."""
    key = secret.encode() if isinstance(secret, str) else secret
    base = f"{scheme.version}:{timestamp}:".encode() + body
    return f"{scheme.version}=" + hmac.new(key, base, hashlib.sha256).hexdigest()


def verify(scheme: Scheme, secret: bytes, headers: Mapping[str, str], body: bytes, now: float) -> str | None:
    """None if the request is authentic and fresh, else why not (one short line for the log)."""
    ts = headers.get(scheme.timestamp_header, "")
    given = headers.get(scheme.signature_header, "")
    if not ts or not given:
        return "missing signature headers"
    if not ts.isascii() or not ts.isdigit() or len(ts) > _MAX_TS_DIGITS:
        return "malformed timestamp"
    if abs(now - int(ts)) > MAX_SKEW_S:
        return f"stale timestamp ({int(now) - int(ts)} s off)"
    if not hmac.compare_digest(sign(scheme, secret, ts, body).encode(), given.encode(errors="replace")):
        return "bad signature"
    return None
