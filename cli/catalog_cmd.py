"""`deploy catalog show` and `deploy catalog refresh-spot`: glue over agentdeploy.ops (boto3 lazily)."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path

import click


@click.group("catalog")
def catalog() -> None:
    """The prices, speeds and limits the planner reasons with, each with its source and date."""


@catalog.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the merged catalog as JSON.")
@click.option("--catalog", "catalog_files", multiple=True, type=click.Path(path_type=Path), help="Extra override file (repeatable).")
def show(as_json: bool, catalog_files: tuple[Path, ...]) -> None:
    """List every catalog entry with its source and as-of date (overrides applied)."""
    from agentdeploy.ops.catalog_view import catalog_json, catalog_rows
    from agentdeploy.planner import load_catalog

    cat = load_catalog(list(catalog_files))
    if as_json:
        click.echo(json.dumps(catalog_json(cat), indent=2))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # The terminal's width (80 when unknown): ids and dates never wrap, figures and sources fold.
    table = Table(title=f"catalog {cat.version} (as of {cat.as_of})", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("kind", "id", "figures", "source", "as_of"):
        table.add_column(col, overflow="fold", no_wrap=col in ("id", "as_of"))
    for row in catalog_rows(cat):
        table.add_row(*(str(row[c]) for c in ("kind", "id", "figures", "source", "as_of")))
    console = Console()
    console.print(table)
    if cat.applied_overrides:
        console.print("overrides applied, in order: " + ", ".join(cat.applied_overrides))


@catalog.command("refresh-spot")
@click.option("--region", help="AWS region to price (default: AWS_REGION / the profile's region).")
@click.option("--profile", help="AWS profile to use.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@click.option("--accept-outliers", is_flag=True,
              help="Write quotes above on-demand or under 5% of it too (default: leave them out and warn).")
def refresh_spot(region: str | None, profile: str | None, as_json: bool, accept_outliers: bool) -> None:
    """Write current spot prices of the catalog's GPU instances to a local override.

    The file is $AGENTDEPLOY_HOME/catalog.d/spot-<region>.yaml (home defaults to ~/.agentdeploy);
    the planner merges it automatically. An implausible quote (above on-demand, or under 5% of it)
    is not written unless --accept-outliers; the figure in force for that type stays.
    Exit codes: 4 no credentials or access denied, 1 AWS failed or every quote was an outlier.
    """
    from datetime import datetime

    from agentdeploy.errors import OperationFailed
    from agentdeploy.ops.aws import AwsSession
    from agentdeploy.ops.spot import fetch_history, outlier, override_document, read_override, summarise, write_override
    from agentdeploy.planner import load_catalog

    session = AwsSession(region=region, profile=profile)
    # This region's figures only: another region's spot file would make "was $X/h" compare apples
    # with oranges.
    cat = load_catalog(region=session.region)
    now = datetime.now(UTC)
    quotes = summarise(fetch_history(session.client("ec2"), sorted(cat.gpu_instances), now))
    previous = read_override(session.region)
    document, warnings = override_document(quotes, cat.gpu_instances, session.region, now.date(),
                                           accept_outliers=accept_outliers, previous=previous)
    fresh = {t: e for t, e in document["gpu_instances"].items() if previous.get(t) is not e}
    if not fresh:
        if any(t in cat.gpu_instances and outlier(q, cat.gpu_instances[t].on_demand_usd_per_hour) for t, q in quotes.items()):
            raise OperationFailed(f"every spot quote from {session.region} looks implausible; nothing written",
                                  details=warnings, hint="check AWS_ENDPOINT_URL and the region; "
                                  "pass --accept-outliers only if these prices are real")
        raise OperationFailed(f"no spot prices returned in {session.region} for the catalog's GPU instances",
                              details=warnings, hint="check the region offers these instance types")
    path = write_override(document, session.region)
    if as_json:
        click.echo(json.dumps({"path": str(path), "region": session.region, "warnings": warnings, **document}, indent=2))
        return
    for itype, entry in fresh.items():
        old = cat.gpu_instances[itype].spot_usd_per_hour
        click.echo(f"{itype:16} spot ${entry['spot_usd_per_hour']:g}/h (was ${old:g}/h)")
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    click.echo(f"written to {path}")
