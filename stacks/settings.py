"""Stack settings: the non-secret `agentdeploy:*` config keys, parsed and checked once.

Pure: a mapping of config values in (key without the `agentdeploy:` prefix), a typed object
out, so a bad stack config fails before any resource is registered, with the key to fix.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentdeploy.errors import InvalidInput
from agentdeploy.images import pinned_image_problem

NAMESPACE = "agentdeploy"
#: AWS's public SSM parameter for the newest Deep Learning Base OSS Nvidia Driver GPU AMI on
#: Ubuntu 24.04 (x86_64), whose Python is 3.12 (we require >= 3.11; 22.04's is 3.10), which
#: ships Docker and the NVIDIA Container Toolkit (the engine runs as a container) and mounts
#: the instance-store NVMe at /opt/dlami/nvme (DLAMI developer guide, release notes of the
#: Base OSS Nvidia Driver GPU AMIs on Ubuntu 24.04, 2025-12 to 2026-10: "major package versions"
#: list nvidia_container_toolkit_version and nvme_location; docker-ce and containerd.io among
#: the packages each release updates).
DEFAULT_GPU_AMI_PARAMETER = "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-24.04/latest/ami-id"

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
    #: A prebuilt gateway image (pin it by digest); unset: `up` builds the repository's
    #: Dockerfile and pushes it to the stack's ECR repository.
    gateway_image: str | None = Field(None, alias="gatewayImage")
    gateway_cpu: int = Field(512, alias="gatewayCpu")
    gateway_memory_mb: int = Field(1024, alias="gatewayMemoryMb")
    #: Gateway tasks (spread over the private subnets' zones). Unset: 2 for a stack named
    #: `prod` or `prod-*` (one task per zone survives a zone or task loss), else 1.
    gateway_desired_count: int | None = Field(None, ge=1, alias="gatewayDesiredCount")
    #: `internal`: the gateway's load balancer is reachable only inside the VPC (private
    #: subnets); `internet-facing`: from the internet, over HTTPS (certificateArn required).
    gateway_scheme: Literal["internet-facing", "internal"] = Field("internet-facing", alias="gatewayScheme")
    #: Who may reach the gateway's load balancer.
    allowed_cidrs: list[str] = Field(default_factory=lambda: ["0.0.0.0/0"], alias="allowedCidrs")
    #: ACM certificate for HTTPS on the gateway's load balancer (covering gatewayDomain).
    certificate_arn: str | None = Field(None, alias="certificateArn")
    #: The gateway's DNS name, which the certificate covers; the exported URL uses it.
    gateway_domain: str | None = Field(None, alias="gatewayDomain")
    #: Route 53 hosted zone to create gatewayDomain's alias record in (unset: point the name
    #: at the load balancer yourself).
    hosted_zone_id: str | None = Field(None, alias="hostedZoneId")
    #: The explicit opt-out: an internet-facing gateway over plain HTTP (keys and prompts in
    #: clear text). `deploy preview` warns every time.
    gateway_plain_http: bool = Field(False, alias="gatewayPlainHttp")
    #: ElastiCache node type of the gateway's shared budget store (the plan's catalog prices
    #: cache.t4g.micro).
    budget_store_node_type: str = Field("cache.t4g.micro", alias="budgetStoreNodeType")
    gpu_ami_id: str | None = Field(None, alias="gpuAmiId")
    #: SSM parameter naming the GPU AMI (AWS's public one by default), read at deploy time.
    gpu_ami_parameter: str = Field(DEFAULT_GPU_AMI_PARAMETER, alias="gpuAmiParameter")
    #: Node root volume; unset: sized from the model's weight bytes (fleet_volume.py).
    gpu_root_volume_gb: int | None = Field(None, ge=50, alias="gpuRootVolumeGb")
    #: The vLLM engine image GPU nodes run, pinned by digest (repository:tag@sha256:...); unset:
    #: the catalog's engine_image.
    vllm_image: str | None = Field(None, alias="vllmImage")
    #: A prebuilt wheel of this project for the node agent; unset: `up` builds it from the checkout.
    node_wheel: str | None = Field(None, alias="nodeWheel")
    #: Activate `agentdeploy:stack` as a cost-allocation tag, without which the stack's AWS Budget
    #: sees no spend. Opt-in: it needs the payer (management) account, and AWS refuses it until
    #: the tag has been on billed resources (~24 h after the first `deploy up`).
    activate_cost_allocation_tag: bool = Field(False, alias="activateCostAllocationTag")

    @field_validator("vllm_image")
    @classmethod
    def _image_pinned(cls, v: str | None) -> str | None:
        problem = pinned_image_problem(v) if v is not None else None
        if problem:
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _existing_vpc_needs_subnets(self) -> ProvisionSettings:
        if self.vpc_id and (len(self.private_subnet_ids) < 2 or len(self.public_subnet_ids) < 2):
            raise ValueError(
                "vpcId is set: also set privateSubnetIds and publicSubnetIds (two or more each, in different AZs)"
            )
        return self

    def check_gateway_edge(self, where: str = "stack config") -> None:
        """Refuse a gateway that would serve plain HTTP on the internet without the opt-out.
        Checked where the gateway is built, not on parse: a gateway-less stack has no edge."""
        if self.gateway_scheme == "internet-facing" and not self.certificate_arn and not self.gateway_plain_http:
            raise InvalidInput(f"{where}: invalid agentdeploy settings", details=[
                f"{NAMESPACE}:certificateArn: an internet-facing gateway needs HTTPS: set certificateArn (an ACM certificate) "
                "and gatewayDomain, or gatewayScheme: internal (reachable only inside the VPC), or, knowing keys and "
                "prompts then cross the internet in clear text, gatewayPlainHttp: true"],
                hint="fix these keys under `config:` in the stack's Pulumi.<stack>.yaml")

    @model_validator(mode="after")
    def _gateway_edge_consistent(self) -> ProvisionSettings:
        if self.certificate_arn and not self.gateway_domain:
            raise ValueError("certificateArn is set: also set gatewayDomain, the name the certificate covers "
                             "(the exported URL uses it; no certificate covers the load balancer's own DNS name)")
        if self.hosted_zone_id and not self.gateway_domain:
            raise ValueError("hostedZoneId is set: also set gatewayDomain (the record to create in it)")
        return self

    def plain_http_exposed(self) -> bool:
        """The opt-out in effect: an internet-facing gateway without TLS."""
        return self.gateway_scheme == "internet-facing" and not self.certificate_arn

    def gateway_tasks(self, stack: str) -> int:
        if self.gateway_desired_count is not None:
            return self.gateway_desired_count
        return 2 if stack == "prod" or stack.startswith("prod-") else 1


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
