"""Engine events -> progress counts (and what a failed run had already applied)."""

from __future__ import annotations

import io

from pulumi.automation import EngineEvent
from rich.console import Console

from agentdeploy.stacks.progress import EngineProgress


def _ev(**kw):
    return EngineEvent.from_json({"sequence": 0, "timestamp": 0, **kw})


def _meta(op, name, typ="aws:ec2/vpc:Vpc"):
    return {"op": op, "urn": f"urn:pulumi:dev::agentdeploy::{typ}::{name}", "type": typ, "provider": ""}


def test_counts_applied_steps_failures_and_errors():
    p = EngineProgress()
    p(_ev(resourcePreEvent={"metadata": _meta("same", "agentdeploy-dev", "pulumi:pulumi:Stack")}))
    for name in ("a", "b"):
        p(_ev(resourcePreEvent={"metadata": _meta("create", name)}))
        p(_ev(resOutputsEvent={"metadata": _meta("create", name)}))
    p(_ev(resourcePreEvent={"metadata": _meta("update", "c")}))
    p(_ev(resOpFailedEvent={"metadata": _meta("update", "c"), "status": 1, "steps": 1}))
    p(_ev(diagnosticEvent={"message": "updating c: AccessDenied\n", "severity": "error", "color": "never"}))
    p(_ev(diagnosticEvent={"message": "just info", "severity": "info", "color": "never"}))
    assert (p.announced, p.finished) == (3, 2)
    assert p.applied == {"create": 2}
    assert p.applied_summary() == "2 create"
    assert p.failed == ["c"]
    assert p.errors == ["updating c: AccessDenied"]


def test_preview_steps_are_not_counted_as_applied():
    p = EngineProgress()
    p(_ev(resourcePreEvent={"metadata": _meta("create", "a"), "planning": True}))
    p(_ev(resOutputsEvent={"metadata": _meta("create", "a"), "planning": True}))
    p(_ev(summaryEvent={"resourceChanges": {"create": 1}, "durationSeconds": 0, "maybeCorrupt": False}))
    assert p.finished == 1
    assert not p.applied
    assert p.changes == {"create": 1}


def test_draws_a_bar_on_a_console():
    out = io.StringIO()
    with EngineProgress(console=Console(file=out, width=100, force_terminal=False), title="up dev") as p:
        p(_ev(resourcePreEvent={"metadata": _meta("create", "network-vpc")}))
        p(_ev(resOutputsEvent={"metadata": _meta("create", "network-vpc")}))
    text = out.getvalue()
    assert "creating network-vpc" in text
    assert "1/1" in text
