"""Policy checks over the resources a stack registers, as plain functions.

Each check takes resources as the engine sees them (type token, logical name, camelCase
inputs) and returns violations; the same functions run in the tests (over the mock runtime's
records), in `policies/` as a Pulumi policy pack (`pulumi preview --policy-pack policies`),
and anywhere else a list of resources is at hand.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from agentdeploy.naming import MANAGED_BY_VALUE, ROLE_GPU_FLEET, TAG_AGENT, TAG_MANAGED_BY, TAG_ROLE, TAG_STACK

#: AWS resource types that take no tags (their parent carries them). Every other aws: type must be tagged.
UNTAGGABLE = frozenset({
    "aws:ec2/routeTableAssociation:RouteTableAssociation",
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    "aws:secretsmanager/secretVersion:SecretVersion",
    "aws:sns/topicSubscription:TopicSubscription",
    "aws:sns/topicPolicy:TopicPolicy",
    "aws:autoscaling/policy:Policy",
    "aws:costexplorer/costAllocationTag:CostAllocationTag",
    "aws:autoscaling/lifecycleHook:LifecycleHook",
    "aws:cloudwatch/eventTarget:EventTarget",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:route53/record:Record",
})

#: Values that look like credentials. A hit in user data, a parameter or an env var is a leak.
SECRET_PATTERNS = {
    "Anthropic API key": re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9_]{8,}"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "inline credential": re.compile(r"(?i)\b(api[_-]?key|password|secret|token)\s*[=:]\s*['\"]?[A-Za-z0-9_\-]{16,}"),
}


@dataclass(frozen=True)
class Resource:
    typ: str
    name: str
    inputs: Mapping[str, Any]


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str
    message: str

    def __str__(self) -> str:
        return f"[{self.policy}] {self.resource}: {self.message}"


# --- tags --------------------------------------------------------------------------------

def resource_tags(r: Resource) -> dict[str, str] | None:
    """A resource's tags; ASG tags come as a list of {key, value, propagateAtLaunch}."""
    tags = r.inputs.get("tags")
    if r.typ == "aws:autoscaling/group:Group" and isinstance(tags, list):
        return cast(dict[str, str], {t.get("key"): t.get("value") for t in tags if isinstance(t, Mapping)})
    return dict(tags) if isinstance(tags, Mapping) else None


def check_tags(resource: Resource, stack: str | None = None) -> list[Violation]:
    """Every taggable AWS resource carries agentdeploy's stack and managed-by tags (and the
    stack's own name); ASGs also propagate them to their instances and carry role gpu-fleet."""
    if not resource.typ.startswith("aws:") or resource.typ in UNTAGGABLE:
        return []
    tags = resource_tags(resource)
    if not tags:
        return [Violation("tags", resource.name, f"{resource.typ} has no tags")]
    out = []
    for key in (TAG_STACK, TAG_MANAGED_BY):
        if not tags.get(key):
            out.append(Violation("tags", resource.name, f"missing tag {key}"))
    if tags.get(TAG_MANAGED_BY) not in (None, MANAGED_BY_VALUE):
        out.append(Violation("tags", resource.name, f"{TAG_MANAGED_BY} is {tags.get(TAG_MANAGED_BY)!r}"))
    if stack is not None and tags.get(TAG_STACK) not in (None, stack):
        out.append(Violation("tags", resource.name, f"{TAG_STACK} is {tags.get(TAG_STACK)!r}, not {stack!r}"))
    if resource.typ == "aws:autoscaling/group:Group":
        not_propagated = [t.get("key") for t in resource.inputs.get("tags", []) if not t.get("propagateAtLaunch")]
        if not_propagated:
            out.append(Violation("tags", resource.name, f"tags not propagated to instances: {not_propagated}"))
        if tags.get(TAG_ROLE) != ROLE_GPU_FLEET or not tags.get(TAG_AGENT):
            out.append(Violation("tags", resource.name, f"an ASG needs {TAG_ROLE}={ROLE_GPU_FLEET} and {TAG_AGENT}"))
    return out


# --- secret values where they do not belong --------------------------------------------------

def _decoded(text: str) -> list[str]:
    out = [text]
    try:
        raw = base64.b64decode(text, validate=True)
        # GPU nodes' user data is gzip-compressed (templates/gpu_node.encode_user_data)
        out.append((gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError, OSError, EOFError):
        pass
    return out


#: Key marking a value the engine treats as secret on the wire ({SIG: SECRET_SIG, "value": v}).
_SIG_KEY = "4dabf18193072939515e22adb298388d"


def plain(value: Any) -> Any:
    """A value with Pulumi's secret envelopes removed (what AWS will actually receive)."""
    if isinstance(value, Mapping):
        if _SIG_KEY in value and "value" in value:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def exposed_texts(resource: Resource) -> list[tuple[str, str]]:
    """(where, text) for every input that ends up readable by people or instances: user data,
    SSM parameter values (String types), container environment, Lambda environment."""
    i, out = plain(resource.inputs), []
    if resource.typ in ("aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance"):
        if isinstance(i.get("userData"), str):
            out += [("userData", t) for t in _decoded(i["userData"])]
    elif resource.typ == "aws:ssm/parameter:Parameter":
        if i.get("type") != "SecureString" and isinstance(i.get("value"), str):
            out.append(("value", i["value"]))
    elif resource.typ == "aws:ecs/taskDefinition:TaskDefinition":
        try:
            containers = json.loads(i.get("containerDefinitions") or "[]")
        except (TypeError, json.JSONDecodeError):
            containers = []
        for c in containers:
            for env in c.get("environment", []):
                out.append((f"container {c.get('name')} env {env.get('name')}", str(env.get("value", ""))))
    elif resource.typ == "aws:lambda/function:Function":
        for k, v in ((i.get("environment") or {}).get("variables") or {}).items():
            out.append((f"env {k}", str(v)))
    return out


def check_no_secret_values(resource: Resource) -> list[Violation]:
    out = []
    for where, text in exposed_texts(resource):
        for label, pattern in SECRET_PATTERNS.items():
            if pattern.search(text):
                out.append(Violation("no-secret-values", resource.name,
                                     f"{where} contains what looks like a {label}; reference it by ARN instead"))
    return out


# --- IAM scoped to named ARNs -------------------------------------------------------------

#: Actions that have no resource-level ARNs; allowed on "*" only with the given condition key.
UNSCOPABLE = {"cloudwatch:PutMetricData": "cloudwatch:namespace",
              # the gateway's discovery reads: no resource types; kept to the stack's region
              "autoscaling:DescribeAutoScalingGroups": "aws:RequestedRegion",
              "ec2:DescribeInstances": "aws:RequestedRegion",
              "elasticloadbalancing:DescribeTargetHealth": "aws:RequestedRegion"}


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


#: What Secrets Manager appends to a secret's name in its ARN ("-" and six random characters);
#: "-??????" matches exactly that and nothing else, so it is the one wildcard a secret may carry.
SECRET_ARN_SUFFIX = "-??????"


#: Every log stream of one named log group: the narrowest ARN PutLogEvents takes for streams
#: named per instance at run time.
LOG_STREAMS_OF_ONE_GROUP = re.compile(r"arn:aws[\w-]*:logs:[\w-]+:\d{12}:log-group:[^*?:]+:log-stream:\*")


def too_broad(arn: str) -> bool:
    """A resource that names no single thing: "*" or a trailing ":*"; for Secrets Manager and
    SSM, a whole path ("/*"); for a secret, any wildcard in its name beyond the random suffix
    (`-*` also matches a longer name's secret: agentdeploy/dev/key-* matches key-old-AbC123)."""
    if arn == "*":
        return True
    if LOG_STREAMS_OF_ONE_GROUP.fullmatch(arn):
        return False
    if arn.endswith(":*"):
        return True
    parts = arn.split(":", 5)
    if len(parts) >= 6 and parts[2] == "logs":
        return "*" in arn or "?" in arn  # only LOG_STREAMS_OF_ONE_GROUP may wildcard
    if len(parts) < 6 or parts[2] not in ("secretsmanager", "ssm"):
        return False
    if arn.endswith("/*"):
        return True
    if parts[2] == "secretsmanager":
        name = parts[5].removeprefix("secret:").removesuffix(SECRET_ARN_SUFFIX)
        return "*" in name or "?" in name
    return False


def check_iam_scoped(resource: Resource) -> list[Violation]:
    """Inline role policies allow only named ARNs (see too_broad), except actions that cannot
    be scoped, which must carry their scoping condition."""
    if resource.typ != "aws:iam/rolePolicy:RolePolicy":
        return []
    raw = plain(resource.inputs.get("policy"))
    try:
        doc = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return [Violation("iam-scoped", resource.name, "policy is not valid JSON")]
    out = []
    for st in _as_list((doc or {}).get("Statement", [])):
        if st.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in _as_list(st.get("Action", []))]
        resources = [str(r) for r in _as_list(st.get("Resource", []))]
        if any("*" in a for a in actions):
            out.append(Violation("iam-scoped", resource.name, f"wildcard action in {actions}"))
        wild = [r for r in resources if too_broad(r)]
        if not wild:
            continue
        cond_keys = {k for op in (st.get("Condition") or {}).values() for k in op}
        if not actions or any(UNSCOPABLE.get(a) not in cond_keys for a in actions):
            out.append(Violation("iam-scoped", resource.name, f"{actions} allowed on {wild}; name the ARNs"))
    return out


# --- capacity within the plan ----------------------------------------------------------------

def check_asg_within(resource: Resource, max_replicas: Mapping[str, int] | int) -> list[Violation]:
    """An ASG's max size is at most the plan's max_replicas for its agent (or a flat ceiling)."""
    if resource.typ != "aws:autoscaling/group:Group":
        return []
    agent = (resource_tags(resource) or {}).get(TAG_AGENT)
    limit = max_replicas if isinstance(max_replicas, int) else max_replicas.get(agent or "")
    size = resource.inputs.get("maxSize")
    if limit is None:
        return [Violation("asg-within-plan", resource.name, f"agent {agent!r} has no fleet in the plan")]
    if not isinstance(size, (int, float)) or size > limit:
        return [Violation("asg-within-plan", resource.name, f"maxSize {size} exceeds the plan's {limit}")]
    return []


def plan_limits(plan: Any) -> dict[str, int]:
    return {a.name: a.fleet.max_replicas for a in plan.agents if a.fleet is not None}


def check_all(resources: Iterable[Resource], stack: str | None = None,
              max_replicas: Mapping[str, int] | int | None = None) -> list[Violation]:
    out: list[Violation] = []
    for r in resources:
        out += check_tags(r, stack) + check_no_secret_values(r) + check_iam_scoped(r)
        if max_replicas is not None:
            out += check_asg_within(r, max_replicas)
    return out
