"""API-only agent: its decided settings published to SSM Parameter Store.

Applications (and the gateway) read /agentdeploy/<stack>/<agent>/config to call Claude the
way the plan decided: model, max_tokens, cache breakpoints and TTL, streaming, batch. The
Anthropic key is referenced by its Secrets Manager ARN, never copied into the parameter.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from agentdeploy.naming import ROLE_API_AGENT, SSM_PREFIX
from agentdeploy.planner.plan import AgentPlan
from agentdeploy.stacks.common import tags
from agentdeploy.templates.agent_config import agent_config_document


def parameter_name(stack: str, agent: str) -> str:
    return f"{SSM_PREFIX}/{stack}/{agent}/config"


class ApiAgent(pulumi.ComponentResource):
    parameter_name: str
    parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, stack: str, agent: AgentPlan, anthropic_key_arn: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:agent:ApiAgent", name, None, opts)
        self.parameter_name = parameter_name(stack, agent.name)
        value = pulumi.Output.from_input(anthropic_key_arn).apply(
            lambda arn: json.dumps(agent_config_document(agent, arn), sort_keys=True)
        )
        param = aws.ssm.Parameter(
            name, name=self.parameter_name, type="String", value=value,
            description=f"agentdeploy: how agent {agent.name} calls Claude (route {agent.route})",
            tags=tags(stack, self.parameter_name, agent=agent.name, role=ROLE_API_AGENT),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.parameter_arn = param.arn
        self.register_outputs({"parameter_name": self.parameter_name, "parameter_arn": self.parameter_arn})
