"""What the gateway answers on its own: JSON bodies, errors in the client's protocol, and the
headers that say who answered.

Every error message passes through the redactor first: an upstream's message may quote what it
was sent, and secret values never leave the process.
"""

from __future__ import annotations

from typing import Any

import orjson

from agentdeploy.serving import fallback as fb
from agentdeploy.serving.http1 import Response
from agentdeploy.serving.protocol.events import ApiKind
from agentdeploy.serving.protocol.writers import error_body
from agentdeploy.serving.redact import Redactor

H_MODEL = "x-agentdeploy-model"
H_UPSTREAM = "x-agentdeploy-upstream"
H_AGENT = "x-agentdeploy-agent"
H_FALLBACK = "x-agentdeploy-fallback"
H_OVERHEAD = "x-agentdeploy-overhead-ms"
H_COST = "x-agentdeploy-cost-usd"
H_ERROR = "x-agentdeploy-error"


def json_reply(status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(status, body=orjson.dumps(obj), content_type="application/json", headers=headers)


class Replies:
    """Errors in the client's protocol, their messages redacted."""

    __slots__ = ("redactor",)

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def error(self, protocol: ApiKind, status: int, kind: str, message: str, headers: dict[str, str] | None = None,
              param: str | None = None, code: str | None = None) -> Response:
        return json_reply(status, error_body(protocol, kind, self.redactor.text(message), param, code), headers)


def exhausted_error(protocol: ApiKind, last: fb.Failed | None, reasons: list[str]) -> tuple[int, str, str, dict[str, str]]:
    """Status, error type, message and headers when no chain entry could answer: the last
    failure decides what the client is told (and whether it is worth retrying)."""
    detail = "; ".join(reasons) or "no upstream configured"
    headers = {H_FALLBACK: ",".join(reasons)}
    if last is not None and last.reason == fb.CONTEXT_LENGTH:
        status, kind, msg = 400, "invalid_request_error", last.message
    elif last is not None and last.reason in (fb.RATE_LIMITED, fb.OVERLOADED):
        status = 429 if last.reason == fb.RATE_LIMITED else 529
        kind = "rate_limit_error" if status == 429 else "overloaded_error"
        msg = f"every upstream is rate limited or overloaded ({detail})"
        if last.retry_after is not None:
            headers["retry-after"] = f"{last.retry_after:g}"
        if protocol == "openai" and status == 529:
            status = 503
    elif last is not None and last.reason in (fb.TTFT, fb.STALL):
        status, kind, msg = 504, "timeout_error", f"no upstream answered in time ({detail})"
    else:
        status, kind, msg = 502, "api_error", f"no upstream could answer ({detail})"
    return status, kind, msg, headers
