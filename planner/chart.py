"""Monthly cost against volume, per agent: the API line, the fleet's steps, the break-even.

matplotlib is imported here only, and only `deploy plan --chart` imports this module.
"""

from __future__ import annotations

from pathlib import Path

from agentdeploy.errors import InvalidInput, MissingDependency
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.curves import curves_for
from agentdeploy.planner.plan import Plan
from agentdeploy.planner.spec import Spec


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
        agent = spec.agents[a.name]
        api, gpu = curves_for(agent, spec, catalog, a)
        top = max(a.volume["month_12"], (a.break_even_conversations_per_month or 0)) * 2
        xs = [top * i / 200 for i in range(1, 201)]
        ax.plot(xs, [api(x) for x in xs], label=f"API ({a.fallback_model or a.model}{', batch' if a.route == 'batch' else ''})")
        if gpu is not None:
            ax.step(xs, [gpu(x) for x in xs], where="post", label=f"GPU ({a.gpu_candidate})")
        if a.break_even_conversations_per_month:
            ax.axvline(a.break_even_conversations_per_month, linestyle="--", color="grey")
            ax.annotate(f"break-even {a.break_even_conversations_per_month:,.0f}", (a.break_even_conversations_per_month, 0), rotation=90, va="bottom", fontsize=8)
        for label, v in (("launch", a.volume["launch"]), ("12 mo", a.volume["month_12"])):
            ax.axvline(v, linestyle=":", color="black", alpha=0.5)
            ax.annotate(label, (v, 0), fontsize=8)
        ax.set_title(f"{a.name}: route {a.route}")
        ax.set_xlabel("conversations / month")
        ax.set_ylabel("USD / month")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
