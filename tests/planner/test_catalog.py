"""The catalog: sourced figures, published prices, and overrides from every documented place."""

from __future__ import annotations

import pytest
import yaml

from agentdeploy.errors import InvalidInput
from agentdeploy.planner.catalog import load_catalog
from agentdeploy.tokens import TOKEN_KINDS


def test_every_entry_carries_source_and_date():
    cat = load_catalog(include_home=False)
    for group in (cat.claude_models, cat.open_models, cat.gpu_instances):
        for key, entry in group.items():
            assert len(entry.source) > 10, key
            assert entry.as_of.year >= 2025, key
    for name, instance in cat.gpu_instances.items():  # speeds too: each with its own source and date
        for size, perf in instance.perf.items():
            assert len(perf.source) > 10 and perf.as_of.year >= 2025, (name, size)
    assert cat.assumptions.source


def test_published_claude_prices():
    # catalog-facts 1.2: Haiku 4.5 1/5, Sonnet 4.6 3/15, Opus 4.7 5/25; writes 1.25x/2x, reads 0.1x
    cat = load_catalog(include_home=False)
    haiku, sonnet, opus = (cat.claude_models[m] for m in ("claude-haiku-4-5", "claude-sonnet-4-6", "claude-opus-4-7"))
    assert (haiku.input_usd_per_mtok, haiku.output_usd_per_mtok) == (1, 5)
    assert (sonnet.input_usd_per_mtok, sonnet.output_usd_per_mtok) == (3, 15)
    assert (opus.input_usd_per_mtok, opus.output_usd_per_mtok) == (5, 25)
    assert sonnet.usd_per_token("cache_write_5m") * 1e6 == pytest.approx(3.75)
    assert sonnet.usd_per_token("cache_write_1h") * 1e6 == pytest.approx(6)
    assert sonnet.usd_per_token("cache_read") * 1e6 == pytest.approx(0.3)
    assert haiku.min_cacheable_tokens == 4096
    assert sonnet.min_cacheable_tokens == 2048
    assert cat.gpu_instances["g5.xlarge"].on_demand_usd_per_hour == 1.006
    assert cat.gpu_instances["p5.4xlarge"].on_demand_usd_per_hour == 6.88


def test_a_models_prices_are_its_five_per_token_rates():
    sonnet = load_catalog(include_home=False).claude_models["claude-sonnet-4-6"]
    prices = sonnet.prices()
    for kind in TOKEN_KINDS:
        assert prices.of(kind) == sonnet.usd_per_token(kind), kind
    assert prices.input * 1e6 == pytest.approx(3)
    assert prices.output * 1e6 == pytest.approx(15)
    assert prices.worst_input == prices.cache_write_1h


def test_override_file_and_home_folder(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "catalog.d").mkdir(parents=True)
    (home / "catalog.d" / "spot-us-east-1.yaml").write_text(yaml.safe_dump(
        {"gpu_instances": {"g5.xlarge": {"spot_usd_per_hour": 0.31, "source": "describe_spot_price_history", "as_of": "2026-11-20"}}}
    ))
    extra = tmp_path / "mine.yaml"
    extra.write_text(yaml.safe_dump({"claude_models": {"claude-haiku-4-5": {"output_usd_per_mtok": 4.0, "source": "negotiated rate sheet", "as_of": "2026-11-01"}}}))
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(home))
    cat = load_catalog([extra])
    assert cat.gpu_instances["g5.xlarge"].spot_usd_per_hour == 0.31
    assert cat.gpu_instances["g5.xlarge"].on_demand_usd_per_hour == 1.006  # untouched fields stay
    assert cat.claude_models["claude-haiku-4-5"].output_usd_per_mtok == 4.0
    assert cat.claude_models["claude-haiku-4-5"].source == "negotiated rate sheet"
    assert len(cat.applied_overrides) == 2


def test_bad_override_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"claude_models": {"claude-haiku-4-5": {"input_usd_per_mtok": -1}}}))
    with pytest.raises(InvalidInput) as err:
        load_catalog([bad], include_home=False)
    assert f"{bad}:3: claude_models.claude-haiku-4-5.input_usd_per_mtok: Input should be greater than or equal to 0 (got -1)" in "\n".join(err.value.details)


def test_new_model_without_source_is_rejected(tmp_path):
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump({"claude_models": {"claude-x": {"name": "X", "input_usd_per_mtok": 1, "output_usd_per_mtok": 2,
        "min_cacheable_tokens": 1, "context_tokens": 1, "max_output_tokens": 1, "ttft_p50_s": 1, "ttft_p95_s": 1,
        "output_tokens_per_s": 1, "quality_tier": 1}}}))
    with pytest.raises(InvalidInput) as err:
        load_catalog([new], include_home=False)
    joined = "\n".join(err.value.details)
    assert "claude-x.source" in joined
    assert "claude-x.as_of" in joined


def test_spot_overrides_apply_only_to_their_region(tmp_path, monkeypatch):
    folder = tmp_path / "catalog.d"
    folder.mkdir()
    for region, price in (("us-east-1", 0.31), ("eu-west-1", 0.55)):
        (folder / f"spot-{region}.yaml").write_text(yaml.safe_dump(
            {"gpu_instances": {"g5.xlarge": {"spot_usd_per_hour": price, "source": "describe_spot_price_history", "as_of": "2026-11-20"}}}
        ))
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path))
    assert load_catalog(region="us-east-1").gpu_instances["g5.xlarge"].spot_usd_per_hour == 0.31
    assert load_catalog(region="eu-west-1").gpu_instances["g5.xlarge"].spot_usd_per_hour == 0.55
    assert load_catalog(region="ap-south-1").gpu_instances["g5.xlarge"].spot_usd_per_hour == 0.40


def _catalog_error(*files) -> str:
    with pytest.raises(InvalidInput) as err:
        load_catalog(list(files), include_home=False)
    assert err.value.exit_code == 2
    return "\n".join(err.value.details)


def test_override_errors_name_file_line_and_did_you_mean(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "claude_model:\n"  # line 1
        "  claude-haiku-4-5: {output_usd_per_mtok: 4.0}\n"
        "gpu_instances:\n"
        "  g6.xlarge:\n"
        "    spot_usd_per_hr: 0.3\n"  # line 5
        "    source: quote\n"
        "    as_of: 2026-11-01\n"
    )
    text = _catalog_error(path)
    assert f"{path}:1: claude_model: unknown key; did you mean 'claude_models'?" in text
    assert f"{path}:5: gpu_instances.g6.xlarge.spot_usd_per_hr: unknown key; did you mean 'spot_usd_per_hour'?" in text


def test_misspelt_entry_id_is_a_new_entry_with_did_you_mean(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("claude_models:\n  claude-haiku-4.5:\n    output_usd_per_mtok: 4.0\n")
    text = _catalog_error(path)
    assert f"{path}:2: claude_models.claude-haiku-4.5: not in the built-in catalog" in text
    assert "did you mean 'claude-haiku-4-5'?" in text


def test_non_finite_catalog_figure_is_rejected(tmp_path):
    path = tmp_path / "inf.yaml"
    path.write_text("claude_models:\n  claude-haiku-4-5:\n    input_usd_per_mtok: .inf\n    source: sheet\n    as_of: 2026-11-01\n")
    assert f"{path}:3: claude_models.claude-haiku-4-5.input_usd_per_mtok: Input should be a finite number" in _catalog_error(path)


def test_later_override_is_blamed_for_its_own_value(tmp_path):
    good, bad = tmp_path / "a.yaml", tmp_path / "b.yaml"
    good.write_text("claude_models:\n  claude-haiku-4-5:\n    output_usd_per_mtok: 4.0\n")
    bad.write_text("# later file\nclaude_models:\n  claude-haiku-4-5:\n    output_usd_per_mtok: -4.0\n")
    assert f"{bad}:4: claude_models.claude-haiku-4-5.output_usd_per_mtok" in _catalog_error(good, bad)


def test_decision_file_catalog_section_errors_have_lines(write_decision):
    from click.testing import CliRunner

    from agentdeploy.cli.main import cli

    from .conftest import agent_doc, decision_doc

    doc = decision_doc({"a": agent_doc()})
    doc["catalog"] = {"claude_models": {"claude-haiku-4-5": {"ouput_usd_per_mtok": 4}}}
    path = write_decision(doc)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "ouput_usd_per_mtok" in text)
    result = CliRunner().invoke(cli, ["plan", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert (
        f"{path}:{line}: catalog.claude_models.claude-haiku-4-5.ouput_usd_per_mtok: unknown key; did you mean 'output_usd_per_mtok'?"
        in result.output
    )
