"""Network: an existing VPC named in the stack config, or a minimal one made for the stack.

The minimal VPC has public subnets (the gateway's load balancer, one NAT gateway) and private
subnets (GPU nodes and the gateway's tasks, which reach PyPI / Hugging Face through the NAT),
in `az_count` availability zones so the fleets' mixed-instances policy can spread spot
capacity across zones.
"""

from __future__ import annotations

import ipaddress

import pulumi
import pulumi_aws as aws

from agentdeploy.stacks.common import ROLE_NETWORK, tags
from agentdeploy.stacks.settings import ProvisionSettings


def subnet_cidrs(vpc_cidr: str, count: int) -> tuple[list[str], list[str]]:
    """Split the VPC range into /20s: the first `count` public, the next `count` private."""
    blocks = list(ipaddress.ip_network(vpc_cidr).subnets(new_prefix=20))
    if len(blocks) < 2 * count:
        raise ValueError(f"vpcCidr {vpc_cidr} is too small for {count} public and {count} private /20 subnets")
    return [str(b) for b in blocks[:count]], [str(b) for b in blocks[count : 2 * count]]


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, stack: str, settings: ProvisionSettings, opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:network:Network", name, None, opts)
        if settings.vpc_id:
            self.vpc_id = pulumi.Output.from_input(settings.vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(list(settings.private_subnet_ids))
            self.public_subnet_ids = pulumi.Output.from_input(list(settings.public_subnet_ids))
        else:
            self._create(name, stack, settings)
        self.register_outputs(
            {"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids, "public_subnet_ids": self.public_subnet_ids}
        )

    def _create(self, name: str, stack: str, settings: ProvisionSettings) -> None:
        child = pulumi.ResourceOptions(parent=self)
        t = lambda n: tags(stack, f"agentdeploy-{stack}-{n}", role=ROLE_NETWORK)  # noqa: E731
        zones = aws.get_availability_zones(state="available", opts=pulumi.InvokeOptions(parent=self)).names
        if len(zones) < settings.az_count:
            raise ValueError(f"azCount {settings.az_count} but the region has {len(zones)} zones available")
        zones = zones[: settings.az_count]
        public_cidrs, private_cidrs = subnet_cidrs(settings.vpc_cidr, settings.az_count)

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=settings.vpc_cidr, enable_dns_hostnames=True,
                          enable_dns_support=True, tags=t("vpc"), opts=child)
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=t("igw"), opts=child)
        public_rt = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id,
                                       routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}],
                                       tags=t("public"), opts=child)
        public, private = [], []
        for i, zone in enumerate(zones):
            sub = aws.ec2.Subnet(f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=public_cidrs[i],
                                 availability_zone=zone, tags=t(f"public-{zone}"), opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=sub.id, route_table_id=public_rt.id, opts=child)
            public.append(sub)
        eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=t("nat"), opts=child)
        nat = aws.ec2.NatGateway(f"{name}-nat", allocation_id=eip.id, subnet_id=public[0].id,
                                 tags=t("nat"), opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))
        private_rt = aws.ec2.RouteTable(f"{name}-private", vpc_id=vpc.id,
                                        routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}],
                                        tags=t("private"), opts=child)
        for i, zone in enumerate(zones):
            sub = aws.ec2.Subnet(f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=private_cidrs[i],
                                 availability_zone=zone, tags=t(f"private-{zone}"), opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=sub.id, route_table_id=private_rt.id, opts=child)
            private.append(sub)

        self.vpc_id = vpc.id
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public])
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private])
