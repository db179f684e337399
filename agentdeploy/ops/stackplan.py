"""The plan behind a stack: stacks/Pulumi.<stack>.yaml -> plan file or decision file -> plan.

`deploy reap`, `deploy cost` and `deploy status` compare what runs with what was planned. They
apply the stack's reviewed plan file when there is one (`agentdeploy:planFile`, else
`<decision file stem>.plan.json` beside the decision file), refusing a stale one exactly as the
Pulumi program does, and plan the decision file otherwise. A plan JSON handed over with
`--plan` (`deploy plan FILE --write` or `--json`) is used as it is: that is what a pipeline that
archived its plan, or a machine without the project checkout, can do.
"""

from __future__ import annotations

from pathlib import Path

from agentdeploy.errors import InvalidInput
from agentdeploy.planner import Catalog, Plan, load_catalog
from agentdeploy.planner.planfile import read_plan_document, reviewed_plan
from agentdeploy.stackconfig import load_stack_config


def read_plan_json(path: Path) -> Plan:
    """A plan file or a bare plan JSON, taken as it is (exit 2 when it is not a plan)."""
    plan, _ = read_plan_document(path)
    return plan


def stack_plan(stack: str, plan_json: Path | None = None, project_root: Path | None = None) -> tuple[Plan, Catalog]:
    """The stack's plan and the catalog it was priced with (exit 2 when the stack does not exist
    or its plan file is stale)."""
    if plan_json is not None:
        return read_plan_json(plan_json), load_catalog()
    config = load_stack_config(stack, project_root)
    decision_file = config.decision_file
    if not decision_file.is_file():
        raise InvalidInput(
            f"{config.config_file}: decision file {decision_file} does not exist",
            hint="fix `agentdeploy:decisionFile` in the stack config",
        )
    return reviewed_plan(decision_file, config.plan_file)
