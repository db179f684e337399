"""`deploy simulate`: a discrete-event simulation of a stack's scale loop, per GPU agent and
scenario, built from the definitions the stack provisions (see `inputs`) — pure and seeded.

traffic (arrivals) -> engine (fleet, gateway, CloudWatch, alarms, policies) -> report.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentdeploy.ops.simulate.engine import Engine
from agentdeploy.ops.simulate.inputs import AgentInputs, agent_inputs
from agentdeploy.ops.simulate.result import RunResult
from agentdeploy.ops.simulate.scenarios import SCENARIOS, build

__all__ = ["SCENARIOS", "AgentInputs", "RunResult", "agent_inputs", "run", "simulate"]


def run(inp: AgentInputs, scenario: str, days: float, seed: int) -> RunResult:
    """One agent through one scenario."""
    return Engine(inp, build(scenario, inp, days, seed), seed).run()


def simulate(inputs: Sequence[AgentInputs], scenarios: Sequence[str], days: float,
             seed: int) -> list[tuple[AgentInputs, list[RunResult]]]:
    """Every agent through every scenario, in the order given."""
    return [(inp, [run(inp, name, days, seed) for name in scenarios]) for inp in inputs]
