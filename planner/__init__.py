"""The decision core: decision file -> plan, as pure functions over a versioned catalog."""

from agentdeploy.planner.build import build_plan, spec_catalog
from agentdeploy.planner.catalog import Catalog, load_catalog
from agentdeploy.planner.plan import AgentPlan, Plan
from agentdeploy.planner.spec import Spec, decision_file_schema, load_decision_file

__all__ = ["AgentPlan", "Catalog", "Plan", "Spec", "build_plan", "decision_file_schema", "load_catalog", "load_decision_file", "spec_catalog"]
