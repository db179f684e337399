"""`deploy plan` and `deploy schema`: the decision core's face. Fast: no cloud SDKs imported."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command("plan")
@click.argument("decision_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON document (the stable contract).")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for pull-request comments).")
@click.option("--chart", type=click.Path(path_type=Path), help="Write a PNG/SVG of monthly cost against volume per agent.")
@click.option("--catalog", "catalog_files", multiple=True, type=click.Path(path_type=Path), help="Catalog override file (repeatable).")
@click.option("--scale", type=float, default=1.0, show_default=True, help="What-if: multiply every volume by this factor.")
def plan(decision_file: Path, as_json: bool, markdown: bool, chart: Path | None, catalog_files: tuple[Path, ...], scale: float) -> None:
    """Decide each agent's route, model and settings; show cost at launch and at 12 months, and why.

    Exit codes: 0 planned, 2 invalid decision file or catalog, 3 infeasible (the message names the
    corner to relax for each agent).
    """
    from agentdeploy.errors import InvalidInput
    from agentdeploy.planner import build_plan, load_decision_file, spec_catalog

    if as_json and markdown:
        raise InvalidInput("choose one of --json and --markdown")
    spec = load_decision_file(decision_file)
    catalog = spec_catalog(spec, catalog_files)
    result = build_plan(spec, catalog, scale=scale)
    if chart is not None:
        from agentdeploy.planner.chart import write_chart

        write_chart(result, spec, catalog, chart)
    if as_json:
        click.echo(json.dumps(result.to_json_dict(), indent=2))
    elif markdown:
        from agentdeploy.planner.report import to_markdown

        click.echo(to_markdown(result), nl=False)
    else:
        from agentdeploy.planner.report import print_table

        print_table(result)
        if chart is not None:
            click.echo(f"chart written to {chart}")


@click.command("schema")
def schema() -> None:
    """Print the decision file's JSON Schema (point your editor's YAML plugin at it)."""
    from agentdeploy.planner.spec import decision_file_schema

    click.echo(json.dumps(decision_file_schema(), indent=2))
