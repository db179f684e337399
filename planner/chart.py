"""Monthly cost against volume, per agent: the API line, the fleet's steps, the break-even.

matplotlib is imported here only, and only `deploy plan --chart` imports this module. What goes
where (the volume range, the markers and their labels) is worked out by pure functions below, so
the layout rules are testable without drawing: the chosen option is marked, launch and 12-month
markers stay readable when the break-even is far off (the axis turns logarithmic), and one
marker stands for both when launch equals month 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentdeploy.errors import InvalidInput, MissingDependency
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.curves import curves_for
from agentdeploy.planner.plan import AgentPlan, Plan
from agentdeploy.planner.spec import Spec

#: A break-even further than this many times the 12-month volume would squash the markers.
LOG_AXIS_RATIO = 10.0


@dataclass(frozen=True)
class Axis:
    low: float
    high: float
    log: bool

    def points(self, n: int = 200) -> list[float]:
        if self.log:
            return [self.low * (self.high / self.low) ** (i / (n - 1)) for i in range(n)]
        return [self.high * i / n for i in range(1, n + 1)]


def axis_for(a: AgentPlan) -> Axis:
    m12, launch = a.volume["month_12"], a.volume["launch"]
    be = a.break_even_conversations_per_month or 0.0
    top = max(m12, be) * 2
    if be > LOG_AXIS_RATIO * m12:
        return Axis(low=max(1.0, min(launch, m12) / 2), high=top, log=True)
    return Axis(low=0.0, high=top, log=False)


def markers(a: AgentPlan) -> list[tuple[str, float]]:
    """(label, volume) of the vertical markers, one per distinct volume."""
    launch, m12 = a.volume["launch"], a.volume["month_12"]
    out = [("launch = 12 mo", launch)] if launch == m12 else [("launch", launch), ("12 mo", m12)]
    if a.switch is not None:
        out.append((f"switch (month {a.switch.month})", a.switch.conversations_per_month))
    elif a.break_even_conversations_per_month:
        out.append((f"break-even {a.break_even_conversations_per_month:,.0f}", a.break_even_conversations_per_month))
    return out


def curve_labels(a: AgentPlan) -> tuple[str, str | None]:
    """Legend labels of the API and GPU curves; the chosen one says so."""
    api = f"API ({a.fallback_model or a.model}{', batch' if a.route == 'batch' else ''})"
    gpu = f"GPU ({a.gpu_candidate})" if a.gpu_candidate else None
    if a.route == "gpu":
        return api + " — fallback", (gpu + " — chosen" if gpu else None)
    return api + " — chosen", gpu


def write_chart(plan: Plan, spec: Spec, catalog: Catalog, path: Path) -> Path:
    if path.suffix.lower() not in (".png", ".svg"):
        raise InvalidInput(f"--chart {path}: use a .png or .svg file name")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("--chart needs matplotlib", hint="pip install 'agentdeploy[chart]'") from None
    n = len(plan.agents)
    fig, axes = plt.subplots(n, 1, figsize=(8, 3.2 * n), squeeze=False)
    for ax, a in zip(axes[:, 0], plan.agents, strict=True):
        api, gpu = curves_for(spec.agents[a.name], spec, catalog, a)
        axis = axis_for(a)
        xs = axis.points()
        api_label, gpu_label = curve_labels(a)
        chosen_api = a.route != "gpu"
        ax.plot(xs, [api(x) for x in xs], label=api_label, linewidth=2.5 if chosen_api else 1.0)
        if gpu is not None:
            ax.step(xs, [gpu(x) for x in xs], where="post", label=gpu_label, linewidth=1.0 if chosen_api else 2.5)
        if axis.log:
            ax.set_xscale("log")
        # labels sit at staggered heights in axes coordinates, so they never print over each other
        for i, (label, v) in enumerate(markers(a)):
            ax.axvline(v, linestyle=":", color="black", alpha=0.5)
            ax.annotate(label, (v, 0.95 - 0.1 * i), xycoords=("data", "axes fraction"), fontsize=8, ha="left", va="top")
        ax.set_title(f"{a.name}: route {a.route}" + (" (log volume axis)" if axis.log else ""))
        ax.set_xlabel("conversations / month")
        ax.set_ylabel("USD / month")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
