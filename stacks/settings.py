"""Stack settings: the non-secret `agentdeploy:*` config keys, parsed and checked once.

Pure: a mapping of config values in (key without the `agentdeploy:` prefix), a typed object
out, so a bad stack config fails before any resource is registered, with the key to fix.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentdeploy import __version__
from agentdeploy.errors import InvalidInput
from agentdeploy.templates.gpu_node import DEFAULT_NODE_REQUIREMENT, DEFAULT_VLLM_REQUIREMENT

NAMESPACE = "agentdeploy"
#: The AWS Deep Learning Base AMI with the NVIDIA driver (Ubuntu 22.04), newest first by date.
DEFAULT_GPU_AMI_NAME = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"
#: Image built from the repository's Dockerfile; push it to your registry and set gatewayImage.
DEFAULT_GATEWAY_IMAGE = f"agentdeploy-gateway:{__version__}"

#: Config keys that hold secrets (set with `pulumi config set --secret`); never in ProvisionSettings.
SECRET_KEYS = ("anthropicApiKey", "gatewayClientKeys", "huggingFaceToken")


class ProvisionSettings(BaseModel):
    """What the Pulumi program provisions beyond the plan: network, images, sizes, access."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # Aliases are literals for type checkers; tests check they match naming's config keys.
    decision_file: str = Field(alias="decisionFile")
    #: The reviewed plan file to apply (default: <decision file stem>.plan.json beside it, when
    #: that exists). Relative paths are relative to the project root, like decisionFile.
    plan_file: str | None = Field(default=None, alias="planFile")
    #: Use an existing VPC: its id and subnet ids (private for GPU nodes and the gateway's
    #: tasks, public for the gateway's load balancer). Unset: a minimal VPC is created.
    vpc_id: str | None = Field(None, alias="vpcId")
    private_subnet_ids: list[str] = Field(default_factory=list, alias="privateSubnetIds")
    public_subnet_ids: list[str] = Field(default_factory=list, alias="publicSubnetIds")
    vpc_cidr: str = Field("10.60.0.0/16", alias="vpcCidr")
    az_count: int = Field(2, ge=2, le=6, alias="azCount")
    gateway_image: str = Field(DEFAULT_GATEWAY_IMAGE, alias="gatewayImage")
    gateway_cpu: int = Field(512, alias="gatewayCpu")
    gateway_memory_mb: int = Field(1024, alias="gatewayMemoryMb")
    gateway_desired_count: int = Field(1, ge=1, alias="gatewayDesiredCount")
    #: Who may reach the gateway's public load balancer.
    allowed_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"], alias="allowedCidrs")
    #: ACM certificate for HTTPS on the gateway's load balancer; HTTP only when unset.
    certificate_arn: str | None = Field(None, alias="certificateArn")
    gpu_ami_id: str | None = Field(None, alias="gpuAmiId")
    gpu_ami_name: str = Field(DEFAULT_GPU_AMI_NAME, alias="gpuAmiName")
    gpu_root_volume_gb: int = Field(200, ge=50, alias="gpuRootVolumeGb")
    vllm_requirement: str = Field(DEFAULT_VLLM_REQUIREMENT, alias="vllmRequirement")
    node_requirement: str = Field(DEFAULT_NODE_REQUIREMENT, alias="nodeRequirement")
    #: Activate `agentdeploy:stack` as a cost-allocation tag, without which the stack's AWS Budget
    #: sees no spend. Opt-in: it needs the payer (management) account, and AWS refuses it until
    #: the tag has been on billed resources (~24 h after the first `deploy up`).
    activate_cost_allocation_tag: bool = Field(False, alias="activateCostAllocationTag")

    @model_validator(mode="after")
    def _existing_vpc_needs_subnets(self) -> ProvisionSettings:
        if self.vpc_id and (len(self.private_subnet_ids) < 2 or len(self.public_subnet_ids) < 2):
            raise ValueError(
                "vpcId is set: also set privateSubnetIds and publicSubnetIds (two or more each, in different AZs)"
            )
        return self


def parse_settings(values: dict[str, Any], where: str = "stack config") -> ProvisionSettings:
    """Settings from `agentdeploy:*` config values (prefix already stripped; secrets excluded)."""
    plain = {k: v for k, v in values.items() if k not in SECRET_KEYS}
    try:
        return ProvisionSettings.model_validate(plain)
    except ValidationError as err:
        details = []
        for e in err.errors():
            key = ".".join(str(p) for p in e["loc"]) or "config"
            details.append(f"{NAMESPACE}:{key}: {e['msg']}")
        raise InvalidInput(
            f"{where}: invalid agentdeploy settings",
            details=details,
            hint="fix these keys under `config:` in the stack's Pulumi.<stack>.yaml",
        ) from None
