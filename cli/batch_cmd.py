"""`deploy batch`: run a batch agent's work on the Message Batches API, for people and pipelines.

    deploy batch submit drafts.jsonl --agent marketing-drafts --gateway-url URL [--wait --out results.jsonl]
    deploy batch submit drafts.jsonl --agent-config out/agents/marketing-drafts.json   (straight to the API)
    deploy batch status ID | results ID --out FILE | cancel ID

State lives under --state-dir (default ~/.agentdeploy/batches/): `status`, `results` and `cancel`
need only the id, and submitting the same file for the same agent again follows the batch it
already submitted. Exit codes: 0 done, 1 the gateway/API failed, 2 bad input, 4 a key is not set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from agentdeploy.errors import InvalidInput
from agentdeploy.ops.batch_client import (
    BatchApi,
    BatchState,
    StateDir,
    apply_agent_config,
    direct_target,
    file_sha256,
    follow,
    gateway_target,
    read_jsonl,
    write_results,
)

_state_dir = click.option("--state-dir", type=click.Path(path_type=Path), envvar="AGENTDEPLOY_BATCH_STATE_DIR",
                          help="Where batch state is kept (default ~/.agentdeploy/batches).")
_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
_poll = click.option("--poll-s", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Seconds between status checks while waiting.")


@click.group("batch")
def batch() -> None:
    """Submit, follow, fetch and cancel Message Batches for batch agents."""


def _api(state: BatchState) -> BatchApi:
    from agentdeploy.ops.batch_client import BatchTarget

    return BatchApi(state.base_url, BatchTarget(state.base_url, state.key_env, state.agent, state.direct).headers())


def _wait(api: BatchApi, state: BatchState, poll_s: float, quiet: bool) -> dict[str, Any]:
    """Follow to the end with a progress bar (on stderr; none with --json)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=quiet, transient=False) as bar:
        task = bar.add_task(f"{state.id} in_progress", total=state.requests)

        def seen(view: dict[str, Any]) -> None:
            counts = view.get("request_counts") or {}
            done = sum(int(v or 0) for k, v in counts.items() if k != "processing")
            bar.update(task, completed=done, description=f"{state.id} {view.get('processing_status')}")

        return follow(api, state.id, poll_s, seen, time.sleep)


def _fetch(api: BatchApi, state: BatchState, out: Path, sd: StateDir) -> int:
    data = api.results(state.id)
    write_results(out, data)
    state.results_file = str(out)
    state.processing_status = "ended"
    sd.save(state)
    return sum(1 for line in data.splitlines() if line.strip())


def _emit(as_json: bool, doc: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(doc, indent=2) if as_json else text)


@batch.command("submit")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--agent", help="The batch agent (its key: AGENTDEPLOY_KEY_<AGENT>). Taken from --agent-config when that is given.")
@click.option("--gateway-url", envvar="AGENTDEPLOY_GATEWAY_URL", help="The stack's gateway (`deploy outputs`).")
@click.option("--agent-config", type=click.Path(path_type=Path, dir_okay=False),
              help="Straight to the API: the rendered agents/<name>.json (model, max_tokens, cache), key from its env var.")
@click.option("--api-url", envvar="ANTHROPIC_BASE_URL", help="The API's base URL with --agent-config (default https://api.anthropic.com).")
@click.option("--wait/--no-wait", default=False, help="Follow the batch to its end (a progress bar), then fetch results to --out.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Where --wait writes the results (JSONL).")
@click.option("--new", is_flag=True, help="Submit again even if this file was submitted for this agent before.")
@_poll
@_state_dir
@_json
def submit(file: Path, agent: str | None, gateway_url: str | None, agent_config: Path | None, api_url: str | None, wait: bool,
           out: Path | None, new: bool, poll_s: float, state_dir: Path | None, as_json: bool) -> None:
    """Submit FILE.jsonl (one {"custom_id", "params"} a line) as a batch for a batch agent.

    Exit codes: 0 submitted (or followed to the end), 1 gateway/API failure, 2 bad input, 4 key not set.
    """
    requests = read_jsonl(file)
    if agent_config is not None:
        try:
            config = json.loads(agent_config.read_text())
        except (OSError, ValueError) as err:
            raise InvalidInput(f"{agent_config}: not a rendered agent config ({err})", hint="pass out/agents/<agent>.json from `deploy render`") from None
        target = direct_target(config, api_url)
        requests = apply_agent_config(requests, config)
    elif gateway_url and agent:
        target = gateway_target(gateway_url, agent)
    else:
        raise InvalidInput("say where the batch goes: --agent NAME with --gateway-url URL, or --agent-config agents/NAME.json")
    if wait and out is None:
        raise InvalidInput("--wait writes the results: give --out FILE")
    sd = StateDir(state_dir)
    sha = file_sha256(file)
    state = None if new else sd.for_input(target.agent, sha)
    resumed = state is not None
    if state is None:
        api = BatchApi(target.base_url, target.headers())
        view = api.create(requests)
        state = BatchState(str(view["id"]), target.agent, target.base_url, target.key_env, target.direct, sha, len(requests), time.time(),
                           str(view.get("processing_status")))
        sd.save(state)
    else:
        api = _api(state)
    doc: dict[str, Any] = {"id": state.id, "agent": state.agent, "requests": state.requests, "resumed": resumed}
    if not wait:
        _emit(as_json, doc, f"{'following' if resumed else 'submitted'} batch {state.id} ({state.requests} requests) for {state.agent}"
              f"\nnext: deploy batch results {state.id} --out results.jsonl")
        return
    view = _wait(api, state, poll_s, as_json)
    assert out is not None
    lines = _fetch(api, state, out, sd)
    doc.update(processing_status="ended", request_counts=view.get("request_counts"), results_file=str(out), results=lines)
    _emit(as_json, doc, f"batch {state.id} ended: {view.get('request_counts')}; {lines} results written to {out}")


@batch.command("status")
@click.argument("batch_id")
@_state_dir
@_json
def status(batch_id: str, state_dir: Path | None, as_json: bool) -> None:
    """The batch's processing status and request counts."""
    sd = StateDir(state_dir)
    state = sd.load(batch_id)
    view = _api(state).retrieve(batch_id)
    state.processing_status = str(view.get("processing_status"))
    sd.save(state)
    _emit(as_json, view, f"{batch_id} ({state.agent}): {view.get('processing_status')} {view.get('request_counts')}")


@batch.command("results")
@click.argument("batch_id")
@click.option("--out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Where to write the results (JSONL).")
@click.option("--wait/--no-wait", default=True, help="Wait (a progress bar) until the batch ends; --no-wait fails if it has not.")
@_poll
@_state_dir
@_json
def results(batch_id: str, out: Path, wait: bool, poll_s: float, state_dir: Path | None, as_json: bool) -> None:
    """Fetch every result of an ended batch into --out (waits for the end unless --no-wait)."""
    sd = StateDir(state_dir)
    state = sd.load(batch_id)
    api = _api(state)
    view = _wait(api, state, poll_s, as_json) if wait else api.retrieve(batch_id)
    if view.get("processing_status") != "ended":
        raise InvalidInput(f"batch {batch_id} has not ended ({view.get('processing_status')}: {view.get('request_counts')})",
                           hint="run it again later, or without --no-wait to wait for the end")
    lines = _fetch(api, state, out, sd)
    _emit(as_json, {"id": batch_id, "request_counts": view.get("request_counts"), "results_file": str(out), "results": lines},
          f"{lines} results of {batch_id} written to {out} ({view.get('request_counts')})")


@batch.command("cancel")
@click.argument("batch_id")
@_state_dir
@_json
def cancel(batch_id: str, state_dir: Path | None, as_json: bool) -> None:
    """Cancel a batch: requests not yet processed end as canceled (and bill nothing)."""
    sd = StateDir(state_dir)
    state = sd.load(batch_id)
    view = _api(state).cancel(batch_id)
    state.processing_status = str(view.get("processing_status"))
    sd.save(state)
    _emit(as_json, view, f"{batch_id}: {view.get('processing_status')}")
