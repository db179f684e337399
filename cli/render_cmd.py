"""`deploy render`: the plan's artefacts as files, for review, GitOps diffs and local serving.

Writes the gateway config (what `deploy serve` reads), the plan file (the plan with the hashes of
its decision file and catalog, as `deploy plan --write` writes it), each API agent's client
config, and each self-hosted agent's vLLM command line and node user data. Secrets appear only
as references (env var names, hashes of client keys), never as values.

A plan without a gateway (`infrastructure.gateway.deploy: false`, the planner's call for a small
API-only stack) gets no gateway.yaml: its clients call Claude directly with their agent's file,
and the output says why, with the plan's own reasons. Gateway options are refused for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from agentdeploy.naming import NODE_HEALTH_PORT


def _replicas(values: tuple[str, ...]) -> dict[str, list[str]]:
    from agentdeploy.errors import InvalidInput

    out: dict[str, list[str]] = {}
    for item in values:
        agent, sep, url = item.partition("=")
        if not sep or not url.startswith(("http://", "https://")):
            raise InvalidInput(f"--vllm-replica {item!r}: expected AGENT=http://host:port")
        out.setdefault(agent, []).append(url.rstrip("/"))
    return out


@click.command("render")
@click.argument("decision_file", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Folder to write the artefacts to.")
@click.option("--catalog", "catalog_files", multiple=True, type=click.Path(path_type=Path), help="Catalog override file (repeatable).")
@click.option("--anthropic-base-url", default=None, help="Claude API base URL (default: the public API).")
@click.option("--vllm-replica", "replicas", multiple=True, metavar="AGENT=URL", help="A vLLM replica of a GPU agent (repeatable).")
@click.option("--replicas-dir", default=None, metavar="DIR",
              help="Folder of <agent>.replicas files (one vLLM URL a line) the gateway re-reads as fleets scale.")
@click.option("--node-health-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help=f"Replicas are agentdeploy GPU nodes: also read each node agent's /healthz on this port "
                   f"(its default is {NODE_HEALTH_PORT}), so a draining spot node gets no new requests.")
@click.option("--redis-url-env", "redis_url", default=None, metavar="ENV_VAR",
              help="Share budgets across gateway replicas through Redis; the URL is read from this env var at serve time.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def render(decision_file: Path, out_dir: Path, catalog_files: tuple[Path, ...], anthropic_base_url: str | None,
           replicas: tuple[str, ...], replicas_dir: str | None, node_health_port: int | None, redis_url: str | None,
           as_json: bool) -> None:
    """Render the gateway config and per-agent artefacts from the plan.

    Client keys: set AGENTDEPLOY_KEY_<AGENT> (comma-separated for several) while rendering; only
    their SHA-256 hashes are written. Exit codes: 0 written, 2 invalid input, 3 infeasible plan.
    """
    from agentdeploy.errors import InvalidInput
    from agentdeploy.planner import build_plan, load_decision_file, spec_catalog

    spec = load_decision_file(decision_file)
    catalog = spec_catalog(spec, catalog_files)
    plan = build_plan(spec, catalog)
    vllm = _replicas(replicas)
    unknown = sorted(set(vllm) - {a.name for a in plan.agents if a.route == "gpu"})
    if unknown:
        raise InvalidInput(f"--vllm-replica names agents that are not self-hosted in the plan: {', '.join(unknown)}")
    gateway_options = {"--anthropic-base-url": anthropic_base_url, "--replicas-dir": replicas_dir,
                       "--node-health-port": node_health_port, "--redis-url-env": redis_url}
    with_gateway = plan.deploys_gateway
    if not with_gateway:
        given = [name for name, value in gateway_options.items() if value is not None]
        if given:
            raise InvalidInput(
                f"{', '.join(given)} configure{'s' if len(given) == 1 else ''} the gateway, which the plan leaves out "
                "(see `deploy plan`: infrastructure.gateway)",
                hint="drop the option, or set `stack.gateway: true` in the decision file to render a gateway")
    files: dict[str, str] = {}
    if with_gateway:
        files["gateway.yaml"] = _gateway_yaml(plan, catalog, vllm, anthropic_base_url, replicas_dir, node_health_port,
                                              redis_url)
    files.update(_files(plan, catalog, decision_file, catalog_files, out_dir))
    for rel, text in files.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    stale = out_dir / "gateway.yaml"
    removed = not with_gateway and stale.is_file()
    if removed:  # an earlier render's config would serve a gateway the plan no longer has
        stale.unlink()
    why = [] if with_gateway or plan.infrastructure is None else list(plan.infrastructure.gateway.why)
    if as_json:
        click.echo(json.dumps({"out": str(out_dir), "files": sorted(files), "gateway": with_gateway, "why_no_gateway": why,
                               "removed": ["gateway.yaml"] if removed else []}, indent=2))
        return
    for rel in sorted(files):
        click.echo(f"wrote {out_dir / rel}")
    if with_gateway:
        click.echo(f"serve it: deploy serve --config {out_dir / 'gateway.yaml'}")
        return
    if removed:
        click.echo(f"removed {stale} (an earlier render's; this plan has no gateway)")
    click.echo("no gateway.yaml: the plan leaves this stack without a gateway")
    for line in why:
        click.echo(f"  {line}")
    click.echo(f"clients call Claude with {out_dir / 'agents'}/<agent>.json; to run a gateway anyway set "
               "`stack.gateway: true` in the decision file")


def _gateway_yaml(plan: Any, catalog: Any, vllm: dict[str, list[str]], anthropic_base_url: str | None,
                  replicas_dir: str | None, node_health_port: int | None, redis_url: str | None) -> str:
    from agentdeploy.serving.config import BudgetStoreSpec, SecretRef, dump_yaml
    from agentdeploy.templates.gateway_config import build_gateway_config, client_key_hashes_from_env

    kwargs: dict[str, Any] = {}
    if anthropic_base_url:
        kwargs["anthropic_base_url"] = anthropic_base_url.rstrip("/")
    if redis_url:
        kwargs["budget_store"] = BudgetStoreSpec(backend="redis", redis_url=SecretRef(env=redis_url))
    config = build_gateway_config(
        plan, catalog, vllm_replicas=vllm, replicas_dir=replicas_dir, node_health_port=node_health_port,
        client_key_hashes=client_key_hashes_from_env([a.name for a in plan.agents]), **kwargs,
    )
    return dump_yaml(config)


def _files(plan: Any, catalog: Any, decision_file: Path, catalog_files: tuple[Path, ...], out_dir: Path) -> dict[str, str]:
    """The plan file, each API agent's client config, each GPU agent's vLLM command and user data."""
    from agentdeploy.planner.planfile import plan_file_for
    from agentdeploy.templates.agent_config import agent_config_document
    from agentdeploy.templates.gpu_node import GpuNodeSpec, render_user_data
    from agentdeploy.templates.vllm_args import shell_command, vllm_serve_argv

    files: dict[str, str] = {
        "plan.json": json.dumps(plan_file_for(plan, out_dir / "plan.json", decision_file, catalog,
                                              catalog_files).document(), indent=2) + "\n",
    }
    for agent in plan.agents:
        if agent.route in ("api", "batch"):
            files[f"agents/{agent.name}.json"] = json.dumps(agent_config_document(agent, None), indent=2) + "\n"
        if agent.fleet is not None:
            files[f"gpu/{agent.name}/vllm-serve.sh"] = "#!/bin/sh\n# API key: from the VLLM_API_KEY environment variable\nexec " + shell_command(vllm_serve_argv(agent.fleet)) + "\n"
            files[f"gpu/{agent.name}/user-data.yaml"] = render_user_data(
                GpuNodeSpec(stack=plan.stack, agent=agent.name, region=plan.region, fleet=agent.fleet,
                            engine_image=catalog.engine_image.reference)
            )
    return files
