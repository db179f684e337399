"""AWS's own limits as code: what the APIs refuse, checked over every resource a stack registers.

Pulumi's mocks and moto accept names, descriptions and sizes that AWS rejects at `pulumi
preview` or `up`. These checks encode AWS's published limits (and the pulumi-aws/Terraform
provider validations that mirror them) so the tests and `deploy preview` see a violation
before any API call. Each check takes a `policy.Resource` (type token, logical name,
camelCase inputs) and returns `policy.Violation`s; `check_limits` runs all of them.

Sources (as of 2026-12): Elastic Load Balancing CreateLoadBalancer / CreateTargetGroup
(Name: at most 32 alphanumerics or hyphens, not starting or ending with a hyphen);
EC2 CreateSecurityGroup and security group rule descriptions (VPC: a-z, A-Z, 0-9, spaces and
._-:/()#,@[]+=&;{}!$*, at most 255); 60 inbound and 60 outbound rules per group (VPC quota); EC2 user data (16 KB before base64); tagging (50 tags,
key 128, value 256, no `aws:` prefix); IAM (role name 64, name_prefix 38); ElastiCache
(replication group id 40, a letter first, no two hyphens in a row or trailing hyphen);
EventBridge rule name 64; Pulumi auto-naming appends "-" and 7 random characters;
Terraform's name_prefix appends 26 characters.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentdeploy.stacks.policy import Resource, Violation, plain, resource_tags

#: Pulumi's auto-name: logical name + "-" + 7 random characters.
AUTONAME_SUFFIX = 8
#: Terraform's `name_prefix`: prefix + a 26-character unique id.
PREFIX_SUFFIX = 26
#: EC2 user data, before base64 encoding.
USER_DATA_MAX_BYTES = 16 * 1024
MAX_TAGS = 50
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256
#: Security group (VPC) and rule descriptions.
SG_DESCRIPTION = re.compile(r"^[A-Za-z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$")
SG_DESCRIPTION_MAX = 255
#: Inbound (and, separately, outbound) rules per security group (VPC quota, default 60).
SG_RULES_MAX = 60
#: ALB and target group names (the only charset they take).
ELB_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$")
ELASTICACHE_ID = re.compile(r"^[a-z](?!.*--)[a-z0-9-]*[a-z0-9]$")


@dataclass(frozen=True)
class NameRule:
    """How a type is named: the input holding the name, its longest length, whether Pulumi
    auto-names it when unset, the input holding a name prefix, and a charset."""

    field: str
    max_len: int
    autonamed: bool = True
    prefix_field: str | None = "namePrefix"
    pattern: re.Pattern[str] | None = None


NAME_RULES: dict[str, NameRule] = {
    "aws:lb/loadBalancer:LoadBalancer": NameRule("name", 32, pattern=ELB_NAME),
    "aws:lb/targetGroup:TargetGroup": NameRule("name", 32, pattern=ELB_NAME),
    "aws:iam/role:Role": NameRule("name", 64),
    "aws:iam/instanceProfile:InstanceProfile": NameRule("name", 128),
    "aws:iam/rolePolicy:RolePolicy": NameRule("name", 128),
    "aws:ec2/securityGroup:SecurityGroup": NameRule("name", 255),
    "aws:ec2/launchTemplate:LaunchTemplate": NameRule("name", 128),
    "aws:autoscaling/group:Group": NameRule("name", 255),
    "aws:autoscaling/lifecycleHook:LifecycleHook": NameRule("name", 255, autonamed=False, prefix_field=None),
    "aws:cloudwatch/metricAlarm:MetricAlarm": NameRule("name", 255),
    "aws:cloudwatch/eventRule:EventRule": NameRule("name", 64),
    "aws:cloudwatch/logGroup:LogGroup": NameRule("name", 512),
    "aws:ecs/cluster:Cluster": NameRule("name", 255, prefix_field=None),
    "aws:ecs/service:Service": NameRule("name", 255, prefix_field=None),
    "aws:ecs/taskDefinition:TaskDefinition": NameRule("family", 255, autonamed=False, prefix_field=None),
    "aws:sns/topic:Topic": NameRule("name", 256),
    "aws:secretsmanager/secret:Secret": NameRule("name", 512),
    "aws:ssm/parameter:Parameter": NameRule("name", 2048, prefix_field=None),
    "aws:budgets/budget:Budget": NameRule("name", 100),
    "aws:elasticache/replicationGroup:ReplicationGroup": NameRule(
        "replicationGroupId", 40, autonamed=False, prefix_field=None, pattern=ELASTICACHE_ID),
    "aws:elasticache/subnetGroup:SubnetGroup": NameRule("name", 255, prefix_field=None),
    "aws:s3/bucketV2:BucketV2": NameRule("bucket", 63, prefix_field="bucketPrefix"),
    "aws:s3/bucket:Bucket": NameRule("bucket", 63, prefix_field="bucketPrefix"),
    "aws:ecr/repository:Repository": NameRule("name", 256, prefix_field=None),
}

#: Types whose inputs hold ports, and where.
_SG = "aws:ec2/securityGroup:SecurityGroup"


def effective_name(r: Resource, rule: NameRule) -> tuple[str | None, int]:
    """The name AWS will get (or its prefix) and how many characters AWS or Pulumi add."""
    value = r.inputs.get(rule.field)
    if isinstance(value, str) and value:
        return value, 0
    prefix = r.inputs.get(rule.prefix_field) if rule.prefix_field else None
    if isinstance(prefix, str) and prefix:
        return prefix, PREFIX_SUFFIX
    if rule.autonamed:
        return r.name, AUTONAME_SUFFIX
    return None, 0


def check_name(r: Resource) -> list[Violation]:
    rule = NAME_RULES.get(r.typ)
    if rule is None:
        return []
    name, suffix = effective_name(r, rule)
    if name is None:
        return []
    out = []
    total = len(name) + suffix
    if total > rule.max_len:
        how = f" plus {suffix} generated characters" if suffix else ""
        out.append(Violation("aws-name-length", r.name,
                             f"{rule.field} {name!r}{how} is {total} characters; AWS allows {rule.max_len}"))
    if rule.pattern is not None and not suffix and not rule.pattern.match(name):
        out.append(Violation("aws-name-charset", r.name, f"{rule.field} {name!r} has characters AWS rejects"))
    if rule.pattern is ELB_NAME and suffix and not re.fullmatch(r"[A-Za-z0-9-]+", name):
        out.append(Violation("aws-name-charset", r.name, f"{rule.field} {name!r} has characters AWS rejects"))
    return out


def _description_violations(r: Resource, where: str, text: Any) -> list[Violation]:
    if text is None:
        return []
    text = str(text)
    out = []
    if not SG_DESCRIPTION.match(text):
        bad = sorted({c for c in text if not SG_DESCRIPTION.match(c)})
        out.append(Violation("aws-sg-description", r.name, f"{where} {text!r} has characters AWS rejects: {bad}"))
    if len(text) > SG_DESCRIPTION_MAX:
        out.append(Violation("aws-sg-description", r.name, f"{where} is {len(text)} characters; AWS allows 255"))
    return out


def _rules(r: Resource) -> list[tuple[str, Mapping[str, Any]]]:
    if r.typ == _SG:
        return [(f"{kind}[{i}]", rule) for kind in ("ingress", "egress")
                for i, rule in enumerate(r.inputs.get(kind) or []) if isinstance(rule, Mapping)]
    if r.typ in ("aws:ec2/securityGroupRule:SecurityGroupRule", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                 "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"):
        return [("rule", r.inputs)]
    return []


def check_security_group(r: Resource) -> list[Violation]:
    """Group and rule descriptions in AWS's charset, rule ports in range."""
    out: list[Violation] = []
    if r.typ == _SG:
        out += _description_violations(r, "description", r.inputs.get("description"))
        for kind in ("ingress", "egress"):
            count = len(r.inputs.get(kind) or [])
            if count > SG_RULES_MAX:
                out.append(Violation("aws-sg-rules", r.name, f"{count} {kind} rules; AWS allows {SG_RULES_MAX} per group"))
    for where, rule in _rules(r):
        out += _description_violations(r, f"{where} description", rule.get("description"))
        lo, hi = rule.get("fromPort"), rule.get("toPort")
        protocol = str(rule.get("protocol", rule.get("ipProtocol", "tcp")))
        if protocol in ("-1", "all"):
            continue
        for label, port in (("fromPort", lo), ("toPort", hi)):
            if port is not None and not (isinstance(port, (int, float)) and 0 <= port <= 65535):
                out.append(Violation("aws-port", r.name, f"{where} {label} {port!r} is not a port"))
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
            out.append(Violation("aws-port", r.name, f"{where} fromPort {lo} > toPort {hi}"))
    return out


def check_ports(r: Resource) -> list[Violation]:
    """Listener, target group and health-check ports are 1-65535."""
    ports: list[tuple[str, Any]] = []
    if r.typ in ("aws:lb/listener:Listener", "aws:lb/targetGroup:TargetGroup"):
        ports.append(("port", r.inputs.get("port")))
        hc = r.inputs.get("healthCheck") or {}
        if isinstance(hc, Mapping) and hc.get("port") not in (None, "traffic-port"):
            ports.append(("healthCheck.port", hc.get("port")))
    out = []
    for label, value in ports:
        if value is None:
            continue
        try:
            ok = 1 <= int(value) <= 65535
        except (TypeError, ValueError):
            ok = False
        if not ok:
            out.append(Violation("aws-port", r.name, f"{label} {value!r} is not a port (1-65535)"))
    return out


def user_data_bytes(r: Resource) -> int | None:
    """The size AWS counts: launch template user data is base64 of the raw document."""
    raw = plain(r.inputs.get("userData"))
    if not isinstance(raw, str):
        return None
    if r.typ == "aws:ec2/launchTemplate:LaunchTemplate":
        try:
            return len(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError):
            return len(raw.encode())
    return len(raw.encode())


def check_user_data(r: Resource) -> list[Violation]:
    if r.typ not in ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"):
        return []
    size = user_data_bytes(r)
    if size is not None and size > USER_DATA_MAX_BYTES:
        return [Violation("aws-user-data", r.name, f"user data is {size} bytes; EC2 allows {USER_DATA_MAX_BYTES}")]
    return []


def _tag_sets(r: Resource) -> list[tuple[str, dict[str, str]]]:
    sets: list[tuple[str, dict[str, str]]] = []
    tags = resource_tags(r)
    if tags:
        sets.append(("tags", tags))
    for i, spec in enumerate(r.inputs.get("tagSpecifications") or []):
        if isinstance(spec, Mapping) and isinstance(spec.get("tags"), Mapping):
            sets.append((f"tagSpecifications[{i}]", dict(spec["tags"])))
    return sets


def check_tag_limits(r: Resource) -> list[Violation]:
    out = []
    for where, tags in _tag_sets(r):
        if len(tags) > MAX_TAGS:
            out.append(Violation("aws-tags", r.name, f"{where}: {len(tags)} tags; AWS allows {MAX_TAGS}"))
        for k, v in tags.items():
            key = str(k)
            if len(key) > TAG_KEY_MAX:
                out.append(Violation("aws-tags", r.name, f"{where}: key {key[:40]!r}... is {len(key)} characters (max 128)"))
            if key.lower().startswith("aws:"):
                out.append(Violation("aws-tags", r.name, f"{where}: key {key!r} uses the reserved aws: prefix"))
            if len(str(v)) > TAG_VALUE_MAX:
                out.append(Violation("aws-tags", r.name, f"{where}: value of {key!r} is {len(str(v))} characters (max 256)"))
    return out


def check_limits(resources: Iterable[Resource]) -> list[Violation]:
    """Every AWS limit check over every resource."""
    out: list[Violation] = []
    for r in resources:
        out += check_name(r) + check_security_group(r) + check_ports(r) + check_user_data(r) + check_tag_limits(r)
    return out
