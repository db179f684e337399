"""Container image references: only ones pinned by digest reach a node.

A tag (`vllm/vllm-openai:v0.31.0`) is a name its owner can move to other bytes at any time;
`name[:tag]@sha256:<64 hex>` names exactly one manifest, which Docker verifies on pull. The
catalog, the stack settings and the node templates all refuse a reference without a digest,
so a node never runs an image nobody reviewed.
"""

from __future__ import annotations

import re
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: repository[:tag]@sha256:<digest>; the repository as Docker spells it (lowercase path
#: components, an optional registry host with port).
PINNED_IMAGE = re.compile(
    r"(?P<repository>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"@sha256:(?P<digest>[0-9a-f]{64})"
)


def pinned_image_problem(ref: str) -> str | None:
    """Why `ref` may not run on a node, or None when it is pinned by digest."""
    if PINNED_IMAGE.fullmatch(ref):
        return None
    if "@sha256:" not in ref:
        return (f"image {ref!r} is not pinned by digest: a tag can be moved to other bytes; "
                "write it as repository:tag@sha256:<64 hex digits> (`docker buildx imagetools inspect <ref>` prints it)")
    return f"image {ref!r}: its digest must be sha256: and 64 lowercase hex digits (repository[:tag]@sha256:<digest>)"


def image_digest(ref: str) -> str:
    """The `sha256:<hex>` digest of a pinned reference (ValueError if it has none)."""
    match = PINNED_IMAGE.fullmatch(ref)
    if match is None:
        raise ValueError(pinned_image_problem(ref))
    return f"sha256:{match['digest']}"


class EngineImage(BaseModel):
    """The catalog's `engine_image`: the vLLM container image GPU nodes run, with its source."""

    model_config = ConfigDict(extra="forbid")
    #: repository:tag@sha256:<digest>; a tag alone is refused (it can move).
    reference: str
    #: The vLLM release inside it (the node's flags must exist in it and in the CPU test venv).
    vllm_version: str = Field(min_length=1)
    source: str = Field(min_length=3, description="Where the digest comes from (OFFICIAL / 3P + where).")
    as_of: date
    field_sources: dict[str, str] = Field(default_factory=dict)
    notes: str = ""

    @field_validator("reference")
    @classmethod
    def _pinned(cls, v: str) -> str:
        problem = pinned_image_problem(v)
        if problem:
            raise ValueError(problem)
        return v
