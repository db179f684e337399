"""Config builders and SSE helpers shared by the gateway tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from agentdeploy.serving.auth import hash_key

API_KEY = "client-key-api-agent-0123456789"
GPU_KEY = "client-key-gpu-agent-0123456789"
SHARED_KEY = "client-key-shared-0123456789"
CLAUDE_KEY_ENV = "TEST_ANTHROPIC_KEY"

HAIKU = {"input": 1e-6, "output": 5e-6, "cache_write_5m": 1.25e-6, "cache_write_1h": 2e-6, "cache_read": 1e-7,
         "context_tokens": 200000, "min_cacheable_tokens": 4096}
SONNET = {"input": 3e-6, "output": 15e-6, "cache_write_5m": 3.75e-6, "cache_write_1h": 6e-6, "cache_read": 3e-7,
          "context_tokens": 200000, "min_cacheable_tokens": 2048}


def gateway_config(claude_url: str, *, replicas: list[str] | None = None, replicas_file: str | None = None,
                   vllm_model: str = "standin", api_agent: dict | None = None, gpu_agent: dict | None = None,
                   vllm: dict | None = None, anthropic: dict | None = None, breaker: dict | None = None,
                   budget_store: dict | None = None, **top: Any) -> dict:
    """Two agents: `api-agent` (Claude only) and `gpu-agent` (self-hosted, then Claude)."""
    cfg: dict[str, Any] = {
        "version": 1,
        "stack": "test",
        "upstreams": {
            "anthropic": {"kind": "anthropic", "base_url": claude_url, "api_key": {"env": CLAUDE_KEY_ENV},
                          "stall_timeout_s": 2.0, **(anthropic or {})},
            "vllm": {"kind": "openai", "replicas": list(replicas or []), "metrics_poll_s": 0.2,
                     "connect_timeout_s": 0.5, "stall_timeout_s": 1.0,
                     **({"replicas_file": replicas_file} if replicas_file else {}), **(vllm or {})},
        },
        "models": {"claude-haiku-4-5": HAIKU, "claude-sonnet-4-6": SONNET, vllm_model: {"context_tokens": 512}},
        "agents": {
            "api-agent": {"key_hashes": [hash_key(API_KEY)], "chain": [{"upstream": "anthropic", "model": "claude-sonnet-4-6"}],
                          "max_tokens_default": 64, "max_tokens_cap": 256, **(api_agent or {})},
            "gpu-agent": {"key_hashes": [hash_key(GPU_KEY)],
                          "chain": [{"upstream": "vllm", "model": vllm_model, "ttft_timeout_s": 1.0},
                                    {"upstream": "anthropic", "model": "claude-haiku-4-5"}],
                          "max_tokens_default": 16, "max_tokens_cap": 64, **(gpu_agent or {})},
        },
        "shared_key_hashes": [hash_key(SHARED_KEY)],
        "breaker": {"failure_threshold": 2, "open_s": 0.5, "max_open_s": 4.0, **(breaker or {})},
        "first_byte_timeout_s": 10.0,
        "drain_timeout_s": 10.0,
        **({"budget_store": budget_store} if budget_store else {}),
        **top,
    }
    return cfg


def env_for(claude) -> dict[str, str]:
    return {CLAUDE_KEY_ENV: claude.api_key}


def chat(url: str, key: str, content: str = "hello there", *, stream: bool = False, timeout: float = 20.0, **body: Any) -> httpx.Response:
    payload = {"model": body.pop("model", "any"), "messages": [{"role": "user", "content": content}], "stream": stream, **body}
    return httpx.post(url + "/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}, timeout=timeout)


def messages(url: str, key: str, content: str = "hello there", *, timeout: float = 20.0, **body: Any) -> httpx.Response:
    payload = {"model": body.pop("model", "any"), "max_tokens": body.pop("max_tokens", 32), "messages": [{"role": "user", "content": content}], **body}
    return httpx.post(url + "/v1/messages", json=payload, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=timeout)


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) for each SSE event; data stays a string when it is not JSON."""
    out = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        raw = "\n".join(data)
        try:
            out.append((name, json.loads(raw)))
        except ValueError:
            out.append((name, raw))
    return out


def stream_chat(url: str, key: str, content: str = "hello there", timeout: float = 20.0, **body: Any) -> tuple[httpx.Response, str]:
    payload = {"model": body.pop("model", "any"), "messages": [{"role": "user", "content": content}], "stream": True, **body}
    with httpx.stream("POST", url + "/v1/chat/completions", json=payload, headers={"authorization": f"Bearer {key}"}, timeout=timeout) as r:
        text = "".join(r.iter_text())
    return r, text


def openai_text(events: list) -> str:
    return "".join((d.get("choices") or [{}])[0].get("delta", {}).get("content") or "" for _, d in events if isinstance(d, dict) and d.get("choices"))


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def iter_lines(r: httpx.Response) -> Iterator[str]:
    yield from r.iter_lines()
