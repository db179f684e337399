"""What `deploy simulate` prints: one JSON document, or a table for people (80 columns).

Figures per agent and scenario, over the simulated days: requests; the fallback's share and its
requests by reason; seconds from the first request finding the fleet cold to the first one it
served (p50/p95 over those wake episodes, nearest rank; null without one); GPU hours by market;
scale-out and scale-in events (desired-capacity changes of both groups). Cost is a month: the
run's GPU hours at the plan's prices plus its fallback requests at the plan's per-request price
of the fallback model, times days-per-month / days; `planned` is the plan's launch month for the
same items (GPU spot, GPU on-demand, fallback API; ops overhead left out of both).

`checks` are the issue's acceptance rules, for the scenarios that were run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentdeploy.ops.simulate.inputs import AgentInputs
from agentdeploy.ops.simulate.result import RunResult

#: Acceptance: how often steady low traffic may scale to zero and back, a day.
MAX_ZERO_CYCLES_PER_DAY = 2
#: Acceptance: a cold burst is served from the fleet within the cold start plus this.
WAKE_MARGIN_S = 60.0
#: Acceptance: the declared traffic's simulated month within this share of the plan's.
COST_TOLERANCE = 0.15


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p * len(ordered)) - 1)]


def monthly_usd(inp: AgentInputs, r: RunResult) -> float:
    return (r.gpu_usd + r.fallback_usd) * inp.days_per_month / r.days


def scenario_doc(inp: AgentInputs, r: RunResult) -> dict[str, Any]:
    p50, p95 = percentile(r.wake_s, 0.5), percentile(r.wake_s, 0.95)
    return {
        "name": r.scenario,
        "requests": r.requests,
        "fallback_share": round(r.fallback_requests / r.requests, 6) if r.requests else 0.0,
        "fallback_reasons": {k: v for k, v in r.fallback.items() if v},
        "wake_s": {"p50": None if p50 is None else round(p50, 1), "p95": None if p95 is None else round(p95, 1)},
        "gpu_hours": {"spot": round(r.gpu_hours["spot"], 3), "on_demand": round(r.gpu_hours["on_demand"], 3)},
        "scale_events": {"out": r.scale_out, "in": r.scale_in},
        "cost_usd": {"simulated": round(monthly_usd(inp, r), 2), "planned": round(inp.planned.total_usd, 2)},
    }


def document(results: Sequence[tuple[AgentInputs, Sequence[RunResult]]]) -> dict[str, Any]:
    return {"agents": [{"name": inp.name, "scenarios": [scenario_doc(inp, r) for r in runs]}
                       for inp, runs in results]}


@dataclass(frozen=True)
class Check:
    agent: str
    scenario: str
    rule: str
    ok: bool
    observed: str


def checks(inp: AgentInputs, runs: Sequence[RunResult]) -> list[Check]:
    """The acceptance rules for this agent, one per scenario run that has one."""
    out: list[Check] = []
    for r in runs:
        if r.scenario == "steady-trickle":
            per_day = r.zero_cycles / r.days
            out.append(Check(inp.name, r.scenario, f"to zero and back at most {MAX_ZERO_CYCLES_PER_DAY} a day",
                             per_day <= MAX_ZERO_CYCLES_PER_DAY, f"{per_day:g} a day"))
        elif r.scenario == "metrics-outage":
            out.append(Check(inp.name, r.scenario, "never scales a busy fleet to zero", r.busy_scale_to_zero == 0,
                             f"{r.busy_scale_to_zero} time(s)"))
        elif r.scenario == "cold-burst":
            limit = inp.fleet.cold_start_s + WAKE_MARGIN_S
            worst = max(r.wake_s) if r.wake_s else None
            out.append(Check(inp.name, r.scenario, f"served by the fleet within {limit:g} s",
                             worst is not None and worst <= limit,
                             "never served" if worst is None else f"slowest wake {worst:.0f} s"))
        elif r.scenario == "declared":
            sim, plan = monthly_usd(inp, r), inp.planned.total_usd
            drift = (sim - plan) / plan if plan else 0.0
            out.append(Check(inp.name, r.scenario, f"cost within {COST_TOLERANCE:.0%} of the plan",
                             abs(drift) <= COST_TOLERANCE, f"${sim:,.2f} vs ${plan:,.2f} ({drift:+.1%})"))
    return out


def _share(r: RunResult) -> str:
    return f"{100 * r.fallback_requests / r.requests:.2f}%" if r.requests else "-"


def _wake(r: RunResult) -> str:
    p50, p95 = percentile(r.wake_s, 0.5), percentile(r.wake_s, 0.95)
    return "-" if p50 is None or p95 is None else f"{p50:.0f}/{p95:.0f}"


def print_report(results: Sequence[tuple[AgentInputs, Sequence[RunResult]]], days: float, seed: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not results:
        console.print("no GPU agents in the plan: nothing to simulate (API and batch routes have no scale loop)")
        return
    for inp, runs in results:
        title = f"{inp.name}: {days:g} day(s), seed {seed}; plan ${inp.planned.total_usd:,.2f}/month"
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        table.add_column("scenario", no_wrap=True)
        for name in ("requests", "fallback", "wake s", "gpu h", "out/in", "$/month"):
            table.add_column(name, justify="right", no_wrap=True)
        for r in runs:
            hours = f"{r.gpu_hours['spot']:.1f}/{r.gpu_hours['on_demand']:.1f}"
            table.add_row(r.scenario, f"{r.requests:,}", _share(r), _wake(r), hours, f"{r.scale_out}/{r.scale_in}",
                          f"${monthly_usd(inp, r):,.2f}")
        console.print(table)
        for r in runs:
            reasons = ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in r.fallback.items() if v)
            if reasons:
                console.print(f"{r.scenario}: fallback {reasons}")
            for alarm, n in r.alerts.items():
                console.print(f"{r.scenario}: alert {alarm} fired {n} time(s)")
        for c in checks(inp, runs):
            mark = "[green]ok[/green]" if c.ok else "[red]FAILS[/red]"
            console.print(f"{mark} {c.scenario}: {c.rule}: {c.observed}")
        if inp.wake_source != "gateway config":
            console.print(f"gateway wake: {inp.wake_source}")
    console.print("wake s: first cold request to the first one the fleet served, p50/p95; gpu h: spot/on-demand "
                  "in the run; out/in: scale events; $/month: the run's GPU hours and fallback requests over a "
                  "month, against the plan's (GPU and fallback; ops overhead left out of both)")
