"""Names every stage agrees on: tags, metric names, config keys.

Provisioning writes these, the gateway and node agent publish under them, and the operations
commands (reap, status, cost) look resources up by them. Keeping them in one place is what
lets `deploy reap` trust that a tag it finds was put there by our Pulumi program.
"""

#: Tag keys carried by every cloud resource the Pulumi program creates.
TAG_STACK = "agentdeploy:stack"
TAG_AGENT = "agentdeploy:agent"
#: What the resource is for: "gpu-fleet", "gateway", "api-agent", "budget", "network", "secret".
TAG_ROLE = "agentdeploy:role"
TAG_MANAGED_BY = "agentdeploy:managed-by"
MANAGED_BY_VALUE = "agentdeploy"

ROLE_GPU_FLEET = "gpu-fleet"
ROLE_GATEWAY = "gateway"
ROLE_API_AGENT = "api-agent"

#: CloudWatch namespace for the demand and spend metrics the gateway and node agents publish.
METRIC_NAMESPACE = "AgentDeploy"
#: Port of the node agent's /healthz on every GPU node: the target group's health check, the
#: gateway's node check (`node_health_port`) and the agent's own default.
NODE_HEALTH_PORT = 8081
#: Per-fleet demand signal the autoscaler tracks and the reaper reads (requests waiting + running).
#: Published by node agents only (the interval's maximum, polled every few seconds).
METRIC_DEMAND = "Demand"
#: Requests the gateway meant for a fleet but served elsewhere or refused because the fleet had
#: no capacity (at zero, all nodes full or unhealthy), per agent: the wake signal, never tracked.
METRIC_UNMET_DEMAND = "UnmetDemand"
#: Requests a fleet served through the gateway, per agent (the gateway's view, never tracked).
METRIC_FLEET_SERVED = "FleetServed"
#: Requests waiting in vLLM's queue, per instance (target-tracking signal).
METRIC_QUEUE_DEPTH = "QueueDepth"
#: Requests in flight on one replica.
METRIC_IN_FLIGHT = "InFlight"
#: Spend the gateway has accounted, USD, per agent.
METRIC_SPEND_USD = "SpendUSD"
#: A gateway-less stack's Claude spend per agent and UTC day, as a running total (`deploy spend
#: publish`, from the Usage and Cost API): read with Maximum per day, never summed.
METRIC_SPEND_DAY_USD = "SpendUSDDay"
DIM_STACK = "Stack"
DIM_AGENT = "Agent"

#: Pulumi stack config key naming the stack's decision file (relative to the project root).
CONFIG_DECISION_FILE = "agentdeploy:decisionFile"
#: Pulumi stack config key naming the reviewed plan file to apply (`deploy plan FILE --write PATH`);
#: unset: `<decision file stem>.plan.json` beside the decision file, when it exists.
CONFIG_PLAN_FILE = "agentdeploy:planFile"
#: Pulumi secret config key holding the Anthropic API key (set with `pulumi config set --secret`).
CONFIG_ANTHROPIC_KEY = "agentdeploy:anthropicApiKey"

#: SSM parameter path prefix for per-agent API configs: /agentdeploy/<stack>/<agent>/config
SSM_PREFIX = "/agentdeploy"


def stack_tags(stack: str, agent: str | None = None, role: str | None = None) -> dict[str, str]:
    """The tag set for a resource of `stack` (and `agent`, when it belongs to one)."""
    tags = {TAG_STACK: stack, TAG_MANAGED_BY: MANAGED_BY_VALUE}
    if agent is not None:
        tags[TAG_AGENT] = agent
    if role is not None:
        tags[TAG_ROLE] = role
    return tags

#: vLLM's OpenAI-compatible port on every GPU node (the target group, the security group, the
#: systemd unit and the node agent all use it).
VLLM_PORT = 8000
#: Env var holding the Anthropic API key: the gateway's upstream key and the stack's secret.
ANTHROPIC_KEY_ENV = "ANTHROPIC_API_KEY"
#: The environment variable vLLM takes its API key from (vllm.envs.VLLM_API_KEY); the gateway's
#: default name for a fleet's key when no per-fleet name is rendered.
VLLM_KEY_ENV = "VLLM_API_KEY"
#: `deploy render` reads each agent's client keys from AGENTDEPLOY_KEY_<AGENT>.
CLIENT_KEY_ENV_PREFIX = "AGENTDEPLOY_KEY_"
#: In the `agentdeploy:gatewayClientKeys` mapping, and for the gateway's key lookup: a key
#: shared by every agent, which may address any agent by name.
SHARED_KEY = "*"


def env_suffix(agent: str) -> str:
    """An agent name as it appears inside an environment variable name (upper case, `_`)."""
    return "".join(c if c.isalnum() else "_" for c in agent.upper())


def client_key_env(agent: str) -> str:
    """Env var `deploy render` reads an agent's client keys from, e.g. AGENTDEPLOY_KEY_INTAKE."""
    return CLIENT_KEY_ENV_PREFIX + env_suffix(agent)


def vllm_key_env(agent: str) -> str:
    """Env var the gateway finds this agent's vLLM key in, e.g. VLLM_API_KEY_TICKET_ROUTER:
    one key per fleet, so a node can only ever read its own."""
    return VLLM_KEY_ENV + "_" + env_suffix(agent)


def tag_filters(stack: str, role: str | None = None) -> list[dict[str, str | list[str]]]:
    """EC2/Auto Scaling tag filters selecting a stack's resources (and one role of them)."""
    filters: list[dict[str, str | list[str]]] = [{"Name": f"tag:{TAG_STACK}", "Values": [stack]}]
    if role is not None:
        filters.append({"Name": f"tag:{TAG_ROLE}", "Values": [role]})
    return filters
