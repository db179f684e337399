"""The decision file as a front door: each finding of the security review's fuzzing, reproduced.

YAML 1.2 meanings, duplicate keys, whole-name matching, regions, control characters in every
value that reaches a rendered file, invalid UTF-8, clipped messages, bounded numbers (the
catalog's assumptions and `catalog:` overrides included) and strict `--json` output.
"""

from __future__ import annotations

import json
import math
import re

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from agentdeploy.cli.main import cli
from agentdeploy.errors import InvalidInput, OperationFailed
from agentdeploy.planner.catalog import Assumptions
from agentdeploy.planner.spec import NAME_RE, REGION_RE, load_decision_file
from agentdeploy.planner.yamlsource import MAX_DEPTH

from .conftest import EXAMPLES

EXAMPLE = (EXAMPLES / "service-business.yaml").read_text()


@pytest.fixture(autouse=True)
def _no_user_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTDEPLOY_DEBUG", raising=False)


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def _plan(tmp_path, text: str | bytes, *args: str, name: str = "decisions.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path, CliRunner().invoke(cli, ["plan", str(path), *args])


def _invalid(tmp_path, text: str | bytes, *args: str) -> tuple[str, str]:
    path, result = _plan(tmp_path, text, *args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    return str(path), result.output


def _strict(text: str) -> object:
    def reject(name: str) -> object:
        raise ValueError(name)

    return json.loads(text, parse_constant=reject)


# --- YAML 1.2 meanings --------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n"])
def test_yaml_1_1_booleans_are_words_not_numbers(tmp_path, word):
    text = EXAMPLE.replace("turns: 4", f"turns: {word}")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(text, 'turns: ' + word)}: agents.intake.profile.turns: Input should be a valid integer (got '{word}')" in out


def test_sexagesimal_is_a_string_not_ninety(tmp_path):
    text = EXAMPLE.replace("turns: 4", "turns: 1:30")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(text, '1:30')}: agents.intake.profile.turns:" in out
    assert "(got '1:30')" in out


def test_cache_off_unquoted_is_the_word_off(tmp_path):
    text = EXAMPLE.replace("    profile:\n      turns: 4", "    overrides:\n      cache: off\n    profile:\n      turns: 4")
    path = tmp_path / "off.yaml"
    path.write_text(text)
    assert load_decision_file(path).agents["intake"].overrides.cache == "off"


@pytest.mark.parametrize("value", ["true", "'1'", "1.0"])
def test_version_is_the_number_one(tmp_path, value):
    text = EXAMPLE.replace("version: 1", f"version: {value}")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(text, 'version:')}: version:" in out


def test_a_quoted_number_is_a_string(tmp_path):
    text = EXAMPLE.replace("turns: 4", 'turns: "4"')
    path, out = _invalid(tmp_path, text)
    assert "agents.intake.profile.turns: Input should be a valid integer" in out


# --- duplicate keys -----------------------------------------------------------------------------


@pytest.mark.parametrize("line", ["  region: us-east-1", "      turns: 4", "  intake:", "version: 1"])
def test_duplicate_keys_name_both_lines(tmp_path, line):
    first = _line(EXAMPLE, line)
    lines = EXAMPLE.splitlines(keepends=True)
    lines.insert(first, lines[first - 1])
    path, out = _invalid(tmp_path, "".join(lines))
    key = line.strip().split(":")[0]
    assert f"{path}:{first + 1}:" in out
    assert f"duplicate key '{key}': first at line {first}, again at line {first + 1}" in out


def test_duplicate_keys_in_a_catalog_file_name_both_lines(tmp_path):
    override = tmp_path / "over.yaml"
    override.write_text("assumptions:\n  days_per_month: 30\n  days_per_month: 31\n")
    _, result = _plan(tmp_path, EXAMPLE, "--catalog", str(override))
    assert result.exit_code == 2
    assert f"{override}:3: assumptions.days_per_month: catalog file is not valid YAML (duplicate key 'days_per_month': first at line 2" in result.output


# --- names, regions, emails ---------------------------------------------------------------------


def test_names_match_whole_not_before_a_final_newline():
    assert NAME_RE.match("intake\n") and not NAME_RE.fullmatch("intake\n")  # why fullmatch
    assert REGION_RE.fullmatch("us-east-1")
    assert not REGION_RE.fullmatch("us-east-1\n")


@pytest.mark.parametrize("key", ['"intake\\n"', '"intake\\r"', "Intake", "intake_", "'1intake'", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_agent_names_are_matched_whole(tmp_path, key):
    text = EXAMPLE.replace("  intake:", f"  {key}:")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(text, 'agents:')}: agents: agent names must be" in out


@pytest.mark.parametrize("name", ['"service\\n"', "Service", "a" * 41, '"a\\u2028b"'])
def test_stack_name_is_matched_whole(tmp_path, name):
    text = EXAMPLE.replace("  name: service-business", f"  name: {name}")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:5: stack.name:" in out


@pytest.mark.parametrize("region", ["us-east-1", "us-gov-west-1", "ap-southeast-7", "eu-central-2", "cn-northwest-1", "il-central-1", "mx-central-1", "ca-west-1", "us-isob-east-1", "eusc-de-east-1"])
def test_real_regions_are_accepted(tmp_path, region):
    path = tmp_path / "r.yaml"
    path.write_text(EXAMPLE.replace("region: us-east-1", f"region: {region}"))
    assert load_decision_file(path).stack.region == region


@pytest.mark.parametrize("region", ['"us-east-1\\nLD_PRELOAD=/tmp/evil.so"', "US-EAST-1", "mars-north-1", "../../etc", "us-east", '""', "us-east-100", '"us-east-1 "'])
def test_other_regions_are_refused_with_their_line(tmp_path, region):
    text = EXAMPLE.replace("region: us-east-1", f"region: {region}")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:6: stack.region:" in out


def test_alert_emails_are_bounded(tmp_path):
    many = "[" + ", ".join(f"ops{i}@example.com" for i in range(101)) + "]"
    path, out = _invalid(tmp_path, EXAMPLE.replace("[ops@example.com]", many))
    assert f"{path}:7: stack.alert_emails: Value error, 101 addresses; at most 100" in out or "101 addresses; at most 100" in out
    path, out = _invalid(tmp_path, EXAMPLE.replace("[ops@example.com]", "[" + "a" * 250 + "@example.com]"))
    assert f"{path}:7: stack.alert_emails: not an email address" in out


# --- control characters in every value that reaches a rendered file -----------------------------

#: (where the value goes in the example, the field the error must name)
RENDERED = [
    ("  name: service-business", "  name: {v}", "stack.name"),
    ("  region: us-east-1", "  region: {v}", "stack.region"),
    ("  alert_emails: [ops@example.com]", "  alert_emails: [{v}]", "stack.alert_emails.0"),
    ("      turns: 4", "      turns: 4\n    overrides:\n      model: {v}", "agents.intake.overrides.model"),
    ("      turns: 4", "      turns: 4\n    overrides:\n      instance_type: {v}", "agents.intake.overrides.instance_type"),
    ("      task: qa", "      task: qa\n      evals:\n        pass_threshold: 0.5\n        scores: {{{v}: 0.9}}", "agents.intake.quality.evals.scores"),
    ("agents:", "catalog:\n  open_models:\n    llama-3.1-8b:\n      hf_repo: {v}\nagents:", "catalog.open_models.llama-3.1-8b.hf_repo"),
    ("agents:", "catalog:\n  claude_models:\n    claude-haiku-4-5:\n      name: {v}\nagents:", "catalog.claude_models.claude-haiku-4-5.name"),
    ("agents:", "catalog:\n  gpu_instances:\n    g6.xlarge:\n      alternatives: [{v}]\nagents:", "catalog.gpu_instances.g6.xlarge.alternatives.0"),
    ("agents:", "catalog:\n  gpu_instances:\n    {v}:\n      gpu: L4\nagents:", "catalog.gpu_instances."),
]
CONTROL = ['"x\\ny"', '"x\\ry"', '"x\\0y"', '"x\\ey"', '"x\\ty"', '"x\\Ny"', '"x\\Ly"', '"x\\u202ey"']


@pytest.mark.parametrize("value", CONTROL, ids=["LF", "CR", "NUL", "ESC", "TAB", "NEL", "LS", "RLO"])
@pytest.mark.parametrize("anchor,template,field", RENDERED, ids=[f for _, _, f in RENDERED])
def test_control_characters_never_reach_a_rendered_file(tmp_path, anchor, template, field, value):
    assert anchor in EXAMPLE
    text = EXAMPLE.replace(anchor, template.format(v=value), 1)
    path, out = _invalid(tmp_path, text)
    hit = [ln for ln in out.splitlines() if f"{field}" in ln and "control characters cannot reach a rendered file" in ln]
    assert hit, out
    lineno = int(re.search(re.escape(path) + r":(\d+):", hit[0]).group(1))
    assert value.strip('"').split("\\")[0] in text.splitlines()[lineno - 1] or "{" in text.splitlines()[lineno - 1]


def test_control_characters_in_a_catalog_override_file(tmp_path):
    override = tmp_path / "over.yaml"
    override.write_text('open_models:\n  llama-3.1-8b:\n    hf_repo: "meta-llama/x\\nEVIL=1"\n')
    _, result = _plan(tmp_path, EXAMPLE, "--catalog", str(override))
    assert result.exit_code == 2
    assert f"{override}:3: open_models.llama-3.1-8b.hf_repo: contains U+000A" in result.output


def test_a_description_may_span_lines(tmp_path):
    text = EXAMPLE.replace(
        "    description: Customer intake on a messaging app; escalates anything unclear to a human.",
        "    description: |\n      Customer intake.\n      \tEscalates anything unclear.",
    )
    path = tmp_path / "d.yaml"
    path.write_text(text)
    assert "\n" in load_decision_file(path).agents["intake"].description


# --- invalid UTF-8, raw control bytes, huge values ----------------------------------------------


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    raw = EXAMPLE.encode().replace(b"task: qa", b"task: q\xe9a")
    path, out = _invalid(tmp_path, raw)
    assert f"{path}:{_line(EXAMPLE, 'task: qa')}: not valid YAML: not UTF-8 text" in out


def test_a_raw_control_byte_is_reported_with_its_line(tmp_path):
    text = EXAMPLE.replace("task: qa", "task: q\x07a")
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(EXAMPLE, 'task: qa')}: not valid YAML: character U+0007 is not allowed in YAML" in out


def test_huge_values_are_clipped_in_messages(tmp_path):
    huge = "x" * 1_000_000
    path, out = _invalid(tmp_path, EXAMPLE.replace("name: service-business", f"name: {huge}"))
    assert "(1,000,002 characters)" in out
    assert len(out) < 2_000
    path, out = _invalid(tmp_path, EXAMPLE.replace("  intake:", f"  {'y' * 100_000}:"))
    assert len(out) < 2_000


def test_many_problems_are_counted_not_all_listed(tmp_path):
    agents = "".join(f"  a{i}: {{}}\n" for i in range(200))
    path, out = _invalid(tmp_path, f"version: 1\nstack: {{name: many}}\nagents:\n{agents}")
    assert "800 problems in the decision file" in out
    assert "... and 760 more" in out
    assert len(out.splitlines()) < 50


# --- numbers: the decision file and the catalog --------------------------------------------------


@pytest.mark.parametrize("text,field", [
    ("active_hours_per_day: 14", "agents.intake.volume.active_hours_per_day: 5e-324 is too small"),
    ("peak_factor: 3", "agents.intake.volume.peak_factor:"),
    ("p95_s: 2.0 ", "agents.intake.latency.p95_s:"),
    ("conversations_per_month: 1500", "agents.intake.volume.conversations_per_month:"),
])
def test_subnormal_numbers_are_refused(tmp_path, text, field):
    assert text in EXAMPLE
    key = text.split(":")[0]
    source = EXAMPLE.replace(text, f"{key}: 5e-324", 1)
    path, out = _invalid(tmp_path, source)
    assert f"{path}:{_line(source, key + ': 5e-324')}: {field}" in out


def test_a_five_thousand_digit_integer_names_its_line(tmp_path):
    text = EXAMPLE.replace("turns: 4", "turns: " + "9" * 5000)
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(EXAMPLE, 'turns: 4')}: agents.intake.profile.turns: not valid YAML: an integer of 5,000 digits" in out


def test_a_float_beyond_double_is_not_infinity(tmp_path):
    text = EXAMPLE.replace("peak_factor: 3", "peak_factor: 1e400")
    path, out = _invalid(tmp_path, text)
    assert "agents.intake.volume.peak_factor: Input should be a finite number" in out


def _assumption_cases() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = []
    for field, info in Assumptions.model_fields.items():
        if info.annotation not in (int, float):
            continue
        cases += [(field, -1), (field, 5e-324), (field, 1e308), (field, True)]
        if any(getattr(m, "gt", None) == 0 or (getattr(m, "ge", 0) or 0) > 0 for m in info.metadata):
            cases.append((field, 0))
    return cases


@pytest.mark.parametrize("field,value", _assumption_cases(), ids=lambda v: str(v))
def test_catalog_assumptions_are_bounded(tmp_path, field, value):
    section = yaml.safe_dump({"catalog": {"assumptions": {field: value}}}, sort_keys=False)
    text = EXAMPLE.replace("agents:", section + "agents:", 1)
    path, out = _invalid(tmp_path, text)
    assert f"{path}:{_line(text, field + ':')}: catalog.assumptions.{field}:" in out


@pytest.mark.parametrize("group,entry,field", [
    ("claude_models", "claude-haiku-4-5", "output_tokens_per_s"),
    ("claude_models", "claude-haiku-4-5", "input_usd_per_mtok"),
    ("gpu_instances", "g6.xlarge", "on_demand_usd_per_hour"),
    ("open_models", "llama-3.1-8b", "memory_gb"),
    ("infrastructure", None, "hours_per_month"),
])
@pytest.mark.parametrize("value", [-1, 5e-324, 1e308, math.inf])
def test_catalog_overrides_are_bounded(tmp_path, group, entry, field, value):
    override = {group: {entry: {field: value}} if entry else {field: value}}
    text = EXAMPLE.replace("agents:", yaml.safe_dump({"catalog": override}, sort_keys=False) + "agents:", 1)
    path, out = _invalid(tmp_path, text)
    dotted = ".".join(p for p in ("catalog", group, entry, field) if p)
    assert f"{path}:{_line(text, field + ':')}: {dotted}:" in out


def test_max_tokens_margin_zero_no_longer_plans_max_tokens_zero(tmp_path):
    text = EXAMPLE.replace("agents:", "catalog:\n  assumptions:\n    max_tokens_margin: 0\nagents:", 1)
    path, out = _invalid(tmp_path, text)
    assert "catalog.assumptions.max_tokens_margin: Input should be greater than or equal to 1" in out


# --- alias bombs and nesting ---------------------------------------------------------------------


def test_alias_bomb_is_refused_with_a_line(tmp_path):
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = "version: 1\nstack: {name: bomb}\nagents:\n" + "".join(f"  {ln}\n" for ln in levels)
    path, out = _invalid(tmp_path, text)
    assert re.search(re.escape(path) + r":\d+: agents\.a\d: not valid YAML: the document expands to more than", out)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_refused_not_a_crash(tmp_path, depth):
    path, out = _invalid(tmp_path, "version: 1\nagents: " + "[" * depth + "]" * depth + "\n")
    assert f"{path}:2: not valid YAML: maximum depth" in out


def test_an_alias_inside_itself_is_refused(tmp_path):
    path, out = _invalid(tmp_path, "version: 1\nstack: {name: x}\nagents:\n  a: &anchor\n    b: *anchor\n")
    assert f"{path}:4: agents.a.b: not valid YAML: an alias refers to the collection that contains it" in out


# --- --json is strict JSON on every path ---------------------------------------------------------


def test_json_plan_is_strict_json(tmp_path):
    _, result = _plan(tmp_path, EXAMPLE, "--json")
    assert result.exit_code == 0, result.output
    assert _strict(result.stdout)["stack"] == "service-business"


def test_json_errors_are_strict_json(tmp_path):
    _, result = _plan(tmp_path, EXAMPLE.replace("turns: 4", "turns: .inf"), "--json")
    document = _strict(result.stdout)
    assert result.exit_code == 2
    assert document["exit_code"] == 2
    assert document["error"] == "InvalidInput"


def test_json_usage_errors_are_strict_json(tmp_path):
    _, result = _plan(tmp_path, EXAMPLE, "--json", "--scale", "lots")
    document = _strict(result.stdout)
    assert result.exit_code == 2
    assert document["error"] == "UsageError"
    assert "--scale" in document["message"]


def test_a_non_finite_number_in_the_output_is_an_error_not_infinity():
    from agentdeploy.cli.main import strict_json

    assert _strict(strict_json({"a": 1.5})) == {"a": 1.5}
    with pytest.raises(OperationFailed, match="number JSON cannot carry"):
        strict_json({"usd": math.inf})


def test_an_unexpected_exception_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    import agentdeploy.planner

    def broken(*args, **kwargs):
        raise ZeroDivisionError("float division by zero")

    # where every `deploy plan` output goes through (--json writes text without a whole Plan)
    monkeypatch.setattr(agentdeploy.planner.build, "plan_agent", broken)
    _, result = _plan(tmp_path, EXAMPLE, "--json")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    document = _strict(result.stdout)
    assert document["error"] == "InternalError"
    assert "ZeroDivisionError" in document["message"]
    assert "error: internal error: ZeroDivisionError: float division by zero" in result.stderr
    monkeypatch.setenv("AGENTDEPLOY_DEBUG", "1")
    _, result = _plan(tmp_path, EXAMPLE)
    assert isinstance(result.exception, ZeroDivisionError)  # the traceback, when asked for


def test_load_decision_file_raises_only_invalid_input(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidInput):
        load_decision_file(path)


def test_an_oversized_file_is_refused_before_parsing(tmp_path):
    from agentdeploy.planner.frontdoor import MAX_FILE_BYTES

    path, out = _invalid(tmp_path, EXAMPLE + "#" * MAX_FILE_BYTES + "\n")
    assert f"{path}:1: (top level): {len(EXAMPLE) + MAX_FILE_BYTES + 1:,} bytes; a decision file is at most" in out


@settings(max_examples=60, deadline=None)
@given(prefix=st.integers(0, len(EXAMPLE)), junk=st.binary(min_size=1, max_size=40))
def test_arbitrary_bytes_inside_a_valid_file(tmp_path_factory, prefix, junk):
    raw = EXAMPLE.encode()[:prefix] + junk + EXAMPLE.encode()[prefix:]
    path = tmp_path_factory.mktemp("bytes") / "d.yaml"
    path.write_bytes(raw)
    result = CliRunner().invoke(cli, ["plan", str(path), "--json"])
    assert result.exit_code in (0, 2, 3) and "Traceback" not in result.output, (result.output, result.exception)
    document = _strict(result.stdout)
    if result.exit_code == 2:
        assert document["exit_code"] == 2 and re.search(re.escape(str(path)) + r":\d+", result.stderr), result.stderr
