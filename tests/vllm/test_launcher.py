"""The vLLM arguments (templates/vllm_args.py): the plan's fleet settings, turned into `vllm serve` arguments.

The decisive check parses our argv with vLLM's OWN `serve` parser (in the vLLM venv) and
compares each parsed value with what the plan intended; a misspelt flag is shown to be
rejected by the same check, so the check can fail.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import VLLM_KEY_ENV
from agentdeploy.planner.plan import FleetPlan
from agentdeploy.templates import vllm_args as launcher
from tests.support.vllm import REPO_ROOT, require_vllm_python

EXAMPLES = REPO_ROOT / "examples"


def _fleet(**overrides) -> FleetPlan:
    base = dict(
        open_model="llama-3.1-8b",
        hf_repo="meta-llama/Llama-3.1-8B-Instruct",
        served_model_name="llama-3.1-8b",
        instance_type="g6e.xlarge",
        instance_types=["g6e.xlarge", "g6e.2xlarge"],
        gpu="L40S",
        on_demand_base_capacity=1,
        on_demand_percentage_above_base=0,
        min_replicas=1,
        max_replicas=4,
        peak_replicas=3,
        average_replicas=1.5,
        idle_minutes=20,
        active_hours_per_day=12,
        max_concurrency_per_replica=24,
        target_queue_per_replica=6.0,
        max_model_len=8192,
        gpu_memory_utilization=0.85,
        shutdown_timeout_s=90,
        cold_start_s=300,
        hourly_usd_on_demand=1.861,
        hourly_usd_spot=0.74,
    )
    base.update(overrides)
    return FleetPlan(**base)


def _parse_with_vllm(arg_lists: list[list[str]]) -> list[dict]:
    python = require_vllm_python()
    proc = subprocess.run(
        [str(python), "-m", "tests.vllm.serve_parser"],
        input=json.dumps(arg_lists),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "VLLM_NO_USAGE_STATS": "1"},
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


# --------------------------------------------------------------------- pure unit tests


def test_argv_starts_with_vllm_serve_and_model() -> None:
    argv = launcher.vllm_serve_argv(_fleet())
    assert argv[:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]


def test_max_num_seqs_is_the_plans_concurrency_per_replica() -> None:
    args = launcher.vllm_serve_args(_fleet(max_concurrency_per_replica=7))
    assert args[args.index("--max-num-seqs") + 1] == "7"
    assert launcher.max_num_seqs(_fleet(max_concurrency_per_replica=0)) == 1


def test_api_key_value_never_in_argv_and_named_as_env(monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "sk-canary-3f9a1c-do-not-leak"
    monkeypatch.setenv(VLLM_KEY_ENV, canary)
    fleet = _fleet()
    rendered = [
        *launcher.vllm_serve_argv(fleet),
        launcher.shell_command(launcher.vllm_serve_argv(fleet)),
        launcher.systemd_environment(fleet),
    ]
    assert not any(canary in part for part in rendered)
    assert "--api-key" not in launcher.vllm_serve_argv(fleet)
    assert VLLM_KEY_ENV == "VLLM_API_KEY"  # the variable vLLM itself reads
    assert set(launcher.required_environment()) == {"VLLM_API_KEY"}


def test_shell_command_round_trips() -> None:
    argv = launcher.vllm_serve_argv(_fleet(), executable="/opt/agentdeploy/venv/bin/vllm")
    assert shlex.split(launcher.shell_command(argv)) == argv


def test_systemd_environment_splits_back_into_the_args() -> None:
    fleet = _fleet()
    line = launcher.systemd_environment(fleet, port=8000)
    assert line.startswith('Environment="VLLM_SERVE_ARGS=')
    assert line.endswith('"')
    value = line[len('Environment="VLLM_SERVE_ARGS=') : -1]
    # systemd splits an unbraced $VLLM_SERVE_ARGS on whitespace:
    assert value.split() == launcher.vllm_serve_args(fleet, port=8000)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"shutdown_timeout_s": 120}, "shutdown_timeout_s"),
        ({"shutdown_timeout_s": 0}, "shutdown_timeout_s"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"served_model_name": "bad name; rm -rf /"}, "served_model_name"),
    ],
)
def test_bad_fleet_values_are_invalid_input_naming_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        launcher.vllm_serve_argv(_fleet(**overrides))
    assert exc.value.exit_code == 2
    assert any(f"fleet.{field}=" in d for d in exc.value.details)


def test_one_gpu_replica_passes_no_tensor_parallel_flag() -> None:
    assert "--tensor-parallel-size" not in launcher.vllm_serve_args(_fleet())


def test_a_replica_spans_every_gpu_of_a_multi_gpu_instance() -> None:
    args = launcher.vllm_serve_args(_fleet(tensor_parallel_size=8))
    assert args[args.index("--tensor-parallel-size") + 1] == "8"


def test_the_plan_spans_the_chosen_instances_gpus() -> None:
    """Every planned fleet's replica spans its instance's GPUs, and every type it may launch
    has that many (planner/families.py keeps the GPU count)."""
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog

    catalog = load_catalog()
    assert any(i.gpu_count > 1 for i in catalog.gpu_instances.values()), "the catalog should carry a multi-GPU instance"
    for example in sorted(EXAMPLES.glob("*.yaml")):
        for agent in build_plan(load_decision_file(example), catalog).agents:
            if agent.fleet is None:
                continue
            gpus = {catalog.gpu_instances[t].gpu_count for t in agent.fleet.instance_types}
            assert gpus == {agent.fleet.tensor_parallel_size}, (example.name, agent.name)


def test_planner_example_fleets_build_argv() -> None:
    from agentdeploy.planner import build_plan, load_decision_file
    from agentdeploy.planner.catalog import load_catalog

    plan = build_plan(load_decision_file(EXAMPLES / "high-volume-router.yaml"), load_catalog())
    fleets = [a.fleet for a in plan.agents if a.fleet is not None]
    assert fleets, "the high-volume example should have a GPU agent"
    for fleet in fleets:
        args = launcher.vllm_serve_args(fleet)
        assert args[0] == fleet.hf_repo
        assert args[args.index("--shutdown-timeout") + 1] == str(fleet.shutdown_timeout_s)


# --------------------------------------------------------------------- against vLLM's parser

PARSER_FLEETS = [
    _fleet(),
    _fleet(max_concurrency_per_replica=3, max_model_len=2048, gpu_memory_utilization=0.5),
    _fleet(instance_type="p4d.24xlarge", instance_types=["p4d.24xlarge"], tensor_parallel_size=8),
]


@pytest.fixture(scope="module")
def vllm_parsed() -> dict[str, list[dict]]:
    """Every argv of this module parsed in ONE vLLM process (importing vLLM costs ~10 s)."""
    good = [launcher.vllm_serve_args(f, host="0.0.0.0", port=8000) for f in PARSER_FLEETS]
    misspelt = [a.replace("--shutdown-timeout", "--shutdown-timeout-s") for a in good[0]]
    bad_value = [*good[0], "--max-model-len", "lots"]
    results = _parse_with_vllm([*good, misspelt, bad_value])
    return {"good": results[: len(good)], "misspelt": results[len(good)], "bad_value": results[-1]}


@pytest.mark.vllm
def test_vllm_own_parser_reads_every_value_the_plan_intended(vllm_parsed: dict) -> None:
    for fleet, result in zip(PARSER_FLEETS, vllm_parsed["good"], strict=True):
        assert result["ok"], result
        ns = result["args"]
        assert ns["model_tag"] == fleet.hf_repo  # `vllm serve` copies it to args.model
        assert ns["served_model_name"] == [fleet.served_model_name]
        assert ns["max_model_len"] == fleet.max_model_len
        assert ns["gpu_memory_utilization"] == pytest.approx(fleet.gpu_memory_utilization)
        assert ns["max_num_seqs"] == fleet.max_concurrency_per_replica
        assert ns["enable_prefix_caching"] is True
        assert ns["enable_server_load_tracking"] is True
        assert ns["shutdown_timeout"] == fleet.shutdown_timeout_s
        assert ns["host"] == "0.0.0.0"
        assert ns["port"] == 8000
        assert ns["api_key"] is None  # taken from VLLM_API_KEY at run time
        assert ns["tensor_parallel_size"] == fleet.tensor_parallel_size


@pytest.mark.vllm
def test_vllm_own_parser_rejects_a_wrong_flag_and_value(vllm_parsed: dict) -> None:
    wrong_flag, wrong_value = vllm_parsed["misspelt"], vllm_parsed["bad_value"]
    assert not wrong_flag["ok"]
    assert "--shutdown-timeout-s" in wrong_flag["error"]
    assert not wrong_value["ok"]
    assert "--max-model-len" in wrong_value["error"]


@pytest.mark.parametrize("field", ["hf_repo", "served_model_name"])
def test_a_final_newline_is_not_a_safe_argument(field: str) -> None:
    """security.md finding 9: `$` matches before a final newline; the check matches whole."""
    with pytest.raises(InvalidInput) as exc:
        launcher.vllm_serve_args(_fleet(**{field: "tiny-llama\n"}))
    assert [d for d in exc.value.details if d.startswith(f"fleet.{field}=")], exc.value.details
