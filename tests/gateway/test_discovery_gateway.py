"""The gateway finds a fleet's nodes in AWS (moto's server) and routes to each directly: two
loopback "nodes" (127.0.0.2 and 127.0.0.3, the private IPs moto gave their instances), each a
vLLM stand-in with its node agent's /healthz beside it, picked by the load each reports; a
stream broken on one is finished on the other; a node whose agent says draining, or that left
the target group, gets no new requests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.gateway.fleet_cloud import REGION, fleet_cloud
from tests.gateway.helpers import GPU_KEY, chat, env_for, gateway_config, openai_text, sse_events, stream_chat
from tests.gateway.openai_standin import OpenAIStandin

pytestmark = pytest.mark.integration

NODES = ("127.0.0.2", "127.0.0.3")


class NodeHealth:
    """The node agent's /healthz on one node's address: 200, or 503 while it drains."""

    def __init__(self, host: str, port: int) -> None:
        self.draining = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(503 if outer.draining else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nodes() -> Iterator[tuple[list[OpenAIStandin], list[NodeHealth]]]:
    """A vLLM stand-in and a node /healthz on each node address, every node on the same ports."""
    first = OpenAIStandin(host=NODES[0]).start()
    second = OpenAIStandin(host=NODES[1])
    second.port = first.port
    second.start()
    h1 = NodeHealth(NODES[0], 0)
    h2 = NodeHealth(NODES[1], h1.port)
    try:
        yield [first, second], [h1, h2]
    finally:
        for s in (first, second):
            s.stop()
        for h in (h1, h2):
            h.close()


def _wait(cond, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _three_go_to(gw, standins: list[OpenAIStandin]) -> int:
    """Send three requests one after another, all answered by the fleet; the index of the one
    node that received them (the other received none). A node may see a request twice when the
    gateway resends it on a fresh connection (a reused one died unanswered), so a node's count
    is at least three, never exactly three."""
    before = [len(s.requests) for s in standins]
    for _ in range(3):
        r = chat(gw.url, GPU_KEY)
        assert r.headers["x-agentdeploy-upstream"] == "vllm", r.headers
    got = [len(s.requests) - n for s, n in zip(standins, before, strict=True)]
    took = [i for i, n in enumerate(got) if n]
    assert len(took) == 1 and got[took[0]] >= 3, (got, gw.log_text()[-3000:])
    return took[0]


def test_discovered_nodes_are_routed_by_load_and_drained_ones_get_nothing(aws, claude_emulator, gateway_factory, nodes):
    standins, health = nodes
    port = standins[0].port
    cloud = fleet_cloud(cidr="127.0.0.0/16", subnet="127.0.0.0/24", port=port)
    ids = [cloud.launch(ip) for ip in NODES]
    cloud.register(*ids)
    config = gateway_config(claude_emulator.base_url, replicas=[], vllm={
        "node_health_port": health[0].port, "max_load_per_replica": 8, "continuation": True,
        "discovery": {"region": REGION, "target_group_arn": cloud.target_group_arn, "refresh_s": 1.0, "port": port}})
    env = {**env_for(claude_emulator), **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    gw = gateway_factory(config, env=env)
    # Read before the gateway said it was ready: its first requests already see the nodes.
    assert 'agentdeploy_gateway_fleet_nodes{upstream="vllm"} 2.0' in gw.metrics()
    a, b = (f"http://{ip}:{port}" for ip in NODES)

    def load_of(url: str) -> float | None:
        line = f'agentdeploy_gateway_replica_load{{upstream="vllm",target="{url}"}} '
        for row in gw.metrics().splitlines():
            if row.startswith(line):
                return float(row.rsplit(" ", 1)[1])
        return None

    # The first node reports 5 requests in flight, the second none: the second takes the work.
    standins[0].running = 5
    _wait(lambda: load_of(a) == 5.0 and load_of(b) == 0.0, "both discovered nodes polled")
    assert _three_go_to(gw, standins) == 1

    # A stream cut on the second node is finished on the first: the fleet's other node.
    standins[1].fault(cut_after=3, token_delay_s=0.02)
    r, text = stream_chat(gw.url, GPU_KEY)
    assert r.status_code == 200
    assert openai_text(sse_events(text)) == "".join(f"tok{i} " for i in range(6))
    assert standins[0].requests[-1]["body"]["continue_final_message"] is True

    # Now the second is the busy one.
    standins[0].running, standins[1].running = 0, 6
    _wait(lambda: load_of(a) == 0.0 and load_of(b) == 6.0, "the new loads polled")
    assert _three_go_to(gw, standins) == 0

    # The first node's agent says draining: everything goes to the busier second node.
    health[0].draining = True
    draining = f'agentdeploy_gateway_replica_draining{{upstream="vllm",target="{a}"}} 1.0'
    _wait(lambda: draining in gw.metrics(), "the drain seen")
    assert _three_go_to(gw, standins) == 1

    # The second node leaves the target group (its drain deregistered it) and the first recovers.
    health[0].draining = False
    cloud.deregister(ids[1])
    _wait(lambda: 'agentdeploy_gateway_fleet_nodes{upstream="vllm"} 1.0' in gw.metrics()
          and f'agentdeploy_gateway_replica_draining{{upstream="vllm",target="{a}"}} 0.0' in gw.metrics(),
          "the second node dropped and the first back")
    assert _three_go_to(gw, standins) == 0
    assert load_of(b) is None  # a node gone from the fleet is gone from /metrics too

    # Every node full: the request is unmet demand (reason overload) and Claude answers it.
    standins[0].running = 8
    _wait(lambda: load_of(a) == 8.0, "the full node polled")
    r = chat(gw.url, GPU_KEY)
    assert r.headers["x-agentdeploy-upstream"] == "anthropic"
    assert "vllm:overload" in r.headers["x-agentdeploy-fallback"]
    assert 'agentdeploy_gateway_unmet_demand_total{agent="gpu-agent",upstream="vllm",reason="overload"} 1.0' in gw.metrics()
