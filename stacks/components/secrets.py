"""Secrets Manager entries for the stack: the Anthropic key, gateway client keys, the
Hugging Face token (optional) and one vLLM API key per self-hosted agent.

Values come from Pulumi secret config (`pulumi config set --secret ...`) or, for the vLLM
keys, from a RandomPassword: either way they are Pulumi secrets, so they are encrypted in
state and reach AWS only as a SecretVersion. Everything else (SSM parameters, user data, the
gateway's task definition) holds the secret's ARN and the reader fetches the value through
its own IAM role.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from agentdeploy.stacks.common import ROLE_SECRET, tags


@dataclass(frozen=True)
class SecretInputs:
    """Secret values from the stack config; each an Output marked secret (or None when unset)."""

    anthropic_api_key: pulumi.Output
    gateway_client_keys: pulumi.Output | None = None
    hugging_face_token: pulumi.Output | None = None


def secret_name(stack: str, suffix: str) -> str:
    return f"agentdeploy/{stack}/{suffix}"


class StoredSecret(pulumi.ComponentResource):
    """One Secrets Manager secret and its current version."""

    arn: pulumi.Output[str]

    def __init__(self, name: str, stack: str, suffix: str, value: pulumi.Input[str], agent: str | None = None,
                 description: str = "", opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:secrets:StoredSecret", name, None, opts)
        full = secret_name(stack, suffix)
        # recovery window 0: the value's source of truth is the stack config, and a secret
        # pending deletion would block `deploy up` after `deploy down` under the same name.
        self.secret = aws.secretsmanager.Secret(
            name, name=full, description=description, recovery_window_in_days=0,
            tags=tags(stack, full, agent=agent, role=ROLE_SECRET), opts=pulumi.ResourceOptions(parent=self),
        )
        self.version = aws.secretsmanager.SecretVersion(
            name, secret_id=self.secret.id, secret_string=pulumi.Output.secret(value),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.secret.arn
        self.register_outputs({"arn": self.arn})


class StackSecrets(pulumi.ComponentResource):
    anthropic_key_arn: pulumi.Output[str]
    client_keys_arn: pulumi.Output[str] | None
    hf_token_arn: pulumi.Output[str] | None
    #: agent -> ARN of the API key its vLLM fleet requires (and the gateway sends).
    vllm_key_arns: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, stack: str, inputs: SecretInputs, gpu_agents: list[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:secrets:StackSecrets", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.anthropic_key_arn = StoredSecret(
            f"{name}-anthropic", stack, "anthropic-api-key", inputs.anthropic_api_key,
            description="Anthropic API key used by the gateway and API agents", opts=child).arn
        self.client_keys_arn = None
        if inputs.gateway_client_keys is not None:
            self.client_keys_arn = StoredSecret(
                f"{name}-client-keys", stack, "gateway-client-keys", inputs.gateway_client_keys,
                description="Keys clients present to the gateway", opts=child).arn
        self.hf_token_arn = None
        if inputs.hugging_face_token is not None:
            self.hf_token_arn = StoredSecret(
                f"{name}-hf-token", stack, "hugging-face-token", inputs.hugging_face_token,
                description="Hugging Face token for gated model weights", opts=child).arn
        self.vllm_key_arns = {}
        for agent in gpu_agents:
            password = random.RandomPassword(f"{name}-{agent}-vllm-key", length=40, special=False, opts=child)
            self.vllm_key_arns[agent] = StoredSecret(
                f"{name}-{agent}-vllm-key", stack, f"{agent}/vllm-api-key", password.result, agent=agent,
                description=f"API key of agent {agent}'s vLLM fleet (gateway -> vLLM)", opts=child).arn
        self.register_outputs({"anthropic_key_arn": self.anthropic_key_arn})
