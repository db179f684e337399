"""The plan behind a stack: stacks/Pulumi.<stack>.yaml -> decision file -> planner.

`deploy cost` and `deploy status` compare what runs with what was planned; they re-plan from the
stack's decision file (the planner is pure and fast) rather than trusting a stored copy, unless
the user hands them a plan JSON (`deploy plan FILE --json > plan.json`), which is what a pipeline
that archived its plan or a machine without the project checkout can do.
"""

from __future__ import annotations

import json
from pathlib import Path

from agentdeploy.errors import InvalidInput
from agentdeploy.planner import Catalog, Plan, build_plan, load_catalog, load_decision_file, spec_catalog
from agentdeploy.stackconfig import load_stack_config


def read_plan_json(path: Path) -> Plan:
    from pydantic import ValidationError

    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read plan ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise InvalidInput(f"{path}:{err.lineno}: not JSON ({err.msg})", hint="write it with `deploy plan FILE --json`") from None
    try:
        return Plan.model_validate(data)
    except ValidationError as err:
        details = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:10]]
        raise InvalidInput(f"{path}: not a plan", details=details, hint="write it with `deploy plan FILE --json`") from None


def stack_plan(stack: str, plan_json: Path | None = None, project_root: Path | None = None) -> tuple[Plan, Catalog]:
    """The stack's plan and the catalog it was priced with (exit 2 when the stack does not exist)."""
    if plan_json is not None:
        return read_plan_json(plan_json), load_catalog()
    config = load_stack_config(stack, project_root)
    decision_file = config.decision_file
    if not decision_file.is_file():
        raise InvalidInput(
            f"{config.config_file}: decision file {decision_file} does not exist",
            hint="fix `agentdeploy:decisionFile` in the stack config",
        )
    spec = load_decision_file(decision_file)
    catalog = spec_catalog(spec)
    return build_plan(spec, catalog), catalog
