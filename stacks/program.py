"""The Pulumi program: a Plan in, resources out. It maps plan fields to resources and never
re-decides anything (the planner did).

The plan is the reviewed plan file when there is one (`agentdeploy:planFile`, else
`<decision file stem>.plan.json` beside the decision file), refused when its decision file or
catalog changed since it was written; without one, the decision file is planned here.

`main()` is what `stacks/__main__.py` runs under `pulumi up` (ours or a pipeline's); tests
call `build_stack()` directly under Pulumi's mock runtime with a Plan they construct.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pulumi

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import ANTHROPIC_KEY_ENV, CONFIG_ANTHROPIC_KEY, vllm_key_env
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Plan
from agentdeploy.stacks.settings import NAMESPACE, ProvisionSettings, parse_settings

if TYPE_CHECKING:
    from agentdeploy.stacks.components.alerts import Alerts
    from agentdeploy.stacks.components.secrets import SecretInputs, StackSecrets

#: Secret config keys (set with `pulumi config set --secret`), besides CONFIG_ANTHROPIC_KEY.
CONFIG_CLIENT_KEYS = f"{NAMESPACE}:gatewayClientKeys"
CONFIG_HF_TOKEN = f"{NAMESPACE}:huggingFaceToken"


def load_plan(decision_file: Path, stack: str, plan_file: Path | None = None) -> tuple[Plan, Catalog]:
    """The reviewed plan file's plan (checked fresh), else the decision file planned exactly as
    `deploy plan` plans it; the Pulumi stack's name is the plan's stack, so tags, metric
    dimensions and the gateway agree with `--stack`."""
    from agentdeploy.planner.planfile import reviewed_plan

    plan, catalog = reviewed_plan(decision_file, plan_file)
    return plan.model_copy(update={"stack": stack}), catalog


@dataclass
class StackResult:
    """What the program built, for exports and for tests to inspect."""

    outputs: dict[str, Any] = field(default_factory=dict)
    components: dict[str, pulumi.Resource] = field(default_factory=dict)


def build_stack(plan: Plan, catalog: Catalog, settings: ProvisionSettings, secrets: SecretInputs) -> StackResult:
    """Resources for the plan. Without a gateway (the planner's call for a small API-only stack)
    there is nothing to network either: no VPC, NAT, load balancer, budget store or image; the
    stack is the Anthropic key's secret, each agent's config in SSM, and the alerts."""
    from agentdeploy.stacks.components.alerts import Alerts
    from agentdeploy.stacks.components.api_agent import ApiAgent
    from agentdeploy.stacks.components.secrets import StackSecrets
    from agentdeploy.stacks.gated import require_token

    stack = plan.stack
    result = StackResult()
    gpu_agents = [a for a in plan.agents if a.route == "gpu"]
    with_gateway = plan.deploys_gateway
    if gpu_agents and not with_gateway:
        raise InvalidInput(
            f"stack {stack}: the plan has GPU agents ({', '.join(a.name for a in gpu_agents)}) but no gateway",
            hint="a fleet needs the gateway (fallback, spill): drop `stack.gateway: false` and plan again")
    require_token(catalog, gpu_agents, secrets.hugging_face_token is not None, stack)
    stored = StackSecrets("secrets", stack, secrets, [a.name for a in gpu_agents])
    alerts = Alerts("alerts", plan, activate_cost_allocation_tag=settings.activate_cost_allocation_tag)
    result.components.update(secrets=stored, alerts=alerts)
    api_agents: dict[str, ApiAgent] = {}
    for agent in plan.agents:
        if agent.route != "gpu":
            api_agents[agent.name] = ApiAgent(f"agent-{agent.name}", stack, agent, stored.anthropic_key_arn)
            result.components[f"agent-{agent.name}"] = api_agents[agent.name]
    result.outputs = {
        "alertTopicArn": alerts.topic_arn,
        "routes": {a.name: a.route for a in plan.agents},
        # where each API agent's rendered config lives: what a client reads to call Claude
        "agentConfigs": {name: f"ssm:{a.parameter_name}" for name, a in api_agents.items()},
    }
    if not with_gateway:
        result.outputs.update(gatewayUrl=None, agentEndpoints={}, fleets={}, gateway=NO_GATEWAY_EXPORT)
        return result
    _build_gateway(plan, catalog, settings, secrets, stored, alerts, result)
    return result


#: The `gateway` export of a gateway-less stack: what clients do instead.
NO_GATEWAY_EXPORT = (
    "none: clients call Claude directly with each agent's config (agentConfigs: SSM parameters); spend alarms read "
    "SpendUSDDay, published by `deploy spend publish` from the Usage and Cost API; no run-time budget enforcement, "
    "no fallback"
)


def _build_gateway(plan: Plan, catalog: Catalog, settings: ProvisionSettings, secrets: SecretInputs,
                   stored: StackSecrets, alerts: Alerts, result: StackResult) -> None:
    """The network, the gateway (service, image, load balancer, budget store) and the fleets."""
    from agentdeploy.stacks.components.budget_store import SharedBudgetStore
    from agentdeploy.stacks.components.gateway import GatewayService
    from agentdeploy.stacks.components.gpu_fleet import FleetLoadBalancer, GpuFleet, listener_ports
    from agentdeploy.stacks.components.network import Network
    from agentdeploy.stacks.gated import gated_agents
    from agentdeploy.stacks.node_volume import node_volume
    from agentdeploy.templates.gateway import BUDGET_STORE_ENV, gateway_config_yaml, parse_client_keys
    from agentdeploy.templates.gateway_config import FleetRefs

    stack = plan.stack
    settings.check_gateway_edge(where=f"stack {stack}")
    gpu_agents = [a for a in plan.agents if a.route == "gpu"]
    needs_token = {a.name for a in gated_agents(catalog, gpu_agents)}
    network = Network("network", stack, settings)
    gateway = GatewayService("gateway", stack, plan.region, settings, vpc_id=network.vpc_id,
                             public_subnet_ids=network.public_subnet_ids, private_subnet_ids=network.private_subnet_ids)
    budget_store = SharedBudgetStore("budget-store", stack, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
                               client_sg_id=gateway.security_group_id, node_type=settings.budget_store_node_type)
    result.components.update(network=network, gateway=gateway, budget_store=budget_store)
    if settings.plain_http_exposed():
        pulumi.log.warn(PLAIN_HTTP_WARNING)

    endpoints: dict[str, pulumi.Output] = {a.name: agent_endpoint(gateway.url, a.name) for a in plan.agents}

    fleets: dict[str, GpuFleet] = {}
    if gpu_agents:
        ports = listener_ports([a.name for a in gpu_agents])
        balancer = FleetLoadBalancer("fleets", stack, network.vpc_id, network.private_subnet_ids,
                                     gateway.security_group_id, ports)
        ami_id = _gpu_ami(settings)
        from agentdeploy.stackconfig import find_project_root
        from agentdeploy.stacks.components.node_artifacts import NodeArtifacts, resolve_wheel

        artifacts = NodeArtifacts("node-artifacts", stack, resolve_wheel(settings.node_wheel, find_project_root()))
        result.components["node-artifacts"] = artifacts
        for agent in gpu_agents:
            fleet = GpuFleet(
                f"fleet-{agent.name}", stack, plan.region, agent, vpc_id=network.vpc_id,
                private_subnet_ids=network.private_subnet_ids, balancer=balancer, listener_port=ports[agent.name],
                ami_id=ami_id, vllm_key_arn=stored.vllm_key_arns[agent.name],
                # The token only where the weights are gated.
                hf_token_arn=stored.hf_token_arn if agent.name in needs_token else None,
                volume=node_volume(catalog, agent.fleet, settings.gpu_root_volume_gb),
                engine_image=settings.vllm_image or catalog.engine_image.reference, artifacts=artifacts, alert_topic_arn=alerts.topic_arn,
            )
            result.components[f"fleet-{agent.name}"] = fleets[agent.name] = fleet

    # The gateway's container gets secrets injected by ARN; client keys reach its config only
    # as SHA-256 hashes of random keys, which is safe to show, so the config is unsecreted:
    # previews then show config changes as readable diffs of the task definition.
    secret_env = {ANTHROPIC_KEY_ENV: stored.anthropic_key_arn, BUDGET_STORE_ENV: budget_store.url_secret_arn}
    for agent in gpu_agents:
        secret_env[vllm_key_env(agent.name)] = stored.vllm_key_arns[agent.name]
    # The gateway finds each fleet's nodes from its target group and routes to them directly,
    # and wakes its group from zero (the fleets' internal load balancer stays: its health checks
    # are the target group's, which the group's ELB health check and the drain's deregistration use).
    names = list(fleets)
    refs = [pulumi.Output.all(f.asg_name, f.target_group.arn) for f in fleets.values()]
    client_keys = secrets.gateway_client_keys if secrets.gateway_client_keys is not None else pulumi.Output.from_input("")
    config_yaml = pulumi.Output.all(client_keys, *refs).apply(
        lambda v: gateway_config_yaml(plan, catalog, {n: FleetRefs(asg_name=r[0], target_group_arn=r[1]) for n, r in zip(names, v[1:], strict=True)},
                                      parse_client_keys(v[0]), shared_budget_store=True))
    config_yaml = pulumi.Output.unsecret(config_yaml)
    image: pulumi.Input[str]
    if settings.gateway_image:
        image = settings.gateway_image
    else:
        from agentdeploy.stackconfig import find_project_root
        from agentdeploy.stacks.components.gateway_image import GatewayImage

        built = GatewayImage("gateway-image", stack, find_project_root())
        result.components["gateway-image"] = built
        image = built.ref
    gateway.deploy_service(config_yaml, secret_env, image, fleet_group_arns=[f.asg.arn for f in fleets.values()])

    result.outputs.update({
        "gatewayUrl": gateway.url,
        "agentEndpoints": pulumi.Output.all(**endpoints) if endpoints else {},
        "fleets": pulumi.Output.all(**{name: fleet.asg_name for name, fleet in fleets.items()}) if fleets else {},
        "gateway": "deployed",
    })


PLAIN_HTTP_WARNING = (
    f"{NAMESPACE}:gatewayPlainHttp is true: the gateway's internet-facing load balancer serves plain HTTP, so "
    "client keys and prompts cross the internet in clear text. Set certificateArn and gatewayDomain for HTTPS, "
    "or gatewayScheme: internal."
)


def agent_endpoint(gateway_url: pulumi.Input[str], agent: str) -> pulumi.Output[dict[str, str]]:
    """How a client reaches an agent: the gateway's base URLs (the Anthropic SDK appends /v1,
    the OpenAI SDK does not) and the agent's name as the request's `model`."""
    return pulumi.Output.from_input(gateway_url).apply(lambda url: {
        "anthropicBaseUrl": url, "openaiBaseUrl": f"{url}/v1", "model": agent})


def _gpu_ami(settings: ProvisionSettings) -> pulumi.Input[str]:
    if settings.gpu_ami_id:
        return settings.gpu_ami_id
    import pulumi_aws as aws

    # AWS's public parameter, resolved on every deploy: a new DLAMI release changes the launch
    # template, which rolls the fleets (instance refresh).
    return aws.ssm.get_parameter(name=settings.gpu_ami_parameter).value


# --- reading the stack config --------------------------------------------------------------

def read_settings(config: pulumi.Config) -> ProvisionSettings:
    """Every non-secret agentdeploy:* key, JSON-decoded where it is a list."""
    values: dict[str, Any] = {}
    for name, info in ProvisionSettings.model_fields.items():
        key = info.alias or name
        raw = config.get(key)
        if raw is None:
            continue
        if str(info.annotation).startswith("list"):
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                raise InvalidInput(f"{NAMESPACE}:{key} must be a list, got {raw!r}",
                                   hint=f"in the stack config write `{NAMESPACE}:{key}: [a, b]`") from None
        else:
            values[key] = raw
    return parse_settings(values, where=f"stack {pulumi.get_stack()}")


def read_secrets(config: pulumi.Config) -> SecretInputs:
    from agentdeploy.stacks.components.secrets import SecretInputs

    key = CONFIG_ANTHROPIC_KEY.split(":", 1)[1]
    anthropic = config.get_secret(key)
    if anthropic is None:
        raise InvalidInput(
            f"stack {pulumi.get_stack()} has no {CONFIG_ANTHROPIC_KEY}",
            hint=f"pulumi config set --secret {CONFIG_ANTHROPIC_KEY} <key> --stack {pulumi.get_stack()}",
        )
    return SecretInputs(
        anthropic_api_key=anthropic,
        gateway_client_keys=config.get_secret(CONFIG_CLIENT_KEYS.split(":", 1)[1]),
        hugging_face_token=config.get_secret(CONFIG_HF_TOKEN.split(":", 1)[1]),
    )


def check_region(plan: Plan) -> None:
    region = pulumi.Config("aws").get("region")
    if region and region != plan.region:
        raise InvalidInput(
            f"stack {plan.stack}: aws:region is {region} but the decision file's plan says {plan.region}",
            hint=f"set `aws:region: {plan.region}` in the stack config, or change the decision file's region",
        )


def main() -> None:
    """Run under the Pulumi engine; a user mistake becomes one RunError line, not a traceback."""
    from agentdeploy.errors import DeployError

    try:
        _main()
    except DeployError as err:
        raise pulumi.RunError(err.render()) from None


def _project_path(value: str) -> Path:
    """A stack config path: relative to the project root (the folder with Pulumi.yaml)."""
    from agentdeploy.stackconfig import find_project_root

    path = Path(value)
    return path if path.is_absolute() else find_project_root() / path


def _main() -> None:
    config = pulumi.Config(NAMESPACE)
    settings = read_settings(config)
    decision = _project_path(settings.decision_file)
    plan_file = _project_path(settings.plan_file) if settings.plan_file else None
    plan, catalog = load_plan(decision, pulumi.get_stack(), plan_file)
    check_region(plan)
    result = build_stack(plan, catalog, settings, read_secrets(config))
    for key, value in result.outputs.items():
        pulumi.export(key, value)

