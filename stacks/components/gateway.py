"""The serving gateway: an always-on ECS Fargate service behind its own load balancer.

The load balancer is internal (reachable only inside the VPC) or internet-facing over HTTPS
with the certificate of `gatewayDomain` (plain HTTP on the internet only by the explicit
`gatewayPlainHttp` opt-out, which the program warns about). `up` returns once the service has
reached steady state behind its listener, so a gateway that cannot start fails the deploy.

Fargate rather than an instance group: the gateway is small and always on, and Fargate
injects secrets from Secrets Manager into the container by ARN through the execution role
(no boot script handling values), replaces failed tasks and rolls out a new config as a new
task-definition revision with a circuit breaker, and leaves no AMI to patch. Only the
gateway's security group may reach the GPU fleets' internal load balancer and nodes.

The task role may publish metrics in our namespace, read where the fleets' nodes are (the
gateway routes to each node directly: serving/discovery.py) and set the desired capacity of
the stack's own fleet groups, by ARN (the gateway's wake from zero: serving/wake.py).
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import METRIC_NAMESPACE, ROLE_GATEWAY
from agentdeploy.stacks.common import (
    assume_role_policy,
    policy_json,
    put_metrics_statement,
    read_secrets_statement,
    tags,
)
from agentdeploy.stacks.settings import ProvisionSettings
from agentdeploy.templates.gateway import CONFIG_ENV, CONFIG_PATH, GATEWAY_PORT

#: What discovery reads. None of the three takes a resource ARN in IAM (the Service
#: Authorization Reference lists no resource type for them, as of 2026-12): they are granted on
#: "*", limited to the stack's region by the global aws:RequestedRegion condition.
DISCOVERY_ACTIONS = ("autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances",
                     "elasticloadbalancing:DescribeTargetHealth")


def task_policy_statements(namespace: str, region: str, group_arns: list[str]) -> list[dict[str, object]]:
    """The gateway task's permissions (pure): metrics in `namespace`; with fleets, discovery's
    reads in `region` and SetDesiredCapacity on exactly the stack's fleet groups (autoScalingGroup
    is a required resource type of that action, so the ARNs scope it)."""
    statements: list[dict[str, object]] = [put_metrics_statement(namespace)]
    if group_arns:
        statements.append({"Effect": "Allow", "Action": list(DISCOVERY_ACTIONS), "Resource": "*",
                           "Condition": {"StringEquals": {"aws:RequestedRegion": region}}})
        statements.append({"Effect": "Allow", "Action": "autoscaling:SetDesiredCapacity", "Resource": sorted(group_arns)})
    return statements

CONTAINER = "gateway"
#: /readyz turns 503 while the gateway drains (SIGTERM), so the load balancer stops sending first.
HEALTH_PATH = "/readyz"


def container_definitions(image: str, region: str, log_group: str, config_yaml: str, stack: str,
                          secret_env: dict[str, str]) -> str:
    """The task's one container (pure). `secret_env` maps env var -> Secrets Manager ARN:
    ECS resolves them at task start; the definition itself holds only ARNs."""
    start = (f'mkdir -p "$(dirname {CONFIG_PATH})" && printf "%s" "${CONFIG_ENV}" > {CONFIG_PATH} '
             f"&& exec deploy serve --config {CONFIG_PATH} --host 0.0.0.0 --port {GATEWAY_PORT}")
    return json.dumps([{
        "name": CONTAINER,
        "image": image,
        "essential": True,
        "entryPoint": ["sh", "-c"],
        "command": [start],
        "portMappings": [{"containerPort": GATEWAY_PORT, "protocol": "tcp"}],
        "environment": [
            {"name": CONFIG_ENV, "value": config_yaml},
            {"name": "AGENTDEPLOY_STACK", "value": stack},
            {"name": "AWS_REGION", "value": region},
        ],
        "secrets": [{"name": k, "valueFrom": v} for k, v in sorted(secret_env.items())],
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": log_group, "awslogs-region": region, "awslogs-stream-prefix": "gateway"}},
    }], sort_keys=True)


class GatewayService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    security_group_id: pulumi.Output[str]

    def __init__(self, name: str, stack: str, region: str, settings: ProvisionSettings, *, vpc_id: pulumi.Input[str],
                 public_subnet_ids: pulumi.Input[list[str]], private_subnet_ids: pulumi.Input[list[str]],
                 opts: pulumi.ResourceOptions | None = None):
        internal = settings.gateway_scheme == "internal"
        """Creates the network edge now (the fleets need the gateway's security group);
        `deploy_service` adds the task once the config and secrets are known."""
        # The type token keeps the class's old name: it is part of every child's URN, and a new
        # one would make Pulumi replace the running gateway.
        super().__init__("agentdeploy:gateway:Gateway", name, None, opts)
        self._name, self._stack, self._region, self._settings = name, stack, region, settings
        self._private_subnet_ids = private_subnet_ids
        child = pulumi.ResourceOptions(parent=self)
        base = f"agentdeploy-{stack}-gateway"
        self._t = lambda n: tags(stack, n, role=ROLE_GATEWAY)  # noqa: E731
        https = settings.certificate_arn is not None
        edge_ports = [443, 80] if https else [80]
        self.alb_sg = aws.ec2.SecurityGroup(
            f"{name}-alb-sg", vpc_id=vpc_id, description="agentdeploy: gateway load balancer",
            ingress=[{"protocol": "tcp", "from_port": p, "to_port": p, "cidr_blocks": list(settings.allowed_cidrs)}
                     for p in edge_ports],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=self._t(f"{base}-alb"), opts=child)
        self.task_sg = aws.ec2.SecurityGroup(
            f"{name}-task-sg", vpc_id=vpc_id, description="agentdeploy: gateway tasks",
            ingress=[{"protocol": "tcp", "from_port": GATEWAY_PORT, "to_port": GATEWAY_PORT,
                      "security_groups": [self.alb_sg.id], "description": "from the gateway load balancer"}],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=self._t(f"{base}-task"), opts=child)
        self.security_group_id = self.task_sg.id
        self.alb = aws.lb.LoadBalancer(
            f"{name}-alb", internal=internal, load_balancer_type="application",
            subnets=private_subnet_ids if internal else public_subnet_ids,
            security_groups=[self.alb_sg.id], idle_timeout=600,  # long streams
            tags=self._t(base), opts=child)
        self.target_group = aws.lb.TargetGroup(
            f"{name}-tg", port=GATEWAY_PORT, protocol="HTTP", target_type="ip", vpc_id=vpc_id,
            deregistration_delay=60,
            health_check={"enabled": True, "path": HEALTH_PATH, "port": str(GATEWAY_PORT), "protocol": "HTTP",
                          "matcher": "200", "interval": 15, "timeout": 5, "healthy_threshold": 2, "unhealthy_threshold": 3},
            tags=self._t(f"{base}-tg"), opts=child)
        forward: list[aws.lb.ListenerDefaultActionArgsDict] = [
            {"type": "forward", "target_group_arn": self.target_group.arn}]
        self.listeners: list[aws.lb.Listener] = []
        host = settings.gateway_domain
        if https:
            self.listeners.append(aws.lb.Listener(f"{name}-https", load_balancer_arn=self.alb.arn, port=443, protocol="HTTPS",
                            certificate_arn=settings.certificate_arn, ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                            default_actions=forward, tags=self._t(f"{base}-https"), opts=child))
            self.listeners.append(aws.lb.Listener(
                f"{name}-http", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                default_actions=[{"type": "redirect", "redirect": {
                    "protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}],
                tags=self._t(f"{base}-http"), opts=child))
            # The URL is the name the certificate covers (settings require gatewayDomain).
            self.url = pulumi.Output.from_input(f"https://{host}")
        else:
            self.listeners.append(aws.lb.Listener(f"{name}-http", load_balancer_arn=self.alb.arn, port=80, protocol="HTTP",
                                                  default_actions=forward, tags=self._t(f"{base}-http"), opts=child))
            self.url = pulumi.Output.from_input(f"http://{host}") if host else pulumi.Output.concat("http://", self.alb.dns_name)
        if host and settings.hosted_zone_id:
            aws.route53.Record(f"{name}-dns", zone_id=settings.hosted_zone_id, name=host, type="A",
                               aliases=[{"name": self.alb.dns_name, "zone_id": self.alb.zone_id,
                                         "evaluate_target_health": True}], opts=child)

    def deploy_service(self, config_yaml: pulumi.Input[str], secret_env: dict[str, pulumi.Output[str]],
                       image: pulumi.Input[str], fleet_group_arns: list[pulumi.Output[str]] | None = None) -> None:
        name, stack, s = self._name, self._stack, self._settings
        child = pulumi.ResourceOptions(parent=self)
        base = f"agentdeploy-{stack}-gateway"
        log_group = aws.cloudwatch.LogGroup(f"{name}-logs", name=f"/agentdeploy/{stack}/gateway",
                                            retention_in_days=30, tags=self._t(f"{base}-logs"), opts=child)
        arns = pulumi.Output.all(*secret_env.values())
        execution_role = aws.iam.Role(f"{name}-exec-role", assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com"),
                                      description="agentdeploy gateway: pull image, write logs, inject secrets",
                                      tags=self._t(f"{base}-exec"), opts=child)
        aws.iam.RolePolicyAttachment(f"{name}-exec-managed", role=execution_role.name,
                                     policy_arn="arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
                                     opts=child)
        aws.iam.RolePolicy(f"{name}-exec-secrets", role=execution_role.id,
                           policy=arns.apply(lambda a: policy_json([read_secrets_statement(list(a))])), opts=child)
        task_role = aws.iam.Role(f"{name}-task-role", assume_role_policy=assume_role_policy("ecs-tasks.amazonaws.com"),
                                 description="agentdeploy gateway: publish metrics, find and wake the fleets' nodes",
                                 tags=self._t(f"{base}-task"), opts=child)
        aws.iam.RolePolicy(f"{name}-task-metrics", role=task_role.id,
                           policy=pulumi.Output.all(*(fleet_group_arns or [])).apply(
                               lambda arns: policy_json(task_policy_statements(METRIC_NAMESPACE, self._region, list(arns)))),
                           opts=child)
        cluster = aws.ecs.Cluster(f"{name}-cluster", name=base, tags=self._t(base), opts=child)
        env_names = list(secret_env)
        definitions = pulumi.Output.all(log_group.name, config_yaml, arns, image).apply(
            lambda v: container_definitions(v[3], self._region, v[0], v[1], stack, dict(zip(env_names, v[2], strict=True))))
        task = aws.ecs.TaskDefinition(
            f"{name}-task", family=base, cpu=str(s.gateway_cpu), memory=str(s.gateway_memory_mb),
            network_mode="awsvpc", requires_compatibilities=["FARGATE"], execution_role_arn=execution_role.arn,
            task_role_arn=task_role.arn, container_definitions=definitions, tags=self._t(base), opts=child)
        aws.ecs.Service(
            f"{name}-service", name=base, cluster=cluster.arn, task_definition=task.arn, launch_type="FARGATE",
            desired_count=s.gateway_tasks(stack), health_check_grace_period_seconds=60,
            # `up` succeeds only once the tasks run healthy behind the listener.
            wait_for_steady_state=True,
            deployment_circuit_breaker={"enable": True, "rollback": True},
            network_configuration={"subnets": self._private_subnet_ids, "security_groups": [self.task_sg.id],
                                   "assign_public_ip": False},
            load_balancers=[{"target_group_arn": self.target_group.arn, "container_name": CONTAINER,
                             "container_port": GATEWAY_PORT}],
            propagate_tags="SERVICE", enable_ecs_managed_tags=True, tags=self._t(base),
            # The target group must be attached to the load balancer (by a listener) first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.listeners)))
        self.register_outputs({"url": self.url})
