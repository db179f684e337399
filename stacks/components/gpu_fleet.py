"""A self-hosted agent's GPU fleet, mapped field by field from its FleetPlan.

Launch template (GPU AMI by filter, cloud-init user data from templates/), an instance role
that can read exactly this agent's secrets and publish metrics in our namespace, an Auto
Scaling group with a mixed-instances policy (on-demand base and percentage from the plan,
spot spread over several instance types and zones, capacity rebalance), a target group whose
health check lets the model load, target tracking on per-replica demand, and two alarms that
work without any laptop running: wake from zero when the gateway reports demand, and scale to
zero after the plan's idle window.
"""

from __future__ import annotations

import base64
import math
import zlib

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import (
    DIM_AGENT,
    DIM_STACK,
    METRIC_DEMAND,
    METRIC_NAMESPACE,
    NODE_HEALTH_PORT,
    ROLE_GPU_FLEET,
    VLLM_KEY_ENV,
    VLLM_PORT,
)
from agentdeploy.planner.plan import AgentPlan, FleetPlan
from agentdeploy.stacks.common import (
    assume_role_policy,
    policy_json,
    put_metrics_statement,
    read_secrets_statement,
    tags,
)
from agentdeploy.templates.gpu_node import HF_TOKEN_ENV, GpuNodeSpec, render_user_data

LISTENER_PORT_BASE = 20000
#: The terminating lifecycle hook the node agent completes after draining.
DRAIN_HOOK = "drain"
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


def health_check_grace_s(cold_start_s: float) -> int:
    """Seconds the ASG waits before acting on a failing health check: the plan's cold-start
    estimate plus half again (weights download speed varies), at least five minutes."""
    return max(300, math.ceil(cold_start_s * 1.5))


def mixed_instances_policy(fleet: FleetPlan, launch_template_id: pulumi.Input[str]) -> aws.autoscaling.GroupMixedInstancesPolicyArgsDict:
    """The ASG's mixed-instances policy, every number straight from the plan."""
    types = [fleet.instance_type] + [t for t in fleet.instance_types if t != fleet.instance_type]
    return {
        "instances_distribution": {
            "on_demand_base_capacity": fleet.on_demand_base_capacity,
            "on_demand_percentage_above_base_capacity": fleet.on_demand_percentage_above_base,
            "spot_allocation_strategy": fleet.spot_allocation_strategy,
            "on_demand_allocation_strategy": "prioritized",
        },
        "launch_template": {
            "launch_template_specification": {"launch_template_id": launch_template_id, "version": "$Latest"},
            "overrides": [{"instance_type": t} for t in types],
        },
    }


def demand_dimensions(stack: str, agent: str) -> dict[str, str]:
    return {DIM_STACK: stack, DIM_AGENT: agent}


def drain_policy_document(asg_arn: str, target_group_arn: str) -> str:
    """What the node agent needs to drain: leave its target group, finish its lifecycle hook."""
    return policy_json([
        {"Effect": "Allow", "Action": "elasticloadbalancing:DeregisterTargets", "Resource": [target_group_arn]},
        {"Effect": "Allow", "Action": "autoscaling:CompleteLifecycleAction", "Resource": [asg_arn]},
    ])


def node_policy_document(secret_arns: list[str]) -> str:
    """The node role's only permissions: read its own secrets, publish our metrics."""
    return policy_json([read_secrets_statement(secret_arns), put_metrics_statement(METRIC_NAMESPACE)])


class FleetLoadBalancer(pulumi.ComponentResource):
    """One internal ALB for all GPU fleets of the stack; only the gateway may reach it."""

    def __init__(self, name: str, stack: str, vpc_id: pulumi.Input[str], subnet_ids: pulumi.Input[list[str]],
                 gateway_sg_id: pulumi.Input[str], ports: dict[str, int], opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:fleet:FleetLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        lb_name = f"agentdeploy-{stack}-fleets"
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=vpc_id, description="agentdeploy: GPU fleets' internal load balancer",
            ingress=[{"protocol": "tcp", "from_port": p, "to_port": p, "security_groups": [gateway_sg_id],
                      "description": f"gateway -> fleet {a}"} for a, p in sorted(ports.items())],
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
                 root_volume_gb: int, vllm_requirement: str,
                 node_requirement: str, opts: pulumi.ResourceOptions | None = None):
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
        aws.iam.RolePolicy(f"{name}-policy", role=self.role.id,
                           policy=pulumi.Output.all(*secret_arns).apply(lambda arns: node_policy_document(list(arns))),
                           opts=child)
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, tags=t(f"{base}-node"), opts=child)

        # --- network: nodes take traffic only from the fleets' internal load balancer ---------
        node_sg = aws.ec2.SecurityGroup(
            f"{name}-node-sg", vpc_id=vpc_id, description=f"agentdeploy: GPU nodes of {agent.name}",
            ingress=[
                {"protocol": "tcp", "from_port": VLLM_PORT, "to_port": VLLM_PORT,
                 "security_groups": [balancer.security_group.id], "description": "vLLM from the fleet load balancer"},
                {"protocol": "tcp", "from_port": NODE_HEALTH_PORT, "to_port": NODE_HEALTH_PORT,
                 "security_groups": [balancer.security_group.id], "description": "node agent /healthz"},
            ],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=t(f"{base}-node"), opts=child,
        )

        # --- launch template: user data holds ARNs, never values ------------------------------
        # The target group exists before the launch template so the node agent knows what to
        # drain from; the ASG's name is fixed (`base`), so nothing here waits on the group.
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg", port=VLLM_PORT, protocol="HTTP", target_type="instance", vpc_id=vpc_id,
            deregistration_delay=fleet.shutdown_timeout_s,
            health_check={"enabled": True, "path": "/healthz", "port": str(NODE_HEALTH_PORT), "protocol": "HTTP",
                          "matcher": "200", "interval": 15, "timeout": 5, "healthy_threshold": 2,
                          "unhealthy_threshold": 3},
            tags=t(f"{base}-tg"), opts=child,
        )
        refs = {VLLM_KEY_ENV: vllm_key_arn}
        if hf_token_arn is not None:
            refs[HF_TOKEN_ENV] = hf_token_arn
        names = list(refs)
        user_data = pulumi.Output.all(self.target_group.arn, *refs.values()).apply(
            lambda v: base64.b64encode(render_user_data(GpuNodeSpec(
                stack=stack, agent=agent.name, region=region, fleet=fleet, secret_refs=dict(zip(names, v[1:], strict=True)),
                vllm_requirement=vllm_requirement, node_requirement=node_requirement,
                target_group_arn=v[0], asg_name=base, lifecycle_hook=DRAIN_HOOK,
            )).encode()).decode()
        )
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt", name_prefix=f"{base}-", image_id=ami_id, instance_type=fleet.instance_type,
            user_data=user_data, iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[node_sg.id], update_default_version=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required",
                              "http_put_response_hop_limit": 2, "instance_metadata_tags": "enabled"},
            block_device_mappings=[{"device_name": "/dev/sda1", "ebs": {
                "volume_size": root_volume_gb, "volume_type": "gp3", "encrypted": "true", "delete_on_termination": "true"}}],
            tag_specifications=[{"resource_type": "instance", "tags": t(f"{base}-node")},
                                {"resource_type": "volume", "tags": t(f"{base}-node")}],
            tags=t(f"{base}-lt"), opts=child,
        )

        # --- traffic: the target group's health check is the node agent's /healthz, which fails
        # until the model has loaded and while the node drains; the ASG's grace period covers
        # the cold start so a loading node is not replaced.
        aws.lb.Listener(f"{name}-listener", load_balancer_arn=balancer.lb.arn, port=listener_port, protocol="HTTP",
                        default_actions=[{"type": "forward", "target_group_arn": self.target_group.arn}],
                        tags=t(f"{base}-listener"), opts=child)

        # --- the group -----------------------------------------------------------------------
        grace = health_check_grace_s(fleet.cold_start_s)
        group_tags: list[aws.autoscaling.GroupTagArgsDict] = [
            {"key": k, "value": v, "propagate_at_launch": True} for k, v in t(f"{base}-node").items()]
        drain_hook: aws.autoscaling.GroupInitialLifecycleHookArgsDict = {
            "name": DRAIN_HOOK, "lifecycle_transition": "autoscaling:EC2_INSTANCE_TERMINATING",
            "heartbeat_timeout": fleet.shutdown_timeout_s + 30, "default_result": "CONTINUE"}
        self.asg = aws.autoscaling.Group(
            f"{name}-asg", name=base, min_size=fleet.min_replicas, max_size=fleet.max_replicas,
            vpc_zone_identifiers=private_subnet_ids, target_group_arns=[self.target_group.arn],
            health_check_type="ELB", health_check_grace_period=grace, default_instance_warmup=grace,
            capacity_rebalance=True, wait_for_capacity_timeout="0",
            mixed_instances_policy=mixed_instances_policy(fleet, self.launch_template.id),
            enabled_metrics=[aws.autoscaling.Metric.GROUP_DESIRED_CAPACITY, aws.autoscaling.Metric.GROUP_IN_SERVICE_INSTANCES],
            metrics_granularity="1Minute",
            initial_lifecycle_hooks=[drain_hook],
            tags=group_tags,
            # desired capacity belongs to the autoscaler and the reaper, not to `deploy up`
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]),
        )
        self.asg_name = self.asg.name
        # Draining needs two more calls, each on this fleet's own resources only.
        aws.iam.RolePolicy(f"{name}-drain-policy", role=self.role.id,
                           policy=pulumi.Output.all(self.asg.arn, self.target_group.arn).apply(
                               lambda a: drain_policy_document(a[0], a[1])), opts=child)
        self._scaling(name, stack, agent.name, fleet, t, base)
        #: Base URL of the fleet's OpenAI-compatible API (the gateway appends /v1/...).
        self.endpoint = pulumi.Output.concat("http://", balancer.dns_name, f":{listener_port}")
        self.register_outputs({"asg_name": self.asg_name, "endpoint": self.endpoint})

    def _scaling(self, name: str, stack: str, agent: str, fleet: FleetPlan, t, base: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        dims = demand_dimensions(stack, agent)
        demand: aws.cloudwatch.MetricAlarmMetricQueryMetricArgsDict = {
            "metric_name": METRIC_DEMAND, "namespace": METRIC_NAMESPACE, "dimensions": dims, "stat": "Maximum", "period": 60}

        # Target tracking on each replica's demand (requests waiting + running, which every
        # node agent publishes under {Stack, Agent}: the Average is the per-replica load). An
        # LLM replica saturates on concurrent sequences, not on CPU.
        self.target_tracking = aws.autoscaling.Policy(
            f"{name}-demand-tracking", autoscaling_group_name=self.asg.name, policy_type="TargetTrackingScaling",
            estimated_instance_warmup=health_check_grace_s(fleet.cold_start_s),
            target_tracking_configuration={
                "target_value": fleet.target_queue_per_replica,
                "customized_metric_specification": {
                    "namespace": METRIC_NAMESPACE, "metric_name": METRIC_DEMAND, "statistic": "Average",
                    "metric_dimensions": [{"name": k, "value": v} for k, v in dims.items()],
                },
            },
            opts=child,
        )

        # Wake from zero: demand reported while the group has no capacity. With no nodes, the
        # only publisher of Demand is the gateway (requests it had to serve elsewhere).
        self.wake_policy = aws.autoscaling.Policy(
            f"{name}-wake", autoscaling_group_name=self.asg.name, policy_type="SimpleScaling",
            adjustment_type="ExactCapacity", scaling_adjustment=max(1, fleet.min_replicas), cooldown=60, opts=child)
        self.wake_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-wake", name=f"{base}-wake-from-zero",
            alarm_description=f"{agent}: demand while the fleet is at zero -> start {max(1, fleet.min_replicas)} replica(s)",
            comparison_operator="GreaterThanOrEqualToThreshold", threshold=1, evaluation_periods=1,
            treat_missing_data="notBreaching",
            metric_queries=[
                {"id": "demand", "metric": demand, "return_data": False},
                {"id": "desired", "metric": {"metric_name": "GroupDesiredCapacity", "namespace": "AWS/AutoScaling",
                                             "dimensions": {"AutoScalingGroupName": base}, "stat": "Maximum", "period": 60},
                 "return_data": False},
                {"id": "wake", "expression": "IF(demand > 0 AND desired < 1, 1, 0)", "label": "wake", "return_data": True},
            ],
            alarm_actions=[self.wake_policy.arn], tags=t(f"{base}-wake"), opts=child,
        )

        # Scale to zero after the idle window, in the cloud: idle GPUs go away with no laptop
        # running. Missing demand data counts as idle (a silent gateway sends no traffic).
        self.idle_policy = aws.autoscaling.Policy(
            f"{name}-idle", autoscaling_group_name=self.asg.name, policy_type="SimpleScaling",
            adjustment_type="ExactCapacity", scaling_adjustment=fleet.min_replicas, cooldown=300, opts=child)
        self.idle_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-idle", name=f"{base}-idle-scale-to-zero",
            alarm_description=f"{agent}: no demand for {fleet.idle_minutes} min -> scale to {fleet.min_replicas}",
            namespace=METRIC_NAMESPACE, metric_name=METRIC_DEMAND, dimensions=dims, statistic="Maximum",
            period=60, evaluation_periods=fleet.idle_minutes, threshold=0,
            comparison_operator="LessThanOrEqualToThreshold", treat_missing_data="breaching",
            alarm_actions=[self.idle_policy.arn], tags=t(f"{base}-idle"), opts=child,
        )
