"""`deploy plan` and `deploy schema`: the decision core's face. Fast: no cloud SDKs imported."""

from __future__ import annotations

import atexit
import gc
import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from agentdeploy.planner.plan import Plan


@click.command("plan")
@click.argument("decision_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the plan as one JSON document (the stable contract).")
@click.option("--markdown", is_flag=True, help="Print a Markdown table (for pull-request comments).")
@click.option("--chart", type=click.Path(path_type=Path), help="Write a PNG/SVG of monthly cost against volume per agent.")
@click.option("--catalog", "catalog_files", multiple=True, type=click.Path(path_type=Path), help="Catalog override file (repeatable).")
@click.option("--scale", type=float, default=1.0, show_default=True, help="What-if: multiply every volume by this factor.")
@click.option("--write", "write_to", is_flag=False, flag_value="", default=None,
              metavar="[PATH]", help="Write the plan file `deploy up`, reap, status and cost apply (default: "
                                     "<decision file stem>.plan.json beside it). Put it after DECISION_FILE.")
def plan(decision_file: Path, as_json: bool, markdown: bool, chart: Path | None, catalog_files: tuple[Path, ...], scale: float,
         write_to: str | None) -> None:
    """Decide each agent's route, model and settings; show cost at launch and at 12 months, and why.

    With --write, also write the plan file: the plan plus the hashes of the decision file and
    catalog it came from. The Pulumi program and the ops commands apply it as reviewed, and
    refuse it once either input changes.

    Exit codes: 0 planned, 2 invalid decision file or catalog, 3 infeasible (the message names the
    corner to relax for each agent).
    """
    from agentdeploy.errors import InvalidInput

    if as_json and markdown:
        raise InvalidInput("choose one of --json and --markdown")
    with _collector_paused():
        _plan(decision_file, as_json, markdown, chart, catalog_files, scale, write_to)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading and planning allocate hundreds of thousands of objects and free almost none: the
    cyclic collector would only walk the growing plan again and again (a fifth of the command's
    time at 1,000 agents, no memory saved: bench/RESULTS.md). The interpreter's last collection
    at exit walks whatever is still alive once more, with the output long written: freezing the
    heap at exit skips it."""
    was_enabled = gc.isenabled()
    gc.disable()
    _freeze_at_exit()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@cache
def _freeze_at_exit() -> None:
    atexit.register(gc.freeze)


def _plan(decision_file: Path, as_json: bool, markdown: bool, chart: Path | None, catalog_files: tuple[Path, ...], scale: float,
          write_to: str | None) -> None:
    from agentdeploy.planner import build_plan, load_decision_file, spec_catalog

    spec = load_decision_file(decision_file)
    catalog = spec_catalog(spec, catalog_files)
    if as_json and write_to is None and chart is None:
        from agentdeploy.planner.jsonstream import plan_json_text

        try:
            pieces: list[str] | None = plan_json_text(spec, catalog, scale=scale)
        except ValueError:
            pieces = None  # a number JSON cannot carry: the plan's own path below gives the command's error
        if pieces is not None:
            _write(pieces)
            return
    result = build_plan(spec, catalog, scale=scale)
    written = None
    if write_to is not None:
        from agentdeploy.planner.planfile import default_plan_path, write_plan_file

        written = Path(write_to) if write_to else default_plan_path(decision_file)
        write_plan_file(written, result, decision_file, catalog, catalog_files)
    if chart is not None:
        from agentdeploy.planner.chart import write_chart

        write_chart(result, spec, catalog, chart)
    if as_json:
        _echo_json(result)
    elif markdown:
        from agentdeploy.planner.report import to_markdown

        click.echo(to_markdown(result), nl=False)
    else:
        from agentdeploy.planner.report import print_table

        print_table(result)
        if chart is not None:
            click.echo(f"chart written to {chart}")
    if written is not None:
        # On stderr with --json/--markdown, so stdout stays the one document asked for.
        click.echo(f"plan file written to {written}", err=as_json or markdown)


def _echo_json(result: Plan) -> None:
    """`strict_json(result.to_json_dict())` on stdout, the same bytes, encoded agent by agent
    (planner/jsonout.py) and written only once all of it is encoded."""
    from agentdeploy.planner.jsonout import plan_json

    try:
        pieces = plan_json(result)
    except ValueError:
        from agentdeploy.cli.main import strict_json

        strict_json(result.to_json_dict())  # raises the command's error for a number JSON cannot carry
        raise
    _write(pieces)


def _write(pieces: list[str]) -> None:
    out = click.get_text_stream("stdout")
    for piece in pieces:
        out.write(piece)
    out.write("\n")
    out.flush()


@click.command("schema")
def schema() -> None:
    """Print the decision file's JSON Schema (point your editor's YAML plugin at it)."""
    from agentdeploy.planner.spec import decision_file_schema

    click.echo(json.dumps(decision_file_schema(), indent=2))
