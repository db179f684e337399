"""Progress of a Pulumi operation, from the engine's events.

The Automation API hands every engine event to `EngineProgress` as it happens; it keeps the
counts a script needs afterwards (what was applied, what failed, the engine's errors) and,
when a console is given, draws a rich progress bar: total grows as the engine announces
steps, completed advances as each step finishes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: Step operations that change the cloud (what a failed `up` may have left applied).
CHANGING = {"create", "update", "delete", "replace", "create-replacement", "delete-replaced", "import"}
VERB = {"create": "creating", "update": "updating", "delete": "deleting", "replace": "replacing",
        "create-replacement": "replacing", "delete-replaced": "deleting", "refresh": "refreshing",
        "read": "reading", "same": "checking", "import": "importing"}


def _short(urn: str) -> str:
    """`urn:pulumi:dev::agentdeploy::a$b::name` -> `name`."""
    return urn.rsplit("::", 1)[-1] if urn else "?"


@dataclass
class EngineProgress:
    console: Any | None = None  # rich.console.Console; None = quiet (--json)
    title: str = ""
    announced: int = 0
    finished: int = 0
    applied: Counter = field(default_factory=Counter)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    _progress: Any = None
    _task: Any = None

    def __enter__(self) -> EngineProgress:
        if self.console is not None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=False)
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=None)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, event: Any) -> None:
        pre, done, failed = event.resource_pre_event, event.res_outputs_event, event.res_op_failed_event
        if pre is not None and pre.metadata.type != "pulumi:pulumi:Stack":
            self.announced += 1
            op = pre.metadata.op.value
            self._update(f"{self.title} · {VERB.get(op, op)} {_short(pre.metadata.urn)}")
        if done is not None and done.metadata.type != "pulumi:pulumi:Stack":
            self.finished += 1
            op = done.metadata.op.value
            if op in CHANGING and not done.planning:
                self.applied[op] += 1
            self._update(None)
        if failed is not None:
            self.failed.append(_short(failed.metadata.urn))
        diag = event.diagnostic_event
        if diag is not None and diag.severity == "error":
            self.errors.append(diag.message.strip())
        if event.summary_event is not None:
            self.changes = dict(event.summary_event.resource_changes or {})

    def _update(self, description: str | None) -> None:
        if self._progress is None:
            return
        kwargs: dict[str, Any] = {"total": max(self.announced, 1), "completed": self.finished}
        if description:
            kwargs["description"] = description
        self._progress.update(self._task, **kwargs)

    def applied_summary(self) -> str:
        return ", ".join(f"{n} {op}" for op, n in sorted(self.applied.items())) or "nothing"
