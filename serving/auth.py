"""Client authentication: per-agent keys, stored only as SHA-256 hashes in the config.

The presented key is hashed and compared against every stored hash with
`hmac.compare_digest` (no early exit), so timing reveals neither which agent matched nor how
much of a hash did. Nothing is forwarded upstream before this passes.
"""

from __future__ import annotations

import hashlib
import hmac

from agentdeploy.serving.config import GatewayConfig

SHARED = ""  # marks a shared key: may address any agent by name


class KeyIndex:
    def __init__(self, config: GatewayConfig) -> None:
        self.entries: list[tuple[bytes, str]] = []
        for agent, spec in config.agents.items():
            self.entries += [(bytes.fromhex(h[7:]), agent) for h in spec.key_hashes]
        self.entries += [(bytes.fromhex(h[7:]), SHARED) for h in config.shared_key_hashes]

    def lookup(self, key: str | None) -> str | None:
        """The agent the key belongs to, SHARED for a shared key, None when it matches nothing."""
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for stored, agent in self.entries:
            if hmac.compare_digest(stored, digest):
                found = agent
        return found


def presented_key(headers) -> str | None:
    """The key from `Authorization: Bearer` (OpenAI clients) or `x-api-key` (Anthropic clients)."""
    auth = headers.get("authorization")
    if auth and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")
