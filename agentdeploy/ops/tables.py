"""Human-readable output for reap, cost and status (the --json forms are the dataclasses as dicts)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _console() -> Console:
    return Console(width=max(120, Console().width))


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def print_reap(reports: list[Any], stack: str, region: str, dry_run: bool) -> None:
    console = _console()
    if not reports:
        console.print(f"stack {stack} ({region}): no GPU fleets; nothing to reap")
        return
    title = f"reap {stack} ({region})" + (" — dry run, nothing changed" if dry_run else "")
    table = Table(title=title)
    for col in ("fleet", "agent", "desired", "window", "peak demand", "action", "reason"):
        table.add_column(col, overflow="fold")
    for r in reports:
        if r.action == "scale-to-zero":
            action = "would scale to 0" if dry_run else ("scaled to 0" if r.applied else f"FAILED: {r.error}")
        else:
            action = "keep"
        peak = "-" if r.peak_demand is None else f"{r.peak_demand:g}"
        table.add_row(r.fleet, r.agent or "-", str(r.desired_before), f"{r.idle_minutes} min", peak, action, r.reason)
    console.print(table)


def print_cost(report: Any) -> None:
    console = _console()
    table = Table(title=f"cost {report.stack}: {report.since[:10]} .. {report.until[:16]} ({report.period_days:g} days)")
    for col in ("agent", "route", "claude", "batch", "gpu", "actual", "projected", "drift", "budget/mo", "used", "flags"):
        table.add_column(col, overflow="fold")
    for a in report.agents:
        drift = "-" if a.drift_pct is None else f"{a.drift_pct:+.0f}%"
        claude = _money(a.claude_usd) + (f" ({a.claude_source})" if a.claude_source != "none" else "")
        batch = _money(a.claude_batch_usd) if a.route == "batch" or a.claude_batch_usd else "-"
        gpu = _money(a.gpu_usd) + (f" ({a.gpu_spot_hours:g} h spot, {a.gpu_on_demand_hours:g} h od)" if a.route == "gpu" else "")
        table.add_row(a.agent, a.route, claude, batch, gpu, _money(a.actual_usd), _money(a.projected_usd), drift,
                      _money(a.budget_monthly_usd), f"{a.budget_used_pct:.0f}%", ", ".join(a.flags) or "ok")
    table.add_row("total", "", "", _money(report.claude_batch_usd), "", _money(report.actual_usd), _money(report.projected_usd), "",
                  _money(report.budget_monthly_usd), "", "")
    console.print(table)
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
    table = Table()
    for col in ("agent", "route", "model", "fleet desired/healthy", "spot/on-demand", "budget used", "alarms", "notes"):
        table.add_column(col, overflow="fold")
    for a in status.agents:
        fleet = "-" if a.fleet is None else f"{a.fleet.desired}/{a.fleet.healthy} ({a.fleet.name})"
        mix = "-" if a.fleet is None else f"{a.fleet.spot}/{a.fleet.on_demand}"
        used = "-" if a.budget_used_pct is None else f"{_money(a.spent_month_usd)} of {_money(a.budget_monthly_usd)} ({a.budget_used_pct:g}%)"
        table.add_row(a.agent, a.route, a.model, fleet, mix, used, ", ".join(a.alarms) or "-", "; ".join(a.notes) or "")
    console.print(table)
    for alarm in status.alarms:
        console.print(f"[red]ALARM[/red] {alarm['name']} ({alarm['agent'] or 'stack'}): {alarm['reason']}")
    if status.fleets_not_in_plan:
        console.print("fleets tagged for this stack but not in its plan: " + ", ".join(status.fleets_not_in_plan))
    console.print("healthy" if status.healthy else "[red]not healthy[/red]")
