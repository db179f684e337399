"""A self-hosted agent's GPU fleet, mapped field by field from its FleetPlan.

Launch template (GPU AMI, cloud-init user data from templates/), an instance role that can
read exactly this agent's secrets and publish metrics in our namespace, an Auto Scaling group
with a mixed-instances policy (on-demand base and percentage from the plan, spot spread over
several instance types and zones, capacity rebalance), and two standalone lifecycle hooks:
`ready` holds a launching instance out of service until the node reports vLLM healthy (no
guessed grace period), `drain` holds a terminating one until it has drained. A launch template
change rolls the group (instance refresh). Scaling and health alarms: fleet_scaling.py.
"""

from __future__ import annotations

import math
import zlib

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import (
    METRIC_NAMESPACE,
    NODE_HEALTH_PORT,
    ROLE_GPU_FLEET,
    VLLM_KEY_ENV,
    VLLM_PORT,
)
from agentdeploy.planner.plan import AgentPlan, FleetPlan
from agentdeploy.serving.node.drain import HOOK_HEARTBEAT_EXTRA_S
from agentdeploy.stacks.common import (
    assume_role_policy,
    policy_json,
    put_metrics_statement,
    read_secrets_statement,
    short_name,
    tags,
)
from agentdeploy.stacks.components.fleet_fallback import OnDemandFallback, create_hook
from agentdeploy.stacks.components.fleet_scaling import FleetScaling
from agentdeploy.stacks.components.node_artifacts import NodeArtifacts
from agentdeploy.stacks.node_volume import NodeVolume
from agentdeploy.stacks.scaling_rules import (
    DRAIN_HOOK,
    READY_HOOK,
    TARGET_HEALTH_INTERVAL_S,
    TARGET_HEALTH_TIMEOUT_S,
    TARGET_HEALTHY_THRESHOLD,
    TARGET_UNHEALTHY_THRESHOLD,
    fleet_rules,
)
from agentdeploy.templates.gpu_node import HF_TOKEN_ENV, GpuNodeSpec, encode_user_data, render_user_data
from agentdeploy.templates.vllm_args import SPOT_NOTICE_S

LISTENER_PORT_BASE = 20000
#: Health check grace after the ready hook completed: the node was already healthy.
GRACE_AFTER_READY_S = 120
#: ELB target group names: at most 32 characters.
ELB_NAME_MAX = 32
LISTENER_PORT_SPAN = 10000


def listener_ports(agents: list[str]) -> dict[str, int]:
    """A stable listener port per GPU agent on the shared internal load balancer.

    Derived from the agent's name (not its position), so adding or removing an agent never
    moves another agent's port and never re-renders the gateway's upstreams for it.
    """
    ports: dict[str, int] = {}
    used: set[int] = set()
    for agent in sorted(agents):
        port = LISTENER_PORT_BASE + zlib.crc32(agent.encode()) % LISTENER_PORT_SPAN
        while port in used:
            port = LISTENER_PORT_BASE + (port - LISTENER_PORT_BASE + 1) % LISTENER_PORT_SPAN
        used.add(port)
        ports[agent] = port
    return ports


def deregistration_delay_s(fleet: FleetPlan) -> int:
    """How long the load balancer keeps a draining node's connections open after it leaves the
    target group: past the end of the node's drain, so no request is cut while vLLM may still
    finish it. The node agent deregisters when its drain starts and lets vLLM run until the
    drain's deadline (less a margin): the spot notice's two minutes, or for a scale-in its
    drain budget, vLLM's shutdown timeout plus the agent's allowance before SIGTERM and for the
    lifecycle hook (HOOK_HEARTBEAT_EXTRA_S). The later of the two is the delay (AWS allows up
    to 3600 s; vllm_args caps the shutdown timeout well below)."""
    return math.ceil(max(SPOT_NOTICE_S, fleet.shutdown_timeout_s + HOOK_HEARTBEAT_EXTRA_S))


def target_group_name(stack: str, agent: str) -> str:
    """A fleet's target group name within ELB's 32 characters (agent names go up to 40)."""
    return short_name(f"ad-{stack}-{agent}", ELB_NAME_MAX)


def mixed_instances_policy(fleet: FleetPlan, launch_template_id: pulumi.Input[str],
                           version: pulumi.Input[str] = "$Latest") -> aws.autoscaling.GroupMixedInstancesPolicyArgsDict:
    """The ASG's mixed-instances policy, every number straight from the plan. `version` is the
    launch template's own version number, so a new version changes the group and starts an
    instance refresh ("$Latest" would not)."""
    types = [fleet.instance_type] + [t for t in fleet.instance_types if t != fleet.instance_type]
    return {
        "instances_distribution": {
            "on_demand_base_capacity": fleet.on_demand_base_capacity,
            "on_demand_percentage_above_base_capacity": fleet.on_demand_percentage_above_base,
            "spot_allocation_strategy": fleet.spot_allocation_strategy,
            "on_demand_allocation_strategy": "prioritized",
        },
        "launch_template": {
            "launch_template_specification": {"launch_template_id": launch_template_id, "version": version},
            "overrides": [{"instance_type": t} for t in types],
        },
    }


def drain_policy_document(asg_arns: list[str], target_group_arn: str) -> str:
    """What a node needs to enter service and to drain: leave its target group, complete its
    lifecycle hooks (in the spot group or the on-demand standby)."""
    return policy_json([
        {"Effect": "Allow", "Action": "elasticloadbalancing:DeregisterTargets", "Resource": [target_group_arn]},
        {"Effect": "Allow", "Action": "autoscaling:CompleteLifecycleAction", "Resource": sorted(asg_arns)},
    ])


def node_policy_document(secret_arns: list[str], wheel_object_arn: str, log_group_arn: str) -> str:
    """The node role's own permissions: read its own secrets and the node agent's wheel,
    publish our metrics, write its fleet's log streams. (Session Manager's are AWS's managed
    policy, attached beside.)"""
    return policy_json([read_secrets_statement(secret_arns), put_metrics_statement(METRIC_NAMESPACE),
                        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": [wheel_object_arn]},
                        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:DescribeLogStreams",
                                                       "logs:PutLogEvents"],
                         "Resource": [f"{log_group_arn.removesuffix(':*')}:log-stream:*"]}])


#: AWS's managed policy for Session Manager access (no SSH, no open port).
SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"


class FleetLoadBalancer(pulumi.ComponentResource):
    """One internal ALB for all GPU fleets of the stack; only the gateway may reach it."""

    def __init__(self, name: str, stack: str, vpc_id: pulumi.Input[str], subnet_ids: pulumi.Input[list[str]],
                 gateway_sg_id: pulumi.Input[str], ports: dict[str, int], opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:fleet:FleetLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lb_name = f"agentdeploy-{stack}-fleets"
        #: The gateway's tasks also reach each node directly (they discover and route to nodes).
        self.gateway_sg_id = gateway_sg_id
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=vpc_id, description="agentdeploy: internal load balancer of the GPU fleets",
            ingress=[{"protocol": "tcp", "from_port": p, "to_port": p, "security_groups": [gateway_sg_id],
                      "description": f"gateway to fleet {a}"} for a, p in sorted(ports.items())],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=tags(stack, f"{lb_name}-sg", role=ROLE_GPU_FLEET), opts=child,
        )
        self.lb = aws.lb.LoadBalancer(
            f"{name}-alb", internal=True, load_balancer_type="application", subnets=subnet_ids,
            security_groups=[self.security_group.id], idle_timeout=600,
            tags=tags(stack, lb_name, role=ROLE_GPU_FLEET), opts=child,
        )
        self.dns_name = self.lb.dns_name
        self.register_outputs({"dns_name": self.dns_name})


class GpuFleet(pulumi.ComponentResource):
    asg_name: pulumi.Output[str]
    endpoint: pulumi.Output[str]

    def __init__(self, name: str, stack: str, region: str, agent: AgentPlan, *, vpc_id: pulumi.Input[str],
                 private_subnet_ids: pulumi.Input[list[str]], balancer: FleetLoadBalancer, listener_port: int,
                 ami_id: pulumi.Input[str], vllm_key_arn: pulumi.Output[str], hf_token_arn: pulumi.Output[str] | None,
                 volume: NodeVolume, engine_image: str, artifacts: NodeArtifacts,
                 alert_topic_arn: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:fleet:GpuFleet", name, None, opts)
        assert agent.fleet is not None, f"agent {agent.name} has no fleet in the plan"
        fleet = agent.fleet
        child = pulumi.ResourceOptions(parent=self)
        base = f"agentdeploy-{stack}-{agent.name}"
        t = lambda n: tags(stack, n, agent=agent.name, role=ROLE_GPU_FLEET)  # noqa: E731

        # --- identity: exactly this agent's secrets, and metrics in our namespace -------------
        secret_arns = [vllm_key_arn] + ([hf_token_arn] if hf_token_arn is not None else [])
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
                                 description=f"agentdeploy GPU node of {stack}/{agent.name}", tags=t(f"{base}-node"), opts=child)
        # Node logs (cloud-init, vLLM, node agent, readiness), one stream per instance and file.
        self.log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/agentdeploy/{stack}/{agent.name}/nodes",
                                                 retention_in_days=30, tags=t(f"{base}-logs"), opts=child)
        aws.iam.RolePolicy(f"{name}-policy", role=self.role.id,
                           policy=pulumi.Output.all(artifacts.object_arn, self.log_group.arn, *secret_arns).apply(
                               lambda v: node_policy_document(list(v[2:]), v[0], v[1])),
                           opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-ssm", role=self.role.name, policy_arn=SSM_CORE_POLICY, opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, tags=t(f"{base}-node"), opts=child)

        # --- network: nodes take traffic only from the fleets' internal load balancer ---------
        node_sg = aws.ec2.SecurityGroup(
            f"{name}-node-sg", vpc_id=vpc_id, description=f"agentdeploy: GPU nodes of {agent.name}",
            ingress=[
                {"protocol": "tcp", "from_port": VLLM_PORT, "to_port": VLLM_PORT,
                 "security_groups": [balancer.security_group.id, balancer.gateway_sg_id],
                 "description": "vLLM from the fleet load balancer and the gateway"},
                {"protocol": "tcp", "from_port": NODE_HEALTH_PORT, "to_port": NODE_HEALTH_PORT,
                 "security_groups": [balancer.security_group.id, balancer.gateway_sg_id],
                 "description": "node agent /healthz (load balancer and gateway checks)"},
            ],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=t(f"{base}-node"), opts=child,
        )

        # --- launch template: user data holds ARNs, never values ------------------------------
        # The target group exists before the launch template so the node agent knows what to
        # drain from; the ASG's name is fixed (`base`), so nothing here waits on the group.
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg", name=target_group_name(stack, agent.name), port=VLLM_PORT, protocol="HTTP", target_type="instance", vpc_id=vpc_id,
            deregistration_delay=deregistration_delay_s(fleet),
            health_check={"enabled": True, "path": "/healthz", "port": str(NODE_HEALTH_PORT), "protocol": "HTTP",
                          "matcher": "200", "interval": TARGET_HEALTH_INTERVAL_S, "timeout": TARGET_HEALTH_TIMEOUT_S,
                          "healthy_threshold": TARGET_HEALTHY_THRESHOLD,
                          "unhealthy_threshold": TARGET_UNHEALTHY_THRESHOLD},
            tags=t(f"{base}-tg"), opts=child,
        )
        refs = {VLLM_KEY_ENV: vllm_key_arn}
        if hf_token_arn is not None:
            refs[HF_TOKEN_ENV] = hf_token_arn
        names = list(refs)
        wheel = artifacts.wheel
        user_data = pulumi.Output.all(self.target_group.arn, artifacts.bucket_name, *refs.values()).apply(
            lambda v: encode_user_data(render_user_data(GpuNodeSpec(
                stack=stack, agent=agent.name, region=region, fleet=fleet, secret_refs=dict(zip(names, v[2:], strict=True)),
                engine_image=engine_image, node_wheel_bucket=v[1], node_wheel_key=wheel.key,
                node_wheel_sha256=wheel.sha256, log_group=f"/agentdeploy/{stack}/{agent.name}/nodes",
                # No group name: a node is in the spot group or the on-demand standby, and reads
                # which from its instance tags (IMDS) before completing a hook.
                target_group_arn=v[0], asg_name="", lifecycle_hook=DRAIN_HOOK, ready_hook=READY_HOOK,
            )))
        )
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt", name_prefix=f"{base}-", image_id=ami_id, instance_type=fleet.instance_type,
            user_data=user_data, iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[node_sg.id], update_default_version=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 2, "instance_metadata_tags": "enabled"},
            block_device_mappings=[{"device_name": "/dev/sda1", "ebs": {
                "volume_size": volume.size_gb, "volume_type": "gp3", "throughput": volume.throughput_mibps,
                "iops": volume.iops, "encrypted": "true", "delete_on_termination": "true"}}],
            tag_specifications=[{"resource_type": "instance", "tags": t(f"{base}-node")},
                                {"resource_type": "volume", "tags": t(f"{base}-node")}],
            tags=t(f"{base}-lt"), opts=child,
        )

        # --- traffic: the target group's health check is the node agent's /healthz, which fails
        # until the model has loaded and while the node drains. A loading node is held in
        # Pending:Wait by the ready hook, so it is neither registered nor health-checked yet.
        aws.lb.Listener(f"{name}-listener", load_balancer_arn=balancer.lb.arn, port=listener_port, protocol="HTTP",
                        default_actions=[{"type": "forward", "target_group_arn": self.target_group.arn}],
                        tags=t(f"{base}-listener"), opts=child)

        # --- the group -----------------------------------------------------------------------
        group_tags: list[aws.autoscaling.GroupTagArgsDict] = [
            {"key": k, "value": v, "propagate_at_launch": True} for k, v in t(f"{base}-node").items()]
        rules = fleet_rules(fleet)
        self.asg = aws.autoscaling.Group(
            f"{name}-asg", name=base, min_size=fleet.min_replicas, max_size=fleet.max_replicas,
            vpc_zone_identifiers=private_subnet_ids, target_group_arns=[self.target_group.arn],
            health_check_type="ELB", health_check_grace_period=GRACE_AFTER_READY_S,
            default_instance_warmup=GRACE_AFTER_READY_S,
            capacity_rebalance=True, wait_for_capacity_timeout="0",
            mixed_instances_policy=mixed_instances_policy(
                fleet, self.launch_template.id, self.launch_template.latest_version.apply(str)),
            # A new launch template version (AMI, user data) replaces running nodes in turn,
            # keeping half the fleet serving; the ready hook gates each replacement.
            instance_refresh={"strategy": "Rolling", "preferences": {
                "min_healthy_percentage": 50, "instance_warmup": str(GRACE_AFTER_READY_S),
                "skip_matching": True}},
            enabled_metrics=[aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY, aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES,
                             aws.autoscaling.Metric.GROUP_PENDING_INSTANCES],
            metrics_granularity="1Minute",
            tags=group_tags,
            # desired capacity belongs to the autoscaler and the reaper, not to `deploy up`
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]),
        )
        self.asg_name = self.asg.name
        # Standalone hooks (not initial_lifecycle_hooks, which reach a group only at creation),
        # so a change to either reaches the existing group.
        self.ready_hook = create_hook(rules.hook(READY_HOOK), f"{name}-ready-hook", self.asg.name, child)
        self.drain_hook = create_hook(rules.hook(DRAIN_HOOK), f"{name}-drain-hook", self.asg.name, child)
        self.fallback = OnDemandFallback(
            name, agent.name, fleet, main_group=base, launch_template=self.launch_template,
            subnet_ids=private_subnet_ids, target_group=self.target_group, group_tags=group_tags, rules=rules,
            grace_s=GRACE_AFTER_READY_S, alarm_tags=t(f"{base}-spot-starved"), parent=self)
        # Readiness and draining need two more calls, each on this fleet's own resources only.
        aws.iam.RolePolicy(f"{name}-drain-policy", role=self.role.id,
                           policy=pulumi.Output.all(self.asg.arn, self.fallback.group.arn, self.target_group.arn).apply(
                               lambda a: drain_policy_document([a[0], a[1]], a[2])), opts=child)
        scaling = FleetScaling(f"{name}-scaling", stack, agent.name, fleet, asg=self.asg, asg_name=base,
                               target_group=self.target_group, balancer=balancer.lb, alert_topic_arn=alert_topic_arn,
                               rules=rules, parent=self)
        self.scaling = scaling
        #: Base URL of the fleet's OpenAI-compatible API (the gateway appends /v1/...).
        self.endpoint = pulumi.Output.concat("http://", balancer.dns_name, f":{listener_port}")
        self.register_outputs({"asg_name": self.asg_name, "endpoint": self.endpoint})

