"""The gateway's rendered config as the Pulumi program ships it to the gateway service.

The gateway only reads its rendered config (design: one direction). The document is
`agentdeploy.templates.gateway_config.build_gateway_config(plan, catalog)` with what only
provisioning knows passed in: where each GPU fleet lives (its Auto Scaling group and target
group: the gateway discovers the nodes and routes to each directly, and wakes the group from
zero), the env var each fleet's own vLLM key is injected under, the hashes of the client keys,
and that the gateway publishes its metrics. Secret values never appear here.
"""

from __future__ import annotations

import json
from typing import Any

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import SHARED_KEY, vllm_key_env
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Plan
from agentdeploy.serving.auth import hash_key
from agentdeploy.serving.config import BudgetStoreSpec, SecretRef, dump_yaml
from agentdeploy.templates.gateway_config import FleetRefs, build_gateway_config, check_client_key_lengths

GATEWAY_PORT = 8080
#: The container gets the rendered config in this variable and writes it to CONFIG_PATH.
CONFIG_ENV = "AGENTDEPLOY_GATEWAY_CONFIG"
CONFIG_PATH = "/tmp/agentdeploy/gateway.yaml"
#: The provisioned gateway publishes SpendUSD (spend alarms, `deploy cost`), and UnmetDemand (the
#: wake alarm, the backup of its own wake) and FleetServed per fleet, every minute; its task role
#: may PutMetricData.
CLOUDWATCH_INTERVAL_S = 60.0
#: The provisioned gateway's budget store URL (Redis, token included) is injected under this
#: variable from Secrets Manager; the config names the variable, never the value.
BUDGET_STORE_ENV = "AGENTDEPLOY_BUDGET_STORE_URL"
def parse_client_keys(raw: str | None) -> dict[str, list[str]]:
    """`agentdeploy:gatewayClientKeys`: a JSON object agent -> key or [keys] ("*" = any agent),
    or one key / a JSON list of keys for all agents. Errors never echo the value."""
    if raw is None or not raw.strip():
        return {}
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError:
        data = raw.strip()
    if isinstance(data, str):
        return {SHARED_KEY: [data]}
    if isinstance(data, list) and all(isinstance(k, str) for k in data):
        return {SHARED_KEY: list(data)}
    if isinstance(data, dict):
        out: dict[str, list[str]] = {}
        for agent, keys in data.items():
            keys = [keys] if isinstance(keys, str) else keys
            if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
                raise InvalidInput(f"agentdeploy:gatewayClientKeys: entry {agent!r} must be a key or a list of keys")
            out[str(agent)] = list(keys)
        return out
    raise InvalidInput("agentdeploy:gatewayClientKeys must be a key, a JSON list of keys, or a JSON object agent -> keys")


def gateway_config_yaml(plan: Plan, catalog: Catalog, fleets: dict[str, FleetRefs],
                        client_keys: dict[str, list[str]] | None = None, *, shared_budget_store: bool = False) -> str:
    """The rendered gateway config (pure). `fleets`: GPU agent -> its group and target group;
    `shared_budget_store`: budgets in the stack's Redis, its URL in BUDGET_STORE_ENV."""
    keys = client_keys or {}
    check_client_key_lengths(keys)
    unknown = sorted(set(keys) - {a.name for a in plan.agents} - {SHARED_KEY})
    if unknown:
        raise InvalidInput(f"agentdeploy:gatewayClientKeys names agents not in the plan: {', '.join(unknown)}")
    config = build_gateway_config(
        plan, catalog,
        fleets=fleets,
        # One key per fleet, so a node can only ever read its own.
        vllm_keys={agent: SecretRef(env=vllm_key_env(agent)) for agent in fleets},
        client_key_hashes={a: [hash_key(k) for k in ks] for a, ks in keys.items() if a != SHARED_KEY},
        shared_key_hashes=[hash_key(k) for k in keys.get(SHARED_KEY, [])],
        cloudwatch_interval_s=CLOUDWATCH_INTERVAL_S,
        budget_store=BudgetStoreSpec(backend="redis", redis_url=SecretRef(env=BUDGET_STORE_ENV))
        if shared_budget_store else None,
    )
    return dump_yaml(config)
