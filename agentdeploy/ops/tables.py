"""Human-readable output for reap, cost and status (the --json forms are the dataclasses as dicts).

Tables take the terminal's width (80 columns when it is unknown) and must read there: figures
never wrap (no_wrap), only free text folds, and what does not fit a column (an alarm's name, a
note, a GPU agent's hours, where Claude spend was read) is a line under the table instead.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table


def _console() -> Console:
    return Console()


def _table(title: str | None = None) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _figure(table: Table, name: str) -> None:
    table.add_column(name, justify="right", no_wrap=True)


def _text(table: Table, name: str) -> None:
    table.add_column(name, overflow="fold")


def print_reap(reports: list[Any], stack: str, region: str, dry_run: bool) -> None:
    console = _console()
    if not reports:
        console.print(f"stack {stack} ({region}): no GPU fleets; nothing to reap")
        return
    title = f"reap {stack} ({region})" + (" — dry run, nothing changed" if dry_run else "")
    table = _table(title)
    _text(table, "fleet")
    _text(table, "agent")
    for col in ("desired", "window", "peak"):
        _figure(table, col)
    _text(table, "action")
    for r in reports:
        if r.action == "scale-to-zero":
            action = "would scale to 0" if dry_run else ("scaled to 0" if r.applied else "FAILED")
        else:
            action = "keep"
        peak = "-" if r.peak_demand is None else f"{r.peak_demand:g}"
        table.add_row(r.fleet, r.agent or "-", str(r.desired_before), f"{r.idle_minutes} min", peak, action)
    console.print(table)
    for r in reports:
        console.print(f"{r.fleet}: {r.reason}" + (f" — [red]FAILED[/red]: {r.error}" if r.error else ""))


def print_cost(report: Any) -> None:
    console = _console()
    table = _table(f"cost {report.stack}: {report.since[:10]} .. {report.until[:16]} ({report.period_days:g} days)")
    _text(table, "agent")
    for col in ("claude", "gpu", "actual", "projected", "drift", "budget"):
        _figure(table, col)
    for a in report.agents:
        drift = "-" if a.drift_pct is None else f"{a.drift_pct:+.0f}%"
        table.add_row(a.agent, _money(a.claude_usd), _money(a.gpu_usd), _money(a.actual_usd),
                      _money(a.projected_usd), drift, f"{a.budget_used_pct:.0f}%")
    table.add_row("total", "", "", _money(report.actual_usd), _money(report.projected_usd), "", "")
    console.print(table)
    console.print("budget: the share of the agent's monthly budget spent in the period")
    sources: dict[str, list[str]] = {}
    for a in report.agents:
        console.print(f"{a.agent} ({a.route}): {', '.join(a.flags) or 'ok'}")
        sources.setdefault(a.claude_source, []).append(a.agent)
        if a.route == "gpu":
            console.print(f"gpu {a.agent}: {a.gpu_spot_hours:g} h spot, {a.gpu_on_demand_hours:g} h on-demand")
    for source, names in sources.items():
        if source != "none":
            console.print(f"Claude spend from {source}: {', '.join(names)}")
    if report.claude_stack_key_usd is not None:
        console.print(f"Claude spend of the stack's key (Admin API, catalog-priced): {_money(report.claude_stack_key_usd)}")
    if report.claude_billed_usd is not None:
        console.print(f"Claude billed (cost report, whole organisation/workspace): {_money(report.claude_billed_usd)}; "
                      f"usage priced with the catalog: {_money(report.claude_org_priced_usd)}")
    for a in report.agents:
        if a.route == "batch":
            drift = f"{100 * (a.claude_batch_usd / a.projected_usd - 1):+.0f}%" if a.projected_usd else "no projection"
            console.print(f"batch route {a.agent}: {_money(a.claude_batch_usd)} through the Message Batches API against "
                          f"{_money(a.projected_usd)} projected at batch prices ({drift})"
                          + ("; [red]spend at full price too[/red] (realtime-spend)" if "realtime-spend" in a.flags else ""))
    console.print(f"drift flagged beyond ±{report.drift_threshold_pct:g}% of the {report.horizon} projection, prorated to the period")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def print_status(status: Any) -> None:
    console = _console()
    gw = status.gateway
    if gw.ready is None:
        gw_text = gw.detail
    else:
        gw_text = f"{gw.url}/readyz " + ("ready" if gw.ready else f"NOT READY ({gw.http_status or gw.detail})")
    console.print(f"stack {status.stack} ({status.region}) — gateway: {gw_text}")
    table = _table()
    _text(table, "agent")
    _text(table, "route")
    _text(table, "model")
    for col in ("fleet", "spot/od", "spent", "budget"):
        _figure(table, col)
    for a in status.agents:
        f = a.fleet
        fleet = ("-", "-") if f is None else (f"{f.desired}/{f.healthy}", f"{f.spot}/{f.on_demand}")
        used = "-" if a.budget_used_pct is None else f"{a.budget_used_pct:g}%"
        table.add_row(a.agent, a.route, a.model, *fleet, _money(a.spent_month_usd), used)
    console.print(table)
    console.print("fleet: desired/healthy instances; spot/od: spot/on-demand; spent, budget: this month, and its "
                  "share of the monthly budget")
    for a in status.agents:
        if a.fleet is not None:
            console.print(f"{a.agent}: fleet {a.fleet.name} ({', '.join(a.fleet.instance_types) or 'no instances'})")
        for note in a.notes:
            console.print(f"{a.agent}: {note}")
    for alarm in status.alarms:
        console.print(f"[red]ALARM[/red] {alarm['name']} ({alarm['agent'] or 'stack'}): {alarm['reason']}")
    if status.scaling_alarms:
        names = ", ".join(al["name"] for al in status.scaling_alarms)
        console.print(f"scaling at work (alarms driving scaling policies, not faults): {names}")
    if status.fleets_not_in_plan:
        console.print("fleets tagged for this stack but not in its plan: " + ", ".join(status.fleets_not_in_plan))
    if status.healthy:
        console.print("healthy")
    else:
        console.print("[red]not healthy[/red]: " + "; ".join(status.problems))
