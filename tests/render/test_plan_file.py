"""The plan file: `deploy plan --write` and `deploy render` write it; it is refused once stale."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from agentdeploy.cli.main import cli
from agentdeploy.errors import InvalidInput
from agentdeploy.planner import build_plan, load_decision_file, spec_catalog
from agentdeploy.planner.planfile import (
    StalePlan,
    catalog_fingerprint,
    check_fresh,
    read_plan_file,
    reviewed_plan,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PRICE_CHANGE = yaml.safe_dump({"claude_models": {"claude-haiku-4-5": {"output_usd_per_mtok": 4.5}}})


@pytest.fixture
def decision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    path = tmp_path / "shop.yaml"
    shutil.copy(EXAMPLES / "service-business.yaml", path)
    return path


def plan_cmd(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["plan", *args])
    return result.exit_code, result.stdout, result.stderr


def test_write_puts_the_plan_file_beside_the_decision_file(decision: Path) -> None:
    code, out, err = plan_cmd(str(decision), "--write", "--json")
    assert code == 0, err
    plan_file = decision.with_name("shop.plan.json")
    assert f"plan file written to {plan_file}" in err and json.loads(out)["agents"]  # stdout stays one document
    doc = json.loads(plan_file.read_text())
    source = doc.pop("source")
    assert doc == json.loads(out)  # the plan's own keys are `deploy plan --json`'s
    assert source["decision_file"] == "shop.yaml"
    assert source["decision_sha256"] == hashlib.sha256(decision.read_bytes()).hexdigest()
    catalog = spec_catalog(load_decision_file(decision))
    assert source["catalog_sha256"] == catalog_fingerprint(catalog)[0]
    assert source["catalog_version"] == catalog.version
    assert source["agentdeploy_version"]
    assert source["written_at"]


def test_write_to_a_path_of_ones_choosing(decision: Path, tmp_path: Path) -> None:
    target = tmp_path / "plans" / "shop.json"
    code, out, err = plan_cmd(str(decision), "--write", str(target))
    assert code == 0, err
    assert f"plan file written to {target}" in out
    planned = read_plan_file(target)
    assert planned.source.decision_file == "../shop.yaml"
    check_fresh(planned, target, decision)  # fresh: no error


def test_a_what_if_is_not_written(decision: Path) -> None:
    code, _, err = plan_cmd(str(decision), "--scale", "3", "--write")
    assert code == 2
    assert "--scale what-if is not a plan to deploy" in err
    assert not decision.with_name("shop.plan.json").exists()


def test_render_writes_the_plan_file_into_out(decision: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["render", str(decision), "--out", str(out)])
    assert result.exit_code == 0, result.output
    planned = read_plan_file(out / "plan.json")
    assert planned.source.decision_file == "../shop.yaml"
    check_fresh(planned, out / "plan.json", decision)


def _written(decision: Path, catalog_files: tuple[str, ...] = ()) -> Path:
    args = [a for f in catalog_files for a in ("--catalog", f)]
    code, _, err = plan_cmd(str(decision), "--write", *args)
    assert code == 0, err
    return decision.with_name("shop.plan.json")


def test_a_fresh_plan_file_is_applied_without_planning_again(decision: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _written(decision)
    from agentdeploy.planner import planfile

    monkeypatch.setattr(planfile, "build_plan", lambda *a, **k: pytest.fail("planned again"))
    plan, catalog = reviewed_plan(decision)
    assert [a.name for a in plan.agents] == ["intake", "sales-brief", "marketing-drafts"]
    assert catalog_fingerprint(catalog)[0] == read_plan_file(decision.with_name("shop.plan.json")).source.catalog_sha256


def test_without_a_plan_file_the_decision_file_is_planned(decision: Path) -> None:
    plan, _ = reviewed_plan(decision)
    assert plan == build_plan(load_decision_file(decision))


def test_an_edited_decision_file_is_named(decision: Path) -> None:
    _written(decision)
    decision.write_text(decision.read_text() + "\n# a reviewer's note\n")
    with pytest.raises(StalePlan) as err:
        reviewed_plan(decision)
    assert err.value.exit_code == 2
    assert err.value.message == (f"decision file {decision} changed since the plan was written: "
                                 f"run `deploy plan {decision} --write` and review the diff")


def test_a_changed_catalog_section_is_named(decision: Path) -> None:
    """A price file dropped into catalog.d after review: the decision file is untouched."""
    _written(decision)
    catalog_d = decision.parent / "home" / "catalog.d"
    catalog_d.mkdir(parents=True)
    (catalog_d / "prices.yaml").write_text(PRICE_CHANGE)
    with pytest.raises(StalePlan) as err:
        reviewed_plan(decision)
    assert err.value.message.startswith("catalog changed since the plan was written (spot price refresh?")
    assert "changed: claude_models" in err.value.details


def test_catalog_files_the_plan_was_priced_with_are_applied_again(decision: Path, tmp_path: Path) -> None:
    override = tmp_path / "prices.yaml"
    override.write_text(PRICE_CHANGE)
    plan_file = _written(decision, (str(override),))
    reviewed_plan(decision)  # fresh: the same override applied again
    override.unlink()
    with pytest.raises(StalePlan, match="prices.yaml the plan was priced with is missing"):
        reviewed_plan(decision)
    assert read_plan_file(plan_file).source.catalog_files == ["prices.yaml"]


def test_a_plan_file_of_another_decision_file_is_refused(decision: Path, tmp_path: Path) -> None:
    plan_file = _written(decision)
    other = tmp_path / "other.yaml"
    shutil.copy(decision, other)
    with pytest.raises(StalePlan, match="was written for decision file .*shop.yaml, not .*other.yaml"):
        reviewed_plan(other, plan_file)


def test_a_bare_plan_json_is_not_a_plan_file(decision: Path, tmp_path: Path) -> None:
    code, out, _ = plan_cmd(str(decision), "--json")
    bare = decision.with_name("shop.plan.json")
    bare.write_text(out)
    with pytest.raises(InvalidInput, match="without its `source` block"):
        reviewed_plan(decision)
