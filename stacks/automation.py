"""`deploy preview/up/down/refresh/outputs` through Pulumi's Automation API.

The program is the project's own (Pulumi.yaml at the root, `main: stacks/`), so `deploy up`
and a pipeline's plain `pulumi up` run the same code against the same state. Two things the
Automation API does not do for us, done here:

- stack configs live in stacks/ (`stackConfigDir`), which the Python Automation API ignores:
  we resolve the file with agentdeploy.stackconfig (as the CLI does) and pass it to every
  operation as `--config-file`;
- no Pulumi Cloud: state goes to a local file backend (~/.agentdeploy/state, or
  $PULUMI_BACKEND_URL, e.g. s3://bucket for a team) with the passphrase secrets provider.

Missing prerequisites (Pulumi CLI, AWS credentials, passphrase) are checked first and each
becomes one MissingDependency saying what to install or set.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from agentdeploy.errors import InvalidInput, MissingDependency, OperationFailed, PartialChange
from agentdeploy.stackconfig import load_stack_config

Operation = Literal["preview", "up", "destroy", "refresh"]
DEFAULT_SECRETS_PROVIDER = "passphrase"
INSTALL_PULUMI = ("install the Pulumi CLI (https://www.pulumi.com/docs/iac/download-install/: "
                  "`curl -fsSL https://get.pulumi.com | sh` or `brew install pulumi`), then re-run")


@dataclass(frozen=True)
class StackTarget:
    stack: str
    project_root: Path
    config_file: Path
    decision_file: Path
    #: The plan file the stack config names (None: the default beside the decision file).
    plan_file: Path | None
    backend_url: str
    secrets_provider: str


def default_backend(environ: Mapping[str, str]) -> str:
    home = Path(environ.get("AGENTDEPLOY_HOME") or Path.home() / ".agentdeploy")
    return f"file://{home / 'state'}"


def resolve_target(stack: str, environ: Mapping[str, str] | None = None, project_root: Path | None = None) -> StackTarget:
    env = os.environ if environ is None else environ
    cfg = load_stack_config(stack, project_root)
    decision = cfg.decision_file
    if not decision.is_file():
        raise InvalidInput(
            f"{cfg.config_file}: decision file {decision} does not exist",
            hint="fix `agentdeploy:decisionFile` in the stack config (paths are relative to the project root)",
        )
    raw = yaml.safe_load(cfg.config_file.read_text()) or {}
    return StackTarget(
        stack=stack, project_root=cfg.project_root, config_file=cfg.config_file, decision_file=decision,
        plan_file=cfg.plan_file,
        backend_url=env.get("PULUMI_BACKEND_URL") or default_backend(env),
        secrets_provider=str(raw.get("secretsprovider") or DEFAULT_SECRETS_PROVIDER),
    )


def _aws_credentials_present() -> bool:
    try:
        import boto3
    except ImportError:
        raise MissingDependency("boto3 is not installed", hint="pip install 'agentdeploy[cloud]'") from None
    return boto3.Session().get_credentials() is not None


def check_prerequisites(target: StackTarget, environ: Mapping[str, str] | None = None, *, need_aws: bool = True,
                        which: Callable[[str], str | None] = shutil.which,
                        aws_credentials: Callable[[], bool] = _aws_credentials_present) -> None:
    env = os.environ if environ is None else environ
    from importlib.util import find_spec

    if find_spec("pulumi") is None:
        raise MissingDependency("the pulumi Python SDK is not installed", hint="pip install 'agentdeploy[cloud]'")
    if which("pulumi") is None:
        raise MissingDependency("the Pulumi CLI (`pulumi`) is not on PATH", hint=INSTALL_PULUMI)
    if (need_aws or target.backend_url.startswith("s3://")) and not aws_credentials():
        raise MissingDependency(
            "no AWS credentials found",
            hint="set AWS_PROFILE (and run `aws sso login` if it uses SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        )
    if target.secrets_provider == "passphrase" and not (
        env.get("PULUMI_CONFIG_PASSPHRASE") is not None or env.get("PULUMI_CONFIG_PASSPHRASE_FILE")
    ):
        raise MissingDependency(
            f"stack {target.stack} encrypts its secrets with a passphrase, and none is set",
            hint="export PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) with the stack's passphrase",
        )


def _workspace_env(target: StackTarget) -> dict[str, str]:
    if target.backend_url.startswith("file://"):
        Path(target.backend_url[len("file://"):]).expanduser().mkdir(parents=True, exist_ok=True)
    return {"PULUMI_BACKEND_URL": target.backend_url, "PULUMI_SKIP_UPDATE_CHECK": "true"}


def open_stack(target: StackTarget, create: bool) -> Any:
    """Select the stack (creating it for preview/up). The workspace is the project root, so
    the engine runs Pulumi.yaml's `main: stacks/` program, exactly as plain `pulumi up`."""
    from pulumi import automation as auto

    opts = auto.LocalWorkspaceOptions(work_dir=str(target.project_root), env_vars=_workspace_env(target),
                                      secrets_provider=target.secrets_provider)
    try:
        if create:
            return auto.create_or_select_stack(target.stack, work_dir=str(target.project_root), opts=opts)
        return auto.select_stack(target.stack, work_dir=str(target.project_root), opts=opts)
    except FileNotFoundError:
        raise MissingDependency("the Pulumi CLI (`pulumi`) is not on PATH", hint=INSTALL_PULUMI) from None
    except auto.StackNotFoundError:
        raise InvalidInput(
            f"stack {target.stack} has no state in {target.backend_url}",
            hint=f"run `deploy up --stack {target.stack}` first (or set PULUMI_BACKEND_URL to where its state lives)",
        ) from None
    except auto.CommandError as err:
        raise OperationFailed(f"pulumi could not open stack {target.stack}", details=_tail(str(err))) from None


@dataclass
class OperationResult:
    stack: str
    operation: str
    succeeded: bool
    changes: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    stdout: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "operation": self.operation, "result": "succeeded" if self.succeeded else "failed",
                "changes": self.changes, "outputs": self.outputs, "duration_s": round(self.duration_s, 1)}


def run_operation(target: StackTarget, operation: Operation, progress: Any, *, on_output: Callable[[str], None] | None = None) -> OperationResult:
    """Run one operation; failures become DeployErrors whose exit code says what happened."""
    from pulumi import automation as auto

    stack = open_stack(target, create=operation in ("preview", "up"))
    kwargs: dict[str, Any] = {"on_event": progress, "config_file": str(target.config_file), "color": "never"}
    if on_output is not None:
        kwargs["on_output"] = on_output
    started = time.monotonic()
    try:
        if operation == "preview":
            res = stack.preview(diff=False, **kwargs)
            changes = _ops(res.change_summary)
        elif operation == "up":
            res = stack.up(**kwargs)
            changes = _ops(res.summary.resource_changes if res.summary else None)
        elif operation == "destroy":
            res = stack.destroy(**kwargs)
            changes = _ops(res.summary.resource_changes if res.summary else None)
        else:
            res = stack.refresh(**kwargs)
            changes = _ops(res.summary.resource_changes if res.summary else None)
    except auto.CommandError as err:
        raise _failure(target, operation, progress, err) from None
    outputs = {}
    if operation in ("up", "refresh"):
        outputs = {k: ("[secret]" if v.secret else v.value) for k, v in getattr(res, "outputs", {}).items()}
    return OperationResult(target.stack, operation, True, changes or dict(progress.changes), outputs,
                           time.monotonic() - started, getattr(res, "stdout", ""))


def _ops(summary: Mapping[Any, int] | None) -> dict[str, int]:
    """Change counts keyed by plain op names ("create", "same", ...)."""
    return {str(getattr(k, "value", k)): int(v) for k, v in (summary or {}).items()}


def _tail(text: str, lines: int = 12) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()][-lines:]


def _failure(target: StackTarget, operation: str, progress: Any, err: Exception) -> Exception:
    details = progress.errors[-8:] or _tail(str(err))
    if operation in ("up", "destroy") and progress.applied:
        return PartialChange(
            f"`{operation}` of stack {target.stack} failed part way: applied {progress.applied_summary()}; "
            f"failed: {', '.join(progress.failed) or 'see below'}",
            details=details,
            hint=f"fix the cause and run `deploy {'up' if operation == 'up' else 'down'} --stack {target.stack}` again; "
                 "Pulumi resumes from the recorded state",
        )
    return OperationFailed(f"`{operation}` of stack {target.stack} failed; nothing was changed"
                           if operation in ("up", "destroy") else f"`{operation}` of stack {target.stack} failed",
                           details=details)


def read_outputs(target: StackTarget) -> dict[str, Any]:
    stack = open_stack(target, create=False)
    from pulumi import automation as auto

    try:
        return {k: ("[secret]" if v.secret else v.value) for k, v in stack.outputs().items()}
    except auto.CommandError as err:
        raise OperationFailed(f"could not read the outputs of stack {target.stack}", details=_tail(str(err))) from None
