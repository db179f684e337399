"""Human-readable views of a plan: a rich table for terminals, Markdown for pull requests.

Both views show the same columns so a PR comment and a laptop run read alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentdeploy.planner.plan import AgentPlan, Plan

if TYPE_CHECKING:
    from rich.console import Console

HEADERS = ["agent", "route", "model", "stream", "max_tokens", "cache", "p95 / ceiling", "$/month launch", "$/month 12 mo", "break-even conv/mo"]


def _cache(a: AgentPlan) -> str:
    if a.route == "gpu":
        return "vLLM prefix"
    return f"{a.cache.ttl} ({'+'.join(a.cache.breakpoints)})" if a.cache.enabled else "off"


def _latency(a: AgentPlan) -> str:
    if a.latency.measure == "none":
        return "batch (≤24 h)"
    label = "TTFT" if a.latency.measure == "first_token" else "total"
    return f"{a.latency.p95_estimate_s:.2f} s {label} / {a.latency.ceiling_s:g} s"


def _model(a: AgentPlan) -> str:
    return f"{a.model} → {a.fallback_model}" if a.fallback_model else a.model


def _break_even(a: AgentPlan) -> str:
    return f"{a.break_even_conversations_per_month:,.0f}" if a.break_even_conversations_per_month else "—"


def rows(plan: Plan) -> list[list[str]]:
    return [
        [
            a.name,
            a.route + (f" ({a.fleet.instance_type})" if a.fleet else ""),
            _model(a),
            "on" if a.streaming else "off",
            str(a.max_tokens),
            _cache(a),
            _latency(a),
            f"{a.cost.monthly_usd.launch:,.2f}",
            f"{a.cost.monthly_usd.month_12:,.2f}",
            _break_even(a),
        ]
        for a in plan.agents
    ]


def usd(x: float) -> str:
    """Money as people write it: "-$520.72", never "$-520.72"."""
    return f"-${-x:,.2f}" if x < 0 else f"${x:,.2f}"


def summary_lines(plan: Plan) -> list[str]:
    t, b = plan.totals.monthly_usd, plan.baseline
    infra = plan.infrastructure
    fixed = f" (of which {usd(infra.monthly_usd)} fixed infrastructure)" if infra else ""
    floors = f" ({', '.join(f'{k} on {m}' for k, m in b.models.items())}: their quality floors)" if b.models else ""
    lines = [
        f"Total: {usd(t.launch)}/month at launch, {usd(t.month_12)}/month at 12-month volume{fixed}.",
        f"Naive baseline (every agent on {b.model}{floors}, no caching, no batch): {usd(b.monthly_usd.launch)} at launch, "
        f"{usd(b.monthly_usd.month_12)} at 12 months — this plan saves {usd(b.saving_usd.launch)} ({b.saving_pct.launch:.0f}%) "
        f"and {usd(b.saving_usd.month_12)} ({b.saving_pct.month_12:.0f}%).",
    ]
    if infra:
        lines += infra.gateway.why
    if plan.volume_scale != 1.0:
        lines.append(f"What-if: volumes scaled by {plan.volume_scale:g}x.")
    lines.append(f"Catalog {plan.catalog.version} (as of {plan.catalog.as_of})" + (f", overrides: {', '.join(plan.catalog.overrides)}" if plan.catalog.overrides else ""))
    return lines


def to_markdown(plan: Plan) -> str:
    out = [f"### agentdeploy plan — stack `{plan.stack}` ({plan.region})", ""]
    out.append("| " + " | ".join(HEADERS) + " |")
    out.append("|" + "---|" * len(HEADERS))
    for r in rows(plan):
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    out.append("")
    out += summary_lines(plan)
    out.append("")
    out.append("<details><summary>Why</summary>")
    out.append("")
    for a in plan.agents:
        out.append(f"**{a.name}**")
        out += [f"- {w}" for w in a.why]
        out.append("")
    out.append("</details>")
    return "\n".join(out) + "\n"


def print_table(plan: Plan, console: Console | None = None) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=None if sys.stdout.isatty() else 180)
    table = Table(title=f"agentdeploy plan — stack {plan.stack} ({plan.region})", show_lines=False)
    for h in HEADERS:
        table.add_column(h, justify="right" if h.startswith(("$", "break", "max")) else "left")
    for r in rows(plan):
        table.add_row(*r)
    console.print(table)
    for line in summary_lines(plan):
        console.print(line)
    for a in plan.agents:
        console.print(f"\n[bold]{a.name}[/bold] — why:")
        for w in a.why:
            console.print(f"  • {w}", highlight=False)
