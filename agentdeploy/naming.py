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
METRIC_DEMAND = "Demand"
#: Requests waiting in vLLM's queue, per instance (target-tracking signal).
METRIC_QUEUE_DEPTH = "QueueDepth"
#: Requests in flight on one replica.
METRIC_IN_FLIGHT = "InFlight"
#: Spend the gateway has accounted, USD, per agent.
METRIC_SPEND_USD = "SpendUSD"
DIM_STACK = "Stack"
DIM_AGENT = "Agent"

#: Pulumi stack config key naming the stack's decision file (relative to the project root).
CONFIG_DECISION_FILE = "agentdeploy:decisionFile"
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
