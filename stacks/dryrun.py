"""Run the Pulumi program without the Pulumi engine or AWS, to check what it would register.

`deploy preview` runs this before Pulumi: the real program, under Pulumi's own mock runtime
(`pulumi.runtime.set_mocks`), records every resource with its inputs; `limits.check_limits`
then applies AWS's published limits to them. A violation fails the preview naming the
resource and the rule, instead of an error from the provider half way through.

Secret config values are unknown here (encrypted in the stack config): each set secret key
gets a placeholder, so the resource graph is the same as with the real values.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentdeploy.stacks.policy import Resource, Violation

#: Placeholder values for secret config keys the stack sets (only their presence matters here).
SECRET_PLACEHOLDERS = {
    "agentdeploy:anthropicApiKey": "placeholder-anthropic-key",
    "agentdeploy:gatewayClientKeys": "",
    "agentdeploy:huggingFaceToken": "placeholder-hf-token",
}


@dataclass
class DryRun:
    resources: list[Resource] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


def _mocks_class() -> type:
    import pulumi

    class DryRunMocks(pulumi.runtime.Mocks):
        """Answers what AWS would compute (ids, ARNs, DNS names) and the program's look-ups."""

        def __init__(self, region: str) -> None:
            self.region = region
            self.records: list[Resource] = []

        def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
            self.records.append(Resource(args.typ, args.name, dict(args.inputs)))
            state = dict(args.inputs)
            kind = args.typ.split(":")[-1].lower()
            state.setdefault("arn", f"arn:aws:{kind}:{self.region}:123456789012:{args.name}")
            state.setdefault("name", args.inputs.get("name") or args.name)
            if args.typ == "random:index/randomPassword:RandomPassword":
                state["result"] = "dry-run-" + args.name
            if args.typ == "aws:lb/loadBalancer:LoadBalancer":
                state["dnsName"] = f"{args.name}.{self.region}.elb.amazonaws.com"
            if args.typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
                state["arnSuffix"] = f"app/{args.name}/0123456789abcdef"
            if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
                state["latestVersion"] = 1
            if args.typ == "docker-build:index:Image":
                state["digest"] = "sha256:" + "0" * 64
            if args.typ == "aws:ecr/repository:Repository":
                state["repositoryUrl"] = f"123456789012.dkr.ecr.{self.region}.amazonaws.com/{args.inputs.get('name')}"
                state["registryId"] = "123456789012"
            if args.typ == "aws:elasticache/replicationGroup:ReplicationGroup":
                state["primaryEndpointAddress"] = f"{args.name}.cache.amazonaws.com"
            return f"{args.name}-id", state

        def call(self, args: Any) -> Any:
            token = args.token
            if token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
                return {"userName": "AWS", "password": "dry-run", "authorizationToken": "x", "proxyEndpoint": "https://ecr"}
            if token == "aws:ec2/getAmi:getAmi":
                return {"id": "ami-dryrun", "imageId": "ami-dryrun"}
            if token == "aws:ssm/getParameter:getParameter":
                return {"name": args.args.get("name"), "value": "ami-dryrun", "type": "String"}
            if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
                return {"names": [f"{self.region}{z}" for z in "abc"], "zoneIds": ["z1", "z2", "z3"]}
            return {}

    return DryRunMocks


def stack_config_values(config_file: Path) -> tuple[dict[str, str], list[str]]:
    """(config as the engine passes it, the secret keys) from a Pulumi.<stack>.yaml."""
    raw = (yaml.safe_load(config_file.read_text()) or {}).get("config") or {}
    values: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in raw.items():
        if isinstance(value, dict) and "secure" in value:
            values[key] = SECRET_PLACEHOLDERS.get(key, "placeholder")
            secrets.append(key)
        elif isinstance(value, (list, dict)):
            values[key] = json.dumps(value)
        elif isinstance(value, bool):
            values[key] = "true" if value else "false"
        else:
            values[key] = str(value)
    return values, secrets


def dry_run(config: dict[str, str], secret_keys: list[str], stack: str) -> DryRun:
    """Run `stacks.program.main` under the mock runtime with this config; every resource it
    registers and every warning it logs come back. Program errors propagate (DeployError)."""

    from agentdeploy.stacks import program

    region = config.get("aws:region", "us-east-1")
    mocks = _mocks_class()(region)
    previous = asyncio.get_event_loop_policy()
    policy = _LoopTracking()
    asyncio.set_event_loop_policy(policy)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return _run_program(program, mocks, config, secret_keys, stack)
    finally:
        _finish(loop)
        for made in policy.loops:
            made.close()
        asyncio.set_event_loop_policy(previous)


class _LoopTracking(asyncio.DefaultEventLoopPolicy):
    """Remembers every event loop made during the dry run: the mock runtime makes one in each of
    its executor threads and never closes them. A loop left open is destroyed at interpreter
    exit (or in a later garbage collection) in no fixed order, and when its self-pipe socket is
    finalised first the loop's own close fails: a traceback on stderr after the command's
    output. Closing each one explicitly, once its thread is done, leaves nothing to chance."""

    def __init__(self) -> None:
        super().__init__()
        self.loops: list[asyncio.AbstractEventLoop] = []

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        loop = super().new_event_loop()
        self.loops.append(loop)
        return loop


def _finish(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the run's loop and end its executor threads (joined), so no loop
    is in use when they are all closed."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())


def _run_program(program: Any, mocks: Any, config: dict[str, str], secret_keys: list[str], stack: str) -> DryRun:
    import pulumi

    pulumi.runtime.set_mocks(mocks, project="agentdeploy", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys)
    result = DryRun()
    original_export, original_warn = pulumi.export, pulumi.log.warn
    errors: list[BaseException] = []

    @pulumi.runtime.test
    def body() -> None:
        pulumi.export = lambda name, value: result.outputs.__setitem__(name, value)
        pulumi.log.warn = lambda msg, *a, **k: result.warnings.append(str(msg))
        try:
            program._main()
        except BaseException as err:  # re-raised below, outside the engine's wrapper
            errors.append(err)
        finally:
            pulumi.export, pulumi.log.warn = original_export, original_warn

    body()
    if errors:
        raise errors[0]
    result.resources = list(mocks.records)
    return result


@dataclass
class StackCheck:
    violations: list[Violation]
    warnings: list[str]
    resources: int


def check_stack(config_file: Path, stack: str, assume_secrets: tuple[str, ...] = ()) -> StackCheck:
    """AWS limit violations and program warnings for a stack config; `assume_secrets`: secret
    keys to treat as set although the file has none (a committed example)."""
    from agentdeploy.stacks.limits import check_limits

    config, secrets = stack_config_values(config_file)
    for key in assume_secrets:
        if key not in config:
            config[key] = SECRET_PLACEHOLDERS.get(key, "placeholder")
            secrets.append(key)
    run = dry_run(config, secrets, stack)
    return StackCheck(check_limits(run.resources), run.warnings, len(run.resources))


def preflight(config_file: Path, stack: str) -> StackCheck:
    """What `deploy preview` and `up` run before Pulumi: the program under the mock runtime,
    AWS's limits over what it registers. Violations raise InvalidInput (exit 2) naming each
    resource and rule; the program's warnings (e.g. the plain-HTTP opt-out) come back."""
    from agentdeploy.errors import InvalidInput

    # A missing Anthropic key is the program's own error (with its fix); here only limits matter.
    check = check_stack(config_file, stack, assume_secrets=("agentdeploy:anthropicApiKey",))
    violations = check.violations
    if violations:
        raise InvalidInput(
            f"stack {stack}: {len(violations)} resource(s) break AWS limits; `pulumi up` would fail",
            details=[str(v) for v in violations],
            hint="shorten the named agent or stack, or change the config value named above")
    return check
