"""Small helpers every component uses: the tag set with a Name, and IAM documents as JSON."""

from __future__ import annotations

import json
from typing import Any

from agentdeploy.naming import stack_tags

ROLE_NETWORK = "network"
ROLE_SECRET = "secret"
ROLE_BUDGET = "budget"
ROLE_ALERTS = "alerts"


def tags(stack: str, name: str, agent: str | None = None, role: str | None = None) -> dict[str, str]:
    """agentdeploy's tag set (stack, agent, role, managed-by) plus a readable Name."""
    return {**stack_tags(stack, agent, role), "Name": name}


def policy_json(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def assume_role_policy(service: str) -> str:
    return policy_json(
        [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
    )


def put_metrics_statement(namespace: str) -> dict[str, Any]:
    """PutMetricData has no resource ARN; the namespace condition is what scopes it."""
    return {
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringEquals": {"cloudwatch:namespace": namespace}},
    }


def read_secrets_statement(arns: list[str]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": sorted(arns)}


def short_name(base: str, max_len: int) -> str:
    """`base` when AWS takes it whole, else cut and ended with a hash of the whole, so two long
    names that share a beginning stay distinct (ALB and target group names: 32)."""
    import hashlib

    clean = "-".join(p for p in "".join(c if c.isalnum() else "-" for c in base).split("-") if p)
    if len(clean) <= max_len:
        return clean
    digest = hashlib.sha256(base.encode()).hexdigest()[:6]
    return f"{clean[: max_len - 7].rstrip('-')}-{digest}"
