"""What `deploy batch` does, apart from the command line: read a JSONL batch, talk to the
Message Batches endpoints (a stack's gateway, or the API itself with the rendered agent config),
and keep each batch's state on disk so a run that stops (a laptop that sleeps) resumes.

State: one JSON file per batch under the state dir (default ~/.agentdeploy/batches/), named by
batch id, plus an index by the input file's SHA-256 and agent: submitting the same file for the
same agent again follows the batch already submitted instead of paying twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentdeploy.errors import InvalidInput, MissingDependency, OperationFailed
from agentdeploy.naming import ANTHROPIC_KEY_ENV, client_key_env

DEFAULT_STATE_DIR = Path.home() / ".agentdeploy" / "batches"
ANTHROPIC_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


@dataclass
class BatchTarget:
    """Where a batch goes: the gateway (agent key) or the API (Anthropic key, agent config applied)."""

    base_url: str
    key_env: str
    agent: str
    direct: bool = False

    def headers(self, environ: dict[str, str] | None = None) -> dict[str, str]:
        env = os.environ if environ is None else environ
        key = env.get(self.key_env, "").split(",")[0].strip()
        if not key:
            raise MissingDependency(f"set {self.key_env}: the key `deploy batch` calls {'the API' if self.direct else 'the gateway'} with",
                                    hint=f"for agent {self.agent}: the client key you rendered the gateway with" if not self.direct else None)
        return {"x-api-key": key, "anthropic-version": API_VERSION}


def gateway_target(url: str, agent: str) -> BatchTarget:
    return BatchTarget(url.rstrip("/"), client_key_env(agent), agent)


def direct_target(agent_config: dict[str, Any], api_url: str | None) -> BatchTarget:
    env = str(agent_config.get("anthropic_api_key_env") or ANTHROPIC_KEY_ENV)
    return BatchTarget((api_url or ANTHROPIC_URL).rstrip("/"), env, str(agent_config.get("agent")), direct=True)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Batch requests, one `{"custom_id", "params"}` a line; errors name the line."""
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read ({err.strerror})") from None
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as err:
            raise InvalidInput(f"{path}:{n}: not valid JSON ({err})", hint="one JSON object a line: {\"custom_id\": ..., \"params\": {...}}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("custom_id"), str) or not isinstance(obj.get("params"), dict):
            raise InvalidInput(f"{path}:{n}: each line needs a string custom_id and a params object (a Messages API request)")
        out.append(obj)
    if not out:
        raise InvalidInput(f"{path}: no requests in the file")
    return out


def apply_agent_config(requests: list[dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Direct mode: what the gateway would do, from the rendered agent config (model pinned,
    max_tokens capped, the planned cache breakpoints with the planned TTL)."""
    from agentdeploy.serving.cache_control import place_breakpoints

    if not config.get("batch"):
        raise InvalidInput(f"agent {config.get('agent')!r} is not a batch agent in its rendered config", hint="batch agents have \"batch\": true")
    cache = config.get("cache") or {}
    out = []
    for r in requests:
        params = {**r["params"], "model": config["model"], "max_tokens": min(int(r["params"].get("max_tokens") or config["max_tokens"]), int(config["max_tokens"]))}
        if cache.get("enabled"):
            params = place_breakpoints(params, list(cache.get("breakpoints") or []), cache.get("ttl"), int(cache.get("min_cacheable_tokens") or 0))
        out.append({"custom_id": r["custom_id"], "params": params})
    from agentdeploy.serving.batch.limits import MAX_BYTES, MAX_REQUESTS, TooLarge, split

    try:
        parts = len(split(out))
    except TooLarge as err:
        raise InvalidInput(str(err)) from None
    if parts > 1:
        raise InvalidInput(f"{len(out)} requests are over one Message Batch's limits ({MAX_REQUESTS:,} requests, {MAX_BYTES // 2**20} MB)",
                           hint="split the file, or submit through the gateway (it splits a batch within the limits)")
    return out


@dataclass
class BatchState:
    id: str
    agent: str
    base_url: str
    key_env: str
    direct: bool
    input_sha256: str
    requests: int
    submitted_at: float
    processing_status: str = "in_progress"
    results_file: str | None = None


class StateDir:
    def __init__(self, root: Path | None) -> None:
        self.root = root or DEFAULT_STATE_DIR

    def _write(self, path: Path, obj: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=2))
        tmp.replace(path)  # atomic: a run killed mid-write leaves the old state

    def save(self, state: BatchState) -> None:
        self._write(self.root / f"{state.id}.json", asdict(state))
        self._write(self.root / f"input-{state.agent}-{state.input_sha256[:32]}.json", {"id": state.id})

    def load(self, batch_id: str) -> BatchState:
        path = self.root / f"{batch_id}.json"
        try:
            return BatchState(**json.loads(path.read_text()))
        except OSError:
            raise InvalidInput(f"no batch {batch_id} in {self.root}", hint="submit it with `deploy batch submit`, or pass the --state-dir it was submitted with") from None

    def for_input(self, agent: str, sha: str) -> BatchState | None:
        path = self.root / f"input-{agent}-{sha[:32]}.json"
        if not path.exists():
            return None
        return self.load(json.loads(path.read_text())["id"])


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class BatchApi:
    """The Message Batches endpoints at a target (the gateway serves the same shape)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout_s: float = 120.0) -> None:
        import httpx

        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, json=body)
        except httpx.HTTPError as err:
            raise OperationFailed(f"{self.http.base_url}{path}: {type(err).__name__}: {err}", hint="check the URL and that the gateway is up") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("error") or {}
                message = f"{detail.get('type', 'error')}: {detail.get('message', r.text[:300])}"
            except ValueError:
                message = r.text[:300]
            cls = InvalidInput if r.status_code in (400, 401, 403, 404, 413, 422) else OperationFailed
            raise cls(f"{method} {path} answered {r.status_code}: {message}")
        return r

    def create(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/messages/batches", {"requests": requests}).json())

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/messages/batches/{batch_id}").json())

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/messages/batches/{batch_id}/cancel").json())

    def results(self, batch_id: str) -> bytes:
        return bytes(self._call("GET", f"/v1/messages/batches/{batch_id}/results").content)


def follow(api: BatchApi, batch_id: str, poll_s: float, on_view: Callable[[dict[str, Any]], None],
           sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Poll until the batch ends (each view reported); returns the final view."""
    while True:
        view = api.retrieve(batch_id)
        on_view(view)
        if view.get("processing_status") == "ended":
            return view
        sleep(poll_s)


def write_results(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)
