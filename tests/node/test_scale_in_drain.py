"""A scale-in on a live node: the group terminates the instance without any spot notice.

Scale-to-zero, `deploy reap`, capacity rebalance and instance refresh all reach the node the
same way: IMDS's autoscaling/target-lifecycle-state turns "Terminated" while the terminating
hook holds the instance. The agent must drain as for a spot notice — and complete the hook,
or the termination waits out its heartbeat timeout. Real vLLM on CPU, IMDS emulator, moto.
"""

from __future__ import annotations

import pytest

from agentdeploy.serving.node.cloud import METRIC_SPOT_INTERRUPTION
from tests.node.fixtures import (
    HOOK,
    create_fleet,
    engine_paused,
    published_metric_names,
    registered_targets,
    wait_for_server_load,
)
from tests.node.test_spot_drain import AGENT, STACK, VLLM_ARGS, _agent_args
from tests.node.traffic import start_traffic

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

#: Inside create_fleet's 120 s heartbeat timeout; room for the queued answers on a busy machine.
DRAIN_BUDGET_S = 90


def test_target_state_terminated_drains_in_flight_and_completes_the_hook(
    aws, imds_factory, completed_lifecycle_actions: list[dict], vllm_factory, node_agent_factory
) -> None:
    fleet = create_fleet()
    imds = imds_factory(fleet.instance_id, fleet.group)
    server = vllm_factory(extra_args=VLLM_ARGS)
    agent = node_agent_factory(_agent_args(server, imds, "--drain-budget-s", str(DRAIN_BUDGET_S)))
    agent.wait_for(lambda s: s["healthy"], 30, "healthy")
    assert agent.state()["phase"] == "serving"  # InService is polled and is no reason to drain

    # Held in flight by a paused engine: "still in flight when the drain starts waiting" is
    # certain, however fast this machine answers today.
    with engine_paused(server.process):
        traffic = start_traffic(server.base_url, server.served_name, streaming=2, plain=2)
        wait_for_server_load(server.base_url, 4)
        imds.set_target_lifecycle_state("Terminated")
        state = agent.wait_for(lambda s: s["phase"] != "serving", 20, "scale-in seen")
        assert agent.healthz() == 503
        assert state["notice"]["kind"] == "scale-in"
        agent.wait_for(lambda s: s["deregistered_from"], 20, "deregistered")
        agent.wait_for(lambda s: s["waited_for_in_flight"] > 0, 20, "the drain waiting for in-flight requests")

    traffic.join(timeout_s=120)
    for outcome in traffic.outcomes:
        assert outcome.complete, outcome

    state = agent.wait_for(lambda s: s["phase"] == "drained", 60, "drained")
    assert state["notice"]["kind"] == "scale-in"
    assert state["notice"]["action"] == "terminate"
    assert state["stop_reason"] == "idle"  # SIGTERM only after the in-flight requests finished
    assert state["waited_for_in_flight"] > 0, "the drain never saw a request to wait for"
    assert state["lifecycle_completed"] and not state["errors"], state
    assert agent.healthz() == 503
    events = [e["event"] for e in state["events"]]
    assert "spot_notice" not in events
    order = ["scale_in_notice", "deregistered", "stopping_vllm", "vllm_signalled", "vllm_stopped",
             "lifecycle_completed", "drained"]
    assert [e for e in events if e in order] == order
    assert server.wait_exit(30) is not None, "vLLM did not exit after SIGTERM"

    assert registered_targets(fleet.target_group_arn) == []
    assert completed_lifecycle_actions == [
        {"group": fleet.group, "hook": HOOK, "instance": fleet.instance_id, "result": "CONTINUE"}
    ]
    assert METRIC_SPOT_INTERRUPTION not in published_metric_names(STACK, AGENT)  # our own scale-in is not a spot interruption
