"""The policy checks as a Pulumi policy pack (pulumi_policy), kept apart from the checks so
they stay importable without it. `policies/__main__.py` calls `build_pack()`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentdeploy.stacks.limits import check_limits
from agentdeploy.stacks.policy import (
    Resource,
    Violation,
    check_asg_within,
    check_iam_scoped,
    check_no_secret_values,
    check_tags,
)

DEFAULT_MAX_REPLICAS = 16


def _resource(args: Any) -> Resource:
    return Resource(args.resource_type, args.name, dict(args.props or {}))


def make_validator(check: Callable[[Resource, Any], list[Violation]]) -> Callable[[Any, Callable], None]:
    """Adapt a check to pulumi_policy's (args, report_violation) validator signature."""

    def validate(args: Any, report_violation: Callable[..., None]) -> None:
        for v in check(_resource(args), args):
            report_violation(v.message, args.urn)

    return validate


def _max_replicas(args: Any) -> int:
    try:
        return int((args.get_config() or {}).get("maxReplicas", DEFAULT_MAX_REPLICAS))
    except (AttributeError, TypeError, ValueError):
        return DEFAULT_MAX_REPLICAS


VALIDATORS: dict[str, tuple[str, Callable[[Resource, Any], list[Violation]]]] = {
    "agentdeploy-tags": ("Every taggable resource carries agentdeploy's stack and managed-by tags.",
                         lambda r, _a: check_tags(r)),
    "no-secret-values": ("No credential-looking value in user data, SSM parameters or container environment.",
                         lambda r, _a: check_no_secret_values(r)),
    "iam-scoped": ("Inline IAM policies allow only named ARNs (or unscopable actions with their condition).",
                   lambda r, _a: check_iam_scoped(r)),
    "asg-within-ceiling": ("GPU Auto Scaling groups stay within the configured replica ceiling.",
                           lambda r, a: check_asg_within(r, _max_replicas(a))),
    "aws-limits": ("Names, descriptions, user data, tags and ports within what the AWS APIs accept.",
                   lambda r, _a: check_limits([r])),
}


def policies() -> list[Any]:
    """The pack's policies (constructing them does not start anything, so tests call them)."""
    from pulumi_policy import ResourceValidationPolicy

    out = []
    for name, (description, check) in VALIDATORS.items():
        kwargs: dict[str, Any] = {}
        if name == "asg-within-ceiling":
            kwargs["config_schema"] = _ceiling_schema()
        out.append(ResourceValidationPolicy(name=name, description=description,
                                            validate=make_validator(check), **kwargs))
    return out


def build_pack() -> Any:
    """Serve the pack to the Pulumi engine (PolicyPack's constructor runs the analyzer)."""
    from pulumi_policy import EnforcementLevel, PolicyPack

    return PolicyPack(name="agentdeploy", enforcement_level=EnforcementLevel.MANDATORY, policies=policies())


def _ceiling_schema() -> Any:
    from pulumi_policy import PolicyConfigSchema

    return PolicyConfigSchema(properties={"maxReplicas": {"type": "integer", "default": DEFAULT_MAX_REPLICAS}})
