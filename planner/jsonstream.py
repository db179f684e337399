"""`deploy plan --json` without holding the plan: each agent's JSON text as soon as its plan is
final but for its share of the stack's fixed cost, and only what the stack's parts read.

An `AgentPlan` is ~20 KB of Python objects (half of it pydantic's per-model bookkeeping); its
JSON text is ~4 KB. Here each agent's members up to its budget are encoded at once and the plan
is dropped, keeping a stub with the fields `infrastructure`, `shares` and the totals read (name,
route, fleet, budget, launch cost, monthly cost, volume, why-lines). Once the fixed cost is
known, each agent's budget and why-lines are finished exactly as `build_plan` finishes them
(`shared_budget`) and appended to its text. The bytes are `plan_json(build_plan(...))`'s:
tests/planner/test_jsonstream.py holds them to it.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from agentdeploy.planner.build import plan_agents, shared_budget, stack_plan
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.infra import infrastructure, shares
from agentdeploy.planner.jsonout import agent_head, agent_text, plan_json
from agentdeploy.planner.plan import AgentPlan, CostEstimate
from agentdeploy.planner.spec import Spec

_M = TypeVar("_M", bound=BaseModel)
_set = object.__setattr__

#: Stubs are never copied, dumped or changed: one empty field set serves them all.
_NOTHING_SET: set[str] = set()
_NO_MONTHS: list[float] = []


def plan_json_text(spec: Spec, catalog: Catalog, *, scale: float = 1.0) -> list[str]:
    """`plan_json(build_plan(spec, catalog, scale=scale))`, holding text instead of plans. Raises
    what `build_plan` raises, and ValueError for a number JSON cannot carry, before returning."""
    texts: list[str] = []

    def keep(plan: AgentPlan) -> AgentPlan:
        texts.append(agent_head(plan))
        return _stub(plan)

    stubs = plan_agents(spec, catalog, scale, keep)
    infra = infrastructure(spec, stubs, catalog)
    share = shares(infra, stubs)
    plan = stack_plan(spec, catalog, scale, stubs, infra).model_copy(update={"agents": []})
    while stubs:  # from the last agent back, each stub dropped as its text is finished
        stub = stubs.pop()
        budget, why = shared_budget(stub, share[stub.name], spec, catalog)
        i = len(stubs)
        texts[i] = agent_text(texts[i], {"budget": budget, "volume": stub.volume, "why": why})
    return plan_json(plan, texts)


def _stub(plan: AgentPlan) -> AgentPlan:
    """What the stack's parts and `shared_budget` read of the plan; never dumped."""
    cost = plan.cost
    return _bare(AgentPlan, {
        "name": plan.name, "route": plan.route, "fleet": plan.fleet, "budget": plan.budget,
        "cost": _bare(CostEstimate, {"monthly_usd": cost.monthly_usd, "items": {"launch": cost.items["launch"]}, "months_usd": _NO_MONTHS}),
        "volume": plan.volume, "why": plan.why,
    })


def _bare(cls: type[_M], fields: dict[str, object]) -> _M:
    """`cls.model_construct(**fields)` without its walk over every other field's default (almost
    all the stubs' cost): the stub has the fields given and no others, so reading any other
    field raises AttributeError rather than returning a default nobody computed."""
    m = cls.__new__(cls)
    _set(m, "__dict__", fields)
    _set(m, "__pydantic_fields_set__", _NOTHING_SET)
    _set(m, "__pydantic_extra__", None)
    _set(m, "__pydantic_private__", None)
    return m
