"""`deploy simulate`: the scale loop of each GPU agent, simulated from the plan and the stack's own
definitions (agentdeploy/ops/simulate). Offline: no cloud account, no credentials."""

from __future__ import annotations

from pathlib import Path

import click

#: Kept here (not imported) so `deploy simulate --help` loads nothing heavy; a test checks that
#: it matches agentdeploy.ops.simulate.SCENARIOS.
SCENARIO_NAMES = ("declared", "cold-burst", "steady-trickle", "spot-wave", "metrics-outage", "spot-drought")


@click.command("simulate")
@click.argument("decision_file", type=click.Path(path_type=Path))
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(SCENARIO_NAMES),
              help="Scenario to run (repeatable; default: all of them, in this order).")
@click.option("--days", type=click.IntRange(1, 31), default=1, show_default=True, help="Days each scenario runs.")
@click.option("--seed", type=int, default=1, show_default=True, help="Random seed: the same seed gives the same result.")
@click.option("--plan", "plan_file", type=click.Path(path_type=Path),
              help="The reviewed plan file to simulate (default: <decision file stem>.plan.json when it exists, "
                   "else the decision file planned now).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def simulate(decision_file: Path, scenarios: tuple[str, ...], days: int, seed: int, plan_file: Path | None,
             as_json: bool) -> None:
    """Simulate each GPU agent's scale loop: traffic, gateway, alarms, policies, spot.

    Built from what `deploy up` provisions for the plan (alarms, scaling policies, node
    publishing, hooks, the on-demand standby), the gateway's routing and wake, cold starts from
    the plan and spot interruptions from the catalog. Traffic comes from the decision file's
    volume and day shape. Costs are per month, against the plan's projection.

    Exit codes: 0 simulated, 2 invalid input (decision file, stale plan file, option),
    3 infeasible plan.
    """
    from agentdeploy.ops.simulate import SCENARIOS, agent_inputs
    from agentdeploy.ops.simulate import simulate as run_all
    from agentdeploy.planner import load_decision_file
    from agentdeploy.planner.planfile import reviewed_plan

    plan, catalog = reviewed_plan(decision_file, plan_file)
    spec = load_decision_file(decision_file)
    chosen = tuple(dict.fromkeys(scenarios)) or SCENARIOS  # each once, in the order given
    results = run_all(agent_inputs(plan, spec, catalog), chosen, days, seed)
    if as_json:
        from agentdeploy.cli.main import strict_json
        from agentdeploy.ops.simulate.report import document

        click.echo(strict_json(document(results)))
        return
    from agentdeploy.ops.simulate.report import print_report

    print_report(results, days, seed)
