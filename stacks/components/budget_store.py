"""The gateway's shared, persistent budget store: an ElastiCache Redis only its tasks reach.

Every gateway task admits requests against the same monthly budget, so the spend they commit
must live outside any one task (a restart or a second task would otherwise start from zero).
Redis with in-transit encryption and an AUTH token; the connection URL (token included) is
a Secrets Manager secret the gateway's task gets injected by ARN, and the gateway config
names only the environment variable (by reference, never the value).
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from agentdeploy.naming import ROLE_GATEWAY
from agentdeploy.stacks.common import short_name, tags
from agentdeploy.stacks.components.secrets import StoredSecret

REDIS_PORT = 6379
#: ElastiCache replication group ids: at most 40 characters.
REPLICATION_GROUP_ID_MAX = 40


def redis_url(token: str, host: str, port: int = REDIS_PORT) -> str:
    """TLS (`rediss://`) with the AUTH token as password."""
    return f"rediss://:{token}@{host}:{port}/0"


def replication_group_id(stack: str) -> str:
    return short_name(f"agentdeploy-{stack}-budget", REPLICATION_GROUP_ID_MAX).lower()


class SharedBudgetStore(pulumi.ComponentResource):
    url_secret_arn: pulumi.Output[str]

    def __init__(self, name: str, stack: str, *, vpc_id: pulumi.Input[str], subnet_ids: pulumi.Input[list[str]],
                 client_sg_id: pulumi.Input[str], node_type: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:gateway:BudgetStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        base = f"agentdeploy-{stack}-budget"
        t = lambda n: tags(stack, n, role=ROLE_GATEWAY)  # noqa: E731
        sg = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=vpc_id, description="agentdeploy: gateway budget store (Redis)",
            ingress=[{"protocol": "tcp", "from_port": REDIS_PORT, "to_port": REDIS_PORT,
                      "security_groups": [client_sg_id], "description": "Redis from the gateway tasks"}],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}],
            tags=t(f"{base}-sg"), opts=child)
        subnets = aws.elasticache.SubnetGroup(f"{name}-subnets", name=base, subnet_ids=subnet_ids,
                                              description="agentdeploy gateway budget store", tags=t(base), opts=child)
        # ElastiCache AUTH tokens: 16-128 printable characters, no @, " or /; alphanumerics only.
        token = random.RandomPassword(f"{name}-auth", length=48, special=False, opts=child)
        self.group = aws.elasticache.ReplicationGroup(
            f"{name}-redis", replication_group_id=replication_group_id(stack),
            description=f"agentdeploy {stack}: the gateway's shared budget ledger",
            engine="redis", node_type=node_type, num_cache_clusters=1, port=REDIS_PORT,
            subnet_group_name=subnets.name, security_group_ids=[sg.id],
            transit_encryption_enabled=True, at_rest_encryption_enabled=True, auth_token=token.result,
            # Budgets are monthly: keep a daily snapshot so a node replacement keeps the month.
            snapshot_retention_limit=7, apply_immediately=True, tags=t(base), opts=child)
        url = pulumi.Output.all(token.result, self.group.primary_endpoint_address).apply(
            lambda v: redis_url(v[0], v[1]))
        self.url_secret_arn = StoredSecret(
            f"{name}-url", stack, "gateway-budget-store-url", pulumi.Output.secret(url),
            description="Redis URL of the gateway's budget store (with its AUTH token)", opts=child).arn
        self.register_outputs({"url_secret_arn": self.url_secret_arn})
