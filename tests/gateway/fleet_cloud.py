"""A GPU fleet's cloud side in moto, as the stack leaves it: a VPC, instances with chosen
private IPs, the fleet's target group (attached to a load balancer's listener) and its Auto
Scaling group. The VPC may be 127.0.0.0/16, so discovered "nodes" are loopback addresses a
test can serve on (every 127.x.y.z reaches this host)."""

from __future__ import annotations

from dataclasses import dataclass

import boto3

REGION = "us-east-1"


@dataclass
class FleetCloud:
    vpc_id: str
    subnet_id: str
    target_group_arn: str

    def launch(self, ip: str) -> str:
        """One running instance with this private IP; its instance ID."""
        ec2 = boto3.client("ec2", region_name=REGION)
        res = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=self.subnet_id,
                                PrivateIpAddress=ip, InstanceType="g5.xlarge")
        return str(res["Instances"][0]["InstanceId"])

    def register(self, *instance_ids: str) -> None:
        boto3.client("elbv2", region_name=REGION).register_targets(
            TargetGroupArn=self.target_group_arn, Targets=[{"Id": i} for i in instance_ids])

    def deregister(self, *instance_ids: str) -> None:
        """What the node agent does when its drain starts."""
        boto3.client("elbv2", region_name=REGION).deregister_targets(
            TargetGroupArn=self.target_group_arn, Targets=[{"Id": i} for i in instance_ids])

    def stop(self, instance_id: str) -> None:
        """A stopped instance reads `unused` in its target group."""
        boto3.client("ec2", region_name=REGION).stop_instances(InstanceIds=[instance_id])


def fleet_cloud(cidr: str = "10.20.0.0/16", subnet: str = "10.20.1.0/24", port: int = 8000) -> FleetCloud:
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    sub = ec2.create_subnet(VpcId=vpc, CidrBlock=subnet, AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    elb = boto3.client("elbv2", region_name=REGION)
    tg = elb.create_target_group(Name="ad-test-router", Protocol="HTTP", Port=port, VpcId=vpc, TargetType="instance",
                                 HealthCheckPath="/healthz", HealthCheckPort="8081")["TargetGroups"][0]["TargetGroupArn"]
    return FleetCloud(vpc, sub, tg)


def group_at(name: str, desired: int = 0, max_size: int = 4) -> str:
    """An Auto Scaling group at `desired`; its ARN."""
    ec2 = boto3.client("ec2", region_name=REGION)
    if not any(t["LaunchTemplateName"] == "gpu-node" for t in ec2.describe_launch_templates()["LaunchTemplates"]):
        ec2.create_launch_template(LaunchTemplateName="gpu-node",
                                   LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g5.xlarge"})
    asg = boto3.client("autoscaling", region_name=REGION)
    asg.create_auto_scaling_group(AutoScalingGroupName=name, MinSize=0, MaxSize=max_size, DesiredCapacity=desired,
                                  LaunchTemplate={"LaunchTemplateName": "gpu-node"}, AvailabilityZones=[f"{REGION}a"])
    return str(asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]["AutoScalingGroupARN"])


def desired(name: str) -> int:
    g = boto3.client("autoscaling", region_name=REGION).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return int(g["AutoScalingGroups"][0]["DesiredCapacity"])
