"""`deploy cost --chart`: actual vs projected vs prorated budget per agent (matplotlib, imported here only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentdeploy.errors import InvalidInput, MissingDependency


def write_cost_chart(report: Any, path: Path, days_per_month: float) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependency("--chart needs matplotlib", hint="pip install 'agentdeploy[chart]'") from None
    if path.suffix.lower() not in {".png", ".svg", ".pdf"}:
        raise InvalidInput(f"--chart {path}: use a .png, .svg or .pdf file name")
    names = [a.agent for a in report.agents]
    share = report.period_days / days_per_month
    series = {
        "actual": [a.actual_usd for a in report.agents],
        "projected": [a.projected_usd for a in report.agents],
        "budget (prorated)": [a.budget_monthly_usd * share for a in report.agents],
    }
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(names) + 2), 4.5))
    width = 0.27
    for n, (label, values) in enumerate(series.items()):
        xs = [i + (n - 1) * width for i in range(len(names))]
        bars = ax.bar(xs, values, width, label=label)
        if label == "actual":
            for bar, agent in zip(bars, report.agents, strict=True):
                if agent.flags:
                    bar.set_edgecolor("red")
                    bar.set_linewidth(2)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylabel("USD")
    ax.set_title(f"{report.stack}: spend {report.since[:10]} to {report.until[:10]} ({report.period_days:.1f} days)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
