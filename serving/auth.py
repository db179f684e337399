"""Client authentication: per-agent keys, stored only as SHA-256 hashes in the config.

The presented key is hashed and compared against every stored hash with
`hmac.compare_digest` (no early exit), so timing reveals neither which agent matched nor how
much of a hash did. Nothing is forwarded upstream before this passes. `hash_key` is the one
definition of the stored form: render writes hashes with it, the gateway checks against them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from agentdeploy.naming import SHARED_KEY
from agentdeploy.serving.config import GatewayConfig

_PREFIX = "sha256:"
#: What `KeyIndex.lookup` returns for an operator key (it reads /metrics; it calls no agent).
OPERATOR = "\x00operator"


def hash_key(value: str) -> str:
    """The form client keys are stored in: SHA-256 of the key (keys are random, high entropy)."""
    return _PREFIX + hashlib.sha256(value.encode()).hexdigest()


class KeyIndex:
    def __init__(self, config: GatewayConfig) -> None:
        self.entries: list[tuple[bytes, str]] = []
        for agent, spec in config.agents.items():
            self.entries += [(bytes.fromhex(h[len(_PREFIX):]), agent) for h in spec.key_hashes]
        self.entries += [(bytes.fromhex(h[len(_PREFIX):]), SHARED_KEY) for h in config.shared_key_hashes]
        self.entries += [(bytes.fromhex(h[len(_PREFIX):]), OPERATOR) for h in config.operator.key_hashes]

    def lookup(self, key: str | None) -> str | None:
        """The agent the key belongs to, SHARED_KEY for a shared key (it may address any agent by
        name), None when it matches nothing."""
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for stored, agent in self.entries:
            if hmac.compare_digest(stored, digest):
                found = agent
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `Authorization: Bearer` (OpenAI clients) or `x-api-key` (Anthropic clients)."""
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")
