"""Runs the real Pulumi program under Pulumi's mock runtime and records every resource.

preview=False so outputs resolve and every apply() runs (with preview=True, callbacks are
skipped and assertions pass vacuously). The mocks answer what AWS would compute (ARNs,
names, DNS names) and the two data-source calls the program makes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from agentdeploy.planner import build_plan, load_catalog, load_decision_file
from agentdeploy.planner.plan import Plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict[str, Any]


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[Recorded] = []
        self.calls: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        self.resources.append(Recorded(args.typ, args.name, dict(args.inputs)))
        state = dict(args.inputs)
        rid = f"{args.name}-id"
        kind = args.typ.split(":")[-1].lower()
        state.setdefault("arn", f"arn:aws:{kind}:us-east-1:123456789012:{args.name}")
        state.setdefault("name", args.inputs.get("name") or args.name)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "generated-vllm-key-" + args.name
        if args.typ == "aws:lb/loadBalancer:LoadBalancer":
            state["dnsName"] = f"{args.name}.elb.example"
        if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = "lt-" + args.name
            state["latestVersion"] = 1
        if args.typ in ("aws:lb/loadBalancer:LoadBalancer", "aws:lb/targetGroup:TargetGroup"):
            state["arnSuffix"] = f"app/{args.name}/0123456789abcdef"
        if args.typ == "aws:cloudwatch/logGroup:LogGroup":  # the ARN's real shape (IAM checks read it)
            state["arn"] = f"arn:aws:logs:us-east-1:123456789012:log-group:{args.inputs.get('name') or args.name}"
        if args.typ == "docker-build:index:Image":
            state["digest"] = "sha256:" + "0" * 64
        if args.typ == "aws:ecr/repository:Repository":
            state["repositoryUrl"] = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{args.inputs.get('name')}"
            state["registryId"] = "123456789012"
        if args.typ == "aws:elasticache/replicationGroup:ReplicationGroup":
            state["primaryEndpointAddress"] = f"{args.name}.cache.amazonaws.com"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "ecr-token", "authorizationToken": "x", "proxyEndpoint": "https://ecr"}
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args.get("name"), "value": "ami-0gpu", "type": "String"}
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0gpu", "imageId": "ami-0gpu", "name": "Deep Learning Base OSS Nvidia Driver GPU AMI"}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return {"names": ["us-east-1a", "us-east-1b", "us-east-1c"], "zoneIds": ["use1-az1", "use1-az2", "use1-az3"]}
        return {}

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_contains: str = "") -> Recorded:
        found = [r for r in self.of_type(typ) if name_contains in r.name]
        assert len(found) == 1, f"expected one {typ} named *{name_contains}*, found {[r.name for r in found]}"
        return found[0]


def mixed_decision_file(tmp: Path) -> Path:
    """One decision file with API, batch and GPU agents: the service business's three agents
    plus the high-volume ticket router (self-hosted)."""
    business = yaml.safe_load((EXAMPLES / "service-business.yaml").read_text())
    router = yaml.safe_load((EXAMPLES / "high-volume-router.yaml").read_text())
    business["agents"]["ticket-router"] = router["agents"]["ticket-router"]
    path = tmp / "mixed.yaml"
    path.write_text(yaml.safe_dump(business, sort_keys=False))
    return path


def run_mixed(tmp: Path) -> Run:
    """The program over `mixed_decision_file` in us-east-1, with a test Anthropic key."""
    return run_main({"agentdeploy:decisionFile": str(mixed_decision_file(tmp)), "aws:region": "us-east-1",
                     "agentdeploy:anthropicApiKey": "sk-ant-test-key-000000"},
                    secret_keys=["agentdeploy:anthropicApiKey"])


def mixed_plan(tmp: Path, stack: str = "test") -> Plan:
    plan = build_plan(load_decision_file(mixed_decision_file(tmp)))
    routes = {a.route for a in plan.agents}
    assert routes == {"api", "batch", "gpu"}, f"fixture plan must cover every route, got {routes}"
    return plan.model_copy(update={"stack": stack})


@dataclass
class Run:
    mocks: RecordingMocks
    exports: dict[str, Any] = field(default_factory=dict)
    #: SecretVersion logical name -> whether its secret_string is a Pulumi secret.
    secret_flags: dict[str, bool] = field(default_factory=dict)
    error: BaseException | None = None


#: A tiny stand-in for the node agent's wheel (the program hashes and uploads it; building the
#: real one takes a minute, done once in tests/test_layout.py and the boot-path test).
FAKE_WHEEL = Path(tempfile.gettempdir()) / "agentdeploy-test-wheel" / "agentdeploy-0.1.0-py3-none-any.whl"
TLS = {"agentdeploy:certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/test",
       "agentdeploy:gatewayDomain": "gateway.example.com"}


HF_KEY = "agentdeploy:huggingFaceToken"


def with_test_defaults(config: dict[str, str]) -> dict[str, str]:
    """A correctly configured stack unless the test says otherwise: HTTPS on the gateway, a
    prebuilt node wheel."""
    out = dict(config)
    if not {"agentdeploy:gatewayScheme", "agentdeploy:gatewayPlainHttp", "agentdeploy:certificateArn"} & set(out):
        out.update(TLS)
    if "agentdeploy:nodeWheel" not in out:
        FAKE_WHEEL.parent.mkdir(parents=True, exist_ok=True)
        if not FAKE_WHEEL.exists():
            FAKE_WHEEL.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip archive
        out["agentdeploy:nodeWheel"] = str(FAKE_WHEEL)
    return out


def run_main(config: dict[str, str], secret_keys: list[str], stack: str = "test") -> Run:
    """Run stacks/program.py:main() as `pulumi up` would, with this stack config."""
    from agentdeploy.stacks import program

    # Pulumi's test runtime runs on asyncio.get_event_loop(). Once any earlier test has used
    # asyncio.run() (which ends with set_event_loop(None)), that call raises in the main thread
    # on Python 3.11, so whether these tests pass would depend on test order. Each run gets a
    # loop of its own.
    asyncio.set_event_loop(asyncio.new_event_loop())
    config = with_test_defaults(config)
    secret_keys = list(secret_keys)
    if HF_KEY not in config:
        config[HF_KEY] = "hf_test_token_000000"
        secret_keys.append(HF_KEY)
    elif config[HF_KEY] is None:  # the test wants a stack without the token
        del config[HF_KEY]
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="agentdeploy", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config, secret_keys)
    run = Run(mocks)
    captured: dict[str, Any] = {}
    versions: list[Any] = []

    original_export = pulumi.export
    original_version = _patch_secret_versions(versions)

    @pulumi.runtime.test
    def body():
        pulumi.export = lambda k, v: captured.__setitem__(k, v)  # type: ignore[assignment]
        try:
            program.main()
        finally:
            pulumi.export = original_export  # type: ignore[assignment]

        async def collect():
            for v in versions:
                run.secret_flags[v._name] = await v.secret_string.is_secret()
            run.exports.update(await _resolve(captured))

        return pulumi.Output.from_input(asyncio.ensure_future(collect()))

    try:
        body()
    finally:
        _unpatch_secret_versions(original_version)
    return run


async def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        return await _resolve(await value.future())
    if isinstance(value, dict):
        return {k: await _resolve(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [await _resolve(v) for v in value]
    return value


def _patch_secret_versions(sink: list) -> Callable:
    import pulumi_aws as aws

    cls = aws.secretsmanager.SecretVersion
    original = cls.__init__

    def init(self, resource_name, *args, **kwargs):
        original(self, resource_name, *args, **kwargs)
        self._name = resource_name
        sink.append(self)

    cls.__init__ = init
    return original


def _unpatch_secret_versions(original: Callable) -> None:
    import pulumi_aws as aws

    aws.secretsmanager.SecretVersion.__init__ = original


def strings_in(value: Any) -> list[str]:
    """Every string inside a value, plus the decoded text of any base64 string (user data)."""
    out: list[str] = []
    if isinstance(value, str):
        out.append(value)
        try:
            decoded = base64.b64decode(value, validate=True).decode()
            out.append(decoded)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
        try:
            out.extend(strings_in(json.loads(value)))
        except (json.JSONDecodeError, ValueError):
            pass
    elif isinstance(value, dict):
        for k, v in value.items():
            out.extend(strings_in(k))
            out.extend(strings_in(v))
    elif isinstance(value, (list, tuple)):
        for v in value:
            out.extend(strings_in(v))
    return out


def catalog():
    return load_catalog(include_home=False)


def with_gateway(tmp: Path, example: str = "service-business.yaml") -> Path:
    """The example with `stack.gateway: true`: a stack the planner would leave gateway-less,
    forced to run the gateway (what the gateway's own tests provision)."""
    doc = yaml.safe_load((EXAMPLES / example).read_text())
    doc["stack"]["gateway"] = True
    path = tmp / f"gateway-{example}"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def dev_with_gateway(tmp: Path) -> dict[str, str]:
    """The committed dev stack's config (plain-HTTP opt-out included) over its decision file
    with the gateway forced on."""
    from agentdeploy.stacks.dryrun import stack_config_values

    config, _ = stack_config_values(ROOT / "stacks" / "Pulumi.dev.yaml")
    config["agentdeploy:decisionFile"] = str(with_gateway(tmp))
    return config
