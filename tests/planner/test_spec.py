"""The decision file: valid files load, every mistake names file, line and field."""

from __future__ import annotations

import pytest

from agentdeploy.errors import InvalidInput
from agentdeploy.planner.spec import decision_file_schema, load_decision_file

from .conftest import EXAMPLES, agent_doc, decision_doc


@pytest.mark.parametrize("name", ["service-business.yaml", "high-volume-router.yaml"])
def test_examples_load(name):
    spec = load_decision_file(EXAMPLES / name)
    assert spec.agents
    assert spec.stack.name


def test_defaults_resolve_from_the_three_answers(write_decision):
    spec = load_decision_file(write_decision(decision_doc({
        "chat": agent_doc(latency={"p95_s": 3}),
        "api": agent_doc(latency={"p95_s": 60}),
        "night": agent_doc(latency={}),
    })))
    assert spec.agents["chat"].latency.resolved_audience == "interactive"
    assert spec.agents["chat"].latency.resolved_measure == "first_token"
    assert spec.agents["api"].latency.resolved_measure == "full_response"
    assert spec.agents["night"].latency.resolved_audience == "batch"
    assert spec.agents["chat"].volume.month_12 == 1000


def test_misspelt_key_gets_did_you_mean_with_line(write_decision):
    text = """version: 1
stack:
  name: test
agents:
  a:
    latency:
      p95: 2
    quality: {wrong_answer_cost: low, task: qa}
    volume: {conversations_per_month: 10}
    profile: {input_tokens_per_turn: 10, output_tokens_per_turn: 10}
"""
    path = write_decision(text)
    with pytest.raises(InvalidInput) as err:
        load_decision_file(path)
    detail = "\n".join(err.value.details)
    assert f"{path}:7:" in detail
    assert "agents.a.latency.p95" in detail
    assert "did you mean 'p95_s'?" in detail


def test_wrong_value_names_the_valid_ones(write_decision):
    path = write_decision(decision_doc({"a": agent_doc(quality={"wrong_answer_cost": "huge", "task": "qa"})}))
    with pytest.raises(InvalidInput) as err:
        load_decision_file(path)
    detail = "\n".join(err.value.details)
    assert "agents.a.quality.wrong_answer_cost" in detail
    assert "'low'" in detail
    assert "'huge'" in detail
    assert err.value.exit_code == 2


def test_missing_field_is_named(write_decision):
    doc = decision_doc({"a": agent_doc()})
    del doc["agents"]["a"]["profile"]["output_tokens_per_turn"]
    with pytest.raises(InvalidInput) as err:
        load_decision_file(write_decision(doc))
    assert any("profile.output_tokens_per_turn: required field is missing" in d for d in err.value.details)


def test_yaml_syntax_error_has_line(write_decision):
    path = write_decision("version: 1\nstack:\n  name: [unclosed\nagents: {}\n")
    with pytest.raises(InvalidInput) as err:
        load_decision_file(path)
    assert f"{path}:" in err.value.message
    assert "not valid YAML" in err.value.message


def test_inconsistent_latency_is_rejected(write_decision):
    path = write_decision(decision_doc({"a": agent_doc(latency={"audience": "interactive"})}))
    with pytest.raises(InvalidInput) as err:
        load_decision_file(path)
    assert any("needs a p95_s ceiling" in d for d in err.value.details)


def test_bad_agent_name_and_email(write_decision):
    path = write_decision(decision_doc({"Bad_Name": agent_doc()}, alert_emails=["not-an-email"]))
    with pytest.raises(InvalidInput) as err:
        load_decision_file(path)
    text = "\n".join(err.value.details)
    assert "Bad_Name" in text
    assert "not-an-email" in text


def test_usd_wrong_answer_cost_maps_to_levels(write_decision):
    spec = load_decision_file(write_decision(decision_doc({
        "a": agent_doc(quality={"wrong_answer_cost": 0.5, "task": "qa"}),
        "b": agent_doc(quality={"wrong_answer_cost": 500, "task": "qa"}),
    })))
    assert spec.agents["a"].quality.cost_level == "low"
    assert spec.agents["b"].quality.cost_level == "critical"


def test_hourly_shape_sets_hours_and_peak(write_decision):
    shape = [0] * 8 + [1] * 8 + [4] + [1] * 3 + [0] * 4  # 12 active hours, one busy hour
    spec = load_decision_file(write_decision(decision_doc({"a": agent_doc(volume={"conversations_per_month": 100, "hourly_shape": shape})})))
    vol = spec.agents["a"].volume
    assert vol.resolved_active_hours == 12
    assert vol.resolved_peak_factor == pytest.approx(4 / (15 / 12))


def test_schema_is_json_schema_with_agent_fields():
    schema = decision_file_schema()
    assert schema["$schema"].startswith("https://json-schema.org/")
    text = str(schema)
    for field in ("p95_s", "wrong_answer_cost", "conversations_per_month_12m", "static_prefix_tokens"):
        assert field in text


def test_schema_validates_the_examples():
    import jsonschema
    import yaml

    schema = decision_file_schema()
    for path in EXAMPLES.glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
