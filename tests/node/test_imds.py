"""The IMDS emulator speaks IMDSv2 as EC2 does, and the agent's client uses it correctly."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import httpx
import pytest

from agentdeploy.serving.node.imds import ImdsClient
from tests.support.emulators.imds import ImdsEmulator

TTL = {"X-aws-ec2-metadata-token-ttl-seconds": "60"}


def _token(url: str) -> str:
    r = httpx.put(f"{url}/latest/api/token", headers=TTL)
    assert r.status_code == 200
    return r.text


def test_token_is_required_and_its_ttl_validated(imds: ImdsEmulator) -> None:
    assert httpx.get(f"{imds.url}/latest/meta-data/instance-id").status_code == 401
    bad = httpx.get(f"{imds.url}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": "forged"})
    assert bad.status_code == 401
    assert httpx.put(f"{imds.url}/latest/api/token").status_code == 400
    assert httpx.put(f"{imds.url}/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "21601"}).status_code == 400
    ok = httpx.get(f"{imds.url}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": _token(imds.url)})
    assert (ok.status_code, ok.text) == (200, imds.instance_id)


def test_spot_paths_are_404_until_a_notice_then_json(imds: ImdsEmulator) -> None:
    h = {"X-aws-ec2-metadata-token": _token(imds.url)}
    base = f"{imds.url}/latest/meta-data"
    for path in ("spot/instance-action", "spot/termination-time", "events/recommendations/rebalance"):
        assert httpx.get(f"{base}/{path}", headers=h).status_code == 404
    r = httpx.post(f"{imds.url}/_emulator/spot-interruption", json={"action": "terminate", "in_seconds": 120})
    notice = r.json()
    action = httpx.get(f"{base}/spot/instance-action", headers=h)
    assert action.status_code == 200
    assert json.loads(action.text) == notice
    assert httpx.get(f"{base}/spot/termination-time", headers=h).text == notice["time"]
    httpx.post(f"{imds.url}/_emulator/rebalance", json={})
    assert "noticeTime" in httpx.get(f"{base}/events/recommendations/rebalance", headers=h).json()
    assert httpx.delete(f"{imds.url}/_emulator/notices").status_code == 204
    assert httpx.get(f"{base}/spot/instance-action", headers=h).status_code == 404
    assert httpx.post(f"{imds.url}/_emulator/spot-interruption", json={"action": "explode"}).status_code == 400


def test_client_reuses_its_token_and_renews_it_after_a_401(imds: ImdsEmulator) -> None:
    async def scenario() -> tuple[str | None, object, int]:
        async with aiohttp.ClientSession() as s:
            client = ImdsClient(s, imds.url)
            assert await client.spot_notice() is None
            imds.interrupt("stop", in_seconds=30)
            imds._tokens.clear()  # IMDS restarted: every old token is now refused with 401
            notice = await client.spot_notice()
            return await client.instance_id(), notice, sum(1 for m, p, _ in imds.requests if p == "/latest/api/token")

    instance_id, notice, token_requests = asyncio.run(scenario())
    assert instance_id == imds.instance_id
    assert notice.action == "stop"  # type: ignore[attr-defined]
    assert token_requests == 2  # one at start, one after the 401; none per poll


def test_emulator_rejects_unknown_actions_in_process(imds: ImdsEmulator) -> None:
    with pytest.raises(ValueError):
        imds.interrupt("explode")


def test_target_lifecycle_state_needs_a_token_defaults_in_service_and_can_be_set(imds: ImdsEmulator) -> None:
    url = f"{imds.url}/latest/meta-data/autoscaling/target-lifecycle-state"
    assert httpx.get(url).status_code == 401
    h = {"X-aws-ec2-metadata-token": _token(imds.url)}
    assert (httpx.get(url, headers=h).status_code, httpx.get(url, headers=h).text) == (200, "InService")
    r = httpx.post(f"{imds.url}/_emulator/target-lifecycle-state", json={"state": "Terminated"})
    assert r.json() == {"state": "Terminated"}
    assert httpx.get(url, headers=h).text == "Terminated"
    assert httpx.delete(f"{imds.url}/_emulator/notices").status_code == 204  # notices only
    assert httpx.get(url, headers=h).text == "Terminated"
    assert httpx.post(f"{imds.url}/_emulator/target-lifecycle-state", json={"state": "Gone"}).status_code == 400
    assert httpx.post(f"{imds.url}/_emulator/target-lifecycle-state", json={}).status_code == 400
    httpx.post(f"{imds.url}/_emulator/target-lifecycle-state", json={"state": None})  # in no group
    assert httpx.get(url, headers=h).status_code == 404


def test_client_reads_the_target_state_and_404_as_not_applicable() -> None:
    async def read(emulator: ImdsEmulator) -> str | None:
        async with aiohttp.ClientSession() as s:
            return await ImdsClient(s, emulator.url).target_lifecycle_state()

    with ImdsEmulator(target_lifecycle_state=None) as off_group:
        assert asyncio.run(read(off_group)) is None
        off_group.set_target_lifecycle_state("Terminated")
        assert asyncio.run(read(off_group)) == "Terminated"
    with pytest.raises(ValueError):
        ImdsEmulator(target_lifecycle_state="Terminating:Wait")  # never published: not a steady state
