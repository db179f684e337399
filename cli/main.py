"""The `deploy` command group.

Subcommands are registered by name and imported only when invoked, so `deploy --help` and
`deploy plan` never pay for pulumi, boto3, httpx or matplotlib. Every command turns a
`DeployError` into its message and exit code: a user mistake never shows a traceback.
"""

from __future__ import annotations

import importlib
import json
import os

import click

from agentdeploy import __version__

#: name -> (module under agentdeploy.cli, attribute, one-line help shown by `deploy --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("plan_cmd", "plan", "Decide each agent's route, model and settings; show costs and reasons."),
    "schema": ("plan_cmd", "schema", "Print the decision file's JSON Schema (for editor completion)."),
    "catalog": ("catalog_cmd", "catalog", "Show the catalog of prices and speeds; refresh spot prices."),
    "render": ("render_cmd", "render", "Render the gateway config and per-agent artefacts from the plan."),
    "serve": ("serve_cmd", "serve", "Run the serving gateway from a rendered config."),
    "keygen": ("keygen_cmd", "keygen", "Print new client keys for the gateway (256 random bits each)."),
    "check": ("stack_cmd", "check", "Check a stack against AWS's limits, offline (no credentials)."),
    "preview": ("stack_cmd", "preview", "Show what `deploy up` would change in a stack."),
    "up": ("stack_cmd", "up", "Provision a stack as its plan says."),
    "down": ("stack_cmd", "down", "Remove everything a stack provisioned."),
    "refresh": ("stack_cmd", "refresh", "Reconcile the stack's state with the cloud."),
    "outputs": ("stack_cmd", "outputs", "Print the gateway URL and per-agent endpoints."),
    "reap": ("ops_cmd", "reap", "Scale idle GPU fleets of a stack to zero."),
    "cost": ("ops_cmd", "cost", "Actual spend per agent against the plan's projection."),
    "status": ("ops_cmd", "status", "Per-agent route, fleet health, budget and alarms."),
    "batch": ("batch_cmd", "batch", "Submit, follow and fetch Message Batches for batch agents."),
    "spend": ("spend_cmd", "spend", "Publish a gateway-less stack's per-agent Claude spend for its alarms."),
    "simulate": ("simulate_cmd", "simulate", "Simulate each GPU agent's scale loop from the plan (offline)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [n for n, (mod, _, _) in COMMANDS.items() if _module_exists(mod)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(COMMANDS[name][0]):
            return None
        mod, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"agentdeploy.cli.{mod}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(n, COMMANDS[n][2]) for n in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["agentdeploy.argv"] = list(args)  # so errors can answer in JSON when asked
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        """Turn a DeployError into its message and exit code: a user mistake never shows a traceback.

        With --json, stdout is one strict JSON document on every path: the result, a DeployError,
        a usage error (bad option value), or an internal error.
        """
        from agentdeploy.errors import EXIT_FAILED, DeployError

        try:
            return super().invoke(ctx)
        except DeployError as err:
            if _wants_json(ctx):
                click.echo(strict_json(err.to_dict()))
            click.echo(err.render(), err=True)
            ctx.exit(err.exit_code)
        except click.ClickException as err:  # usage errors: click prints them on stderr with exit 2
            if _wants_json(ctx):
                click.echo(strict_json(_error_dict("UsageError", err.exit_code, err.format_message())))
            raise
        except (click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as err:  # a bug: one clear line, the traceback only when asked for
            if os.environ.get("AGENTDEPLOY_DEBUG"):
                raise
            message = f"internal error: {type(err).__name__}: {str(err)[:300]}"
            hint = "this is a bug in agentdeploy; AGENTDEPLOY_DEBUG=1 shows the traceback to report"
            if _wants_json(ctx):
                click.echo(strict_json(_error_dict("InternalError", EXIT_FAILED, message, hint)))
            click.echo(f"error: {message}\nhint: {hint}", err=True)
            ctx.exit(EXIT_FAILED)


def strict_json(document: object) -> str:
    """JSON that every parser reads: a NaN or infinity is a bug to surface, never `Infinity` on stdout."""
    try:
        return json.dumps(document, indent=2, allow_nan=False)
    except ValueError as err:
        from agentdeploy.errors import OperationFailed

        raise OperationFailed(f"internal error: the output holds a number JSON cannot carry ({err})",
                              hint="this is a bug in agentdeploy; please report it with the input") from None


def _error_dict(kind: str, exit_code: int, message: str, hint: str | None = None) -> dict[str, object]:
    return {"error": kind, "exit_code": exit_code, "message": message, "hint": hint, "details": []}


def _wants_json(ctx: click.Context) -> bool:
    return "--json" in ctx.meta.get("agentdeploy.argv", [])


def _module_exists(mod: str) -> bool:
    from importlib.util import find_spec

    return find_spec(f"agentdeploy.cli.{mod}") is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deploy")
def cli() -> None:
    """agentdeploy: per-agent cost / latency / quality decisions, provisioned.

    \b
    Exit codes: 0 ok, 1 failed at run time, 2 invalid input, 3 infeasible
    (the message names the corner to relax), 4 missing tool or credentials,
    5 change applied only in part.
    """


def main() -> None:
    cli(prog_name="deploy")
