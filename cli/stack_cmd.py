"""`deploy preview | up | down | refresh | outputs --stack NAME`: provisioning commands.

Thin: options, confirmation and printing here; the Automation API work is in
agentdeploy.stacks.automation, imported inside each command so `deploy --help` never pays
for pulumi or boto3.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

_stack = click.option("--stack", "-s", "stack", required=True, envvar="AGENTDEPLOY_STACK", show_envvar=True,
                      help="Stack name: its config is stacks/Pulumi.<NAME>.yaml.")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON document (no progress, no prompts).")
_yes = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (pipelines).")


def _console(as_json: bool):
    from rich.console import Console

    return None if as_json else Console(stderr=True)


def _prepare(stack: str, *, need_aws: bool = True, applies_plan: bool = False):
    """The stack's target, its prerequisites checked; for preview/up also its plan file, so a
    stale one is refused (exit 2) before the Pulumi engine starts (the program refuses it too)."""
    from agentdeploy.stacks.automation import check_prerequisites, resolve_target

    target = resolve_target(stack)
    if applies_plan:
        from agentdeploy.planner.planfile import check_plan_file

        check_plan_file(target.decision_file, target.plan_file)
    check_prerequisites(target, need_aws=need_aws)
    if applies_plan:
        _preflight(target)
    return target


def _preflight(target) -> None:
    """AWS's limits over every resource the program would register, before Pulumi runs; the
    program's warnings (plain HTTP on the internet) are printed every time."""
    from agentdeploy.stacks.dryrun import preflight

    for warning in preflight(target.config_file, target.stack).warnings:
        click.echo(f"warning: {warning}", err=True)
    _check_capacity(target)


def _check_capacity(target) -> None:
    """GPU quota and zone offerings for the plan's fleets (AWS read-only calls); a quota too
    small for one node stops here (exit 4) with the request to make."""
    from agentdeploy.errors import MissingDependency
    from agentdeploy.stacks.capacity import check_capacity
    from agentdeploy.stacks.program import load_plan

    plan, _ = load_plan(target.decision_file, target.stack, target.plan_file)
    if not any(a.fleet for a in plan.agents):
        return
    findings = check_capacity(plan)
    for f in findings:
        if f.level == "warning":
            click.echo(f"warning: {f.message}", err=True)
    errors = [f.message for f in findings if f.level == "error"]
    if errors:
        raise MissingDependency(f"stack {target.stack}: the account cannot launch its GPU fleets", details=errors,
                                hint="request the quota (new accounts start at 0 vCPUs; approval can take a day), "
                                     "then run the preview again")


@click.command("check")
@_stack
@_json
def check(stack: str, as_json: bool) -> None:
    """Check a stack offline: the program under Pulumi's mock runtime against AWS's limits.

    Needs no AWS credentials, no Pulumi CLI and no secrets passphrase (what a pull request's
    job may run); `deploy preview` and `up` run the same check first."""
    from agentdeploy.planner.planfile import check_plan_file
    from agentdeploy.stacks.automation import resolve_target
    from agentdeploy.stacks.dryrun import preflight

    target = resolve_target(stack)
    check_plan_file(target.decision_file, target.plan_file)
    result = preflight(target.config_file, stack)
    if as_json:
        _emit({"stack": stack, "resources": result.resources, "violations": [], "warnings": result.warnings})
        return
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"stack {stack}: {result.resources} resources within AWS's limits")


def _run(target, operation: str, as_json: bool, title: str):
    from agentdeploy.stacks.automation import run_operation
    from agentdeploy.stacks.progress import EngineProgress

    with EngineProgress(console=_console(as_json), title=title) as progress:
        return run_operation(target, operation, progress)  # type: ignore[arg-type]


def _changes_line(changes: dict[str, int]) -> str:
    shown = {k: v for k, v in changes.items() if k != "same" and v}
    text = ", ".join(f"{v} to {k}" for k, v in sorted(shown.items())) or "no changes"
    return f"{text} ({changes.get('same', 0)} unchanged)"


def _emit(result_dict: dict[str, Any]) -> None:
    click.echo(json.dumps(result_dict, indent=2, sort_keys=True, default=str))


def _confirm(question: str, yes: bool, as_json: bool) -> None:
    if yes:
        return
    if as_json or not sys.stdin.isatty():
        from agentdeploy.errors import InvalidInput

        raise InvalidInput("this changes cloud resources and needs confirmation", hint="pass --yes to run it without a prompt")
    if not click.confirm(question, default=False, err=True):
        raise click.exceptions.Abort()


@click.command("preview")
@_stack
@_json
def preview(stack: str, as_json: bool) -> None:
    """Show what `deploy up` would change in a stack."""
    target = _prepare(stack, applies_plan=True)
    result = _run(target, "preview", as_json, f"preview {stack}")
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(f"stack {stack}: {_changes_line(result.changes)}")


@click.command("up")
@_stack
@_yes
@_json
def up(stack: str, yes: bool, as_json: bool) -> None:
    """Provision a stack as its plan says (previews and asks first unless --yes)."""
    target = _prepare(stack, applies_plan=True)
    if not yes:
        if as_json or not sys.stdin.isatty():
            _confirm("", yes, as_json)
        result = _run(target, "preview", as_json, f"preview {stack}")
        click.echo(f"stack {stack}: {_changes_line(result.changes)}", err=True)
        _confirm(f"Apply these changes to stack {stack}?", yes, as_json)
    result = _run(target, "up", as_json, f"up {stack}")
    if as_json:
        _emit(result.to_dict())
        return
    click.echo(f"stack {stack}: {_changes_line(result.changes)} in {result.duration_s:.0f}s")
    _print_outputs(result.outputs)


@click.command("down")
@_stack
@_yes
@_json
def down(stack: str, yes: bool, as_json: bool) -> None:
    """Remove everything a stack provisioned (asks first unless --yes)."""
    target = _prepare(stack)
    _confirm(f"Destroy every resource of stack {stack} (GPU fleets, gateway, secrets, alarms)?", yes, as_json)
    result = _run(target, "destroy", as_json, f"down {stack}")
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(f"stack {stack}: {_changes_line(result.changes)}")


@click.command("refresh")
@_stack
@_yes
@_json
def refresh(stack: str, yes: bool, as_json: bool) -> None:
    """Reconcile the stack's recorded state with what is in the cloud."""
    target = _prepare(stack)
    _confirm(f"Update stack {stack}'s state from the cloud?", yes, as_json)
    result = _run(target, "refresh", as_json, f"refresh {stack}")
    if as_json:
        _emit(result.to_dict())
    else:
        click.echo(f"stack {stack}: {_changes_line(result.changes)}")


@click.command("outputs")
@_stack
@_json
def outputs(stack: str, as_json: bool) -> None:
    """Print the gateway URL and per-agent endpoints."""
    from agentdeploy.stacks.automation import read_outputs

    target = _prepare(stack, need_aws=False)
    values = read_outputs(target)
    if as_json:
        _emit({"stack": stack, "outputs": values})
    else:
        _print_outputs(values)


def _print_outputs(values: dict[str, Any]) -> None:
    if not values:
        click.echo("no outputs (has the stack been deployed?)")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if values.get("gatewayUrl"):
        console.print(f"gateway: {values['gatewayUrl']}")
    endpoints = values.get("agentEndpoints") or {}
    routes = values.get("routes") or {}
    if endpoints:
        table = Table("agent", "route", "endpoint")
        for name in sorted(endpoints):
            table.add_row(name, str(routes.get(name, "")), str(endpoints[name]))
        console.print(table)
    configs = values.get("agentConfigs") or {}
    if not values.get("gatewayUrl") and configs:  # a gateway-less stack: clients read these
        console.print(f"no gateway: {values.get('gateway', '')}")
        table = Table("agent", "route", "config")
        for name in sorted(configs):
            table.add_row(name, str(routes.get(name, "")), str(configs[name]))
        console.print(table)
    for key in sorted(set(values) - {"gatewayUrl", "agentEndpoints", "routes", "agentConfigs", "gateway"}):
        console.print(f"{key}: {values[key]}")
