"""The per-agent client config applications read (SSM parameter once provisioned, a file from `deploy render`)."""

from __future__ import annotations

from typing import Any

from agentdeploy.naming import ANTHROPIC_KEY_ENV
from agentdeploy.planner.plan import AgentPlan


def agent_config_document(agent: AgentPlan, anthropic_key_secret_arn: str | None) -> dict[str, Any]:
    """What an application needs to call Claude for this agent as planned (pure).

    The key is referenced, never included: by its Secrets Manager ARN once provisioned, or by
    the environment variable a local run reads it from.
    """
    doc: dict[str, Any] = {
        "agent": agent.name,
        "route": agent.route,
        "model": agent.model,
        "max_tokens": agent.max_tokens,
        "streaming": agent.streaming,
        "batch": agent.batch,
        "cache": {
            "enabled": agent.cache.enabled,
            "ttl": agent.cache.ttl,
            "breakpoints": list(agent.cache.breakpoints),
            "min_cacheable_tokens": agent.cache.min_cacheable_tokens,
        },
        "fallback_model": agent.fallback_model,
        "degrade_model": agent.degrade_model,
        "budget": {"monthly_usd": agent.budget.monthly_usd, "policy": agent.budget.policy},
    }
    if anthropic_key_secret_arn is None:
        doc["anthropic_api_key_env"] = ANTHROPIC_KEY_ENV
    else:
        doc["anthropic_api_key_secret_arn"] = anthropic_key_secret_arn
    return doc
