"""The catalog: prices, speeds and limits the planner reasons with, each with its source.

The built-in catalog is versioned data (planner/data/catalog.yaml). Users override any entry:
files passed with `--catalog`, files in $AGENTDEPLOY_HOME/catalog.d/*.yaml (where
`deploy catalog refresh-spot` writes current spot prices), and the decision file's
`catalog:` section, applied in that order. An override is a partial document of the same
shape, deep-merged; every overridden entry must say where its figures come from.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentdeploy.errors import InvalidInput
from agentdeploy.planner.problems import clean_loc, describe
from agentdeploy.planner.yamlsource import YamlSource, YamlSyntaxError, load_yaml_source, safe_load
from agentdeploy.tokens import TOKEN_KINDS, TokenKind, TokenPrices

BUILTIN = Path(__file__).parent / "data" / "catalog.yaml"
TASKS = ("routing", "classification", "extraction", "qa", "reasoning", "generation")


class Sourced(BaseModel):
    """An entry whose figures carry a source and an as-of date."""

    # .inf / .nan are valid YAML, and no price, speed or limit means anything with them
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: str = Field(min_length=3, description="Where the figures come from (OFFICIAL / 3P / EST + where).")
    as_of: date
    #: Per-field sources where a figure comes from elsewhere than `source`: field -> "text (date)".
    field_sources: dict[str, str] = Field(default_factory=dict)
    notes: str = ""


class ClaudeModel(Sourced):
    name: str
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    cache_write_5m_multiplier: float = Field(1.25, ge=0)
    cache_write_1h_multiplier: float = Field(2.0, ge=0)
    cache_read_multiplier: float = Field(0.1, ge=0)
    #: Share taken off input and output by the Batch API (0.5 = half price).
    batch_discount: float = Field(0.5, ge=0, le=1)
    min_cacheable_tokens: int = Field(ge=0)
    context_tokens: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    ttft_p50_s: float = Field(gt=0)
    ttft_p95_s: float = Field(gt=0)
    output_tokens_per_s: float = Field(gt=0)
    quality_tier: int = Field(ge=1, le=5)
    #: Whether the planner may choose it; newer or unverified models can be enabled by override.
    selectable: bool = True

    def usd_per_token(self, kind: TokenKind) -> float:
        base = self.input_usd_per_mtok / 1e6
        rates: dict[TokenKind, float] = {
            "input": base,
            "output": self.output_usd_per_mtok / 1e6,
            "cache_write_5m": base * self.cache_write_5m_multiplier,
            "cache_write_1h": base * self.cache_write_1h_multiplier,
            "cache_read": base * self.cache_read_multiplier,
        }
        return rates[kind]

    def prices(self) -> TokenPrices:
        """The five per-token prices, the shape the gateway's meter bills with."""
        return TokenPrices(**{kind: self.usd_per_token(kind) for kind in TOKEN_KINDS})


class OpenModel(Sourced):
    name: str
    hf_repo: str
    params_b: float = Field(gt=0)
    #: Size class used to look up throughput on an instance: "3b", "8b", "32b", "70b".
    size_class: str
    #: GPU memory the weights and a working KV cache need (GB).
    memory_gb: float = Field(gt=0)
    context_tokens: int = Field(gt=0)
    #: Quality tier per task kind it is fit for; tasks absent here are not served by it.
    task_tiers: dict[str, int]

    @model_validator(mode="after")
    def _tasks_known(self) -> OpenModel:
        bad = sorted(set(self.task_tiers) - set(TASKS))
        if bad:
            raise ValueError(f"unknown task kinds {bad}; known: {list(TASKS)}")
        return self


class InstancePerf(BaseModel):
    """How one model size class runs on one instance type (vLLM, single replica)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    single_stream_tok_s: float = Field(gt=0)
    #: Aggregate output tokens/s at the knee concurrency.
    aggregate_tok_s: float = Field(gt=0)
    #: Concurrency where throughput saturates and tail latency starts rising.
    knee_concurrency: int = Field(gt=0)
    ttft_p95_s_at_knee: float = Field(gt=0)
    #: Where the figures come from; "EST ..." marks an estimate and says how it was made.
    source: str = Field(min_length=3)
    #: When the source was published, or when the estimate was made.
    as_of: date


class GpuInstance(Sourced):
    gpu: str
    gpu_count: int = Field(gt=0)
    gpu_memory_gb: float = Field(gt=0)
    on_demand_usd_per_hour: float = Field(gt=0)
    spot_usd_per_hour: float = Field(gt=0)
    #: Seconds from launch to serving: boot, image, weights, engine start (EST).
    cold_start_s: float = Field(gt=0)
    perf: dict[str, InstancePerf] = Field(default_factory=dict)
    #: Alternative instance types of the same GPU class for mixed-instances overrides.
    alternatives: list[str] = Field(default_factory=list)


class Assumptions(Sourced):
    """Planner constants that are estimates rather than published figures."""

    max_tokens_margin: float = 1.25
    spot_interruption_fallback_share: float = 0.01
    cold_start_fallback_share: float = 0.02
    batch_cache_hit_rate: float = 0.8
    default_turn_gap_s: float = 30.0
    days_per_month: float = 30.4
    #: GPU replicas run at most this share of their knee concurrency at peak.
    gpu_target_utilisation: float = 0.7
    idle_minutes_default: int = 15


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: str
    as_of: date
    claude_models: dict[str, ClaudeModel]
    open_models: dict[str, OpenModel]
    gpu_instances: dict[str, GpuInstance]
    assumptions: Assumptions
    #: Where each override came from, in the order applied.
    applied_overrides: list[str] = Field(default_factory=list)

    def claude(self, model_id: str) -> ClaudeModel:
        try:
            return self.claude_models[model_id]
        except KeyError:
            raise InvalidInput(
                f"model {model_id!r} is not in the catalog",
                hint=f"known Claude models: {', '.join(sorted(self.claude_models))}",
            ) from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def catalog_home_overrides(region: str | None = None) -> list[Path]:
    """Override files under $AGENTDEPLOY_HOME/catalog.d (default ~/.agentdeploy/catalog.d).

    Spot prices are regional: `spot-<region>.yaml` applies only to a plan for that region (all of
    them when no region is given, e.g. `deploy catalog show`).
    """
    home = Path(os.environ.get("AGENTDEPLOY_HOME", Path.home() / ".agentdeploy"))
    folder = home / "catalog.d"
    if not folder.is_dir():
        return []
    files = sorted(folder.glob("*.yaml"))
    if region is None:
        return files
    return [f for f in files if not f.name.startswith("spot-") or f.name == f"spot-{region}.yaml"]


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = safe_load(path.read_text())
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read catalog file ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InvalidInput(f"{where}: catalog file is not valid YAML ({getattr(err, 'problem', err)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}:1: a catalog file must be a mapping at the top level", hint="see planner/data/catalog.yaml for its shape")
    return data


@dataclass(frozen=True)
class _Layer:
    """One document merged into the catalog, to find the file and line an error comes from."""

    path: Path
    data: dict[str, Any]
    #: Where the document sits in its file: ("catalog",) for a decision file's section.
    prefix: tuple[str, ...] = ()
    source: YamlSource | None = None

    def depth(self, loc: tuple[Any, ...]) -> int:
        """How many leading parts of `loc` this document sets."""
        node: Any = self.data
        for n, part in enumerate(loc):
            if not isinstance(node, dict) or part not in node:
                return n
            node = node[part]
        return len(loc)

    def where(self, loc: tuple[Any, ...]) -> str:
        source = self.source
        if source is None:
            try:
                source = load_yaml_source(self.path)
            except (OSError, YamlSyntaxError):
                return str(self.path)
        line = source.line_of(self.prefix + tuple(loc))
        return f"{self.path}:{line}" if line else str(self.path)


def _layer_for(loc: tuple[Any, ...], layers: list[_Layer]) -> _Layer:
    """The last-applied document that goes deepest into `loc` (the one whose value the merge kept)."""
    best = layers[0]
    best_depth = best.depth(loc)
    for layer in layers[1:]:
        d = layer.depth(loc)
        if d >= best_depth and d > 0:
            best, best_depth = layer, d
    return best


def _invalid(err: ValidationError, layers: list[_Layer], applied: list[str]) -> InvalidInput:
    details: list[str] = []
    guesses: list[str] = []
    builtin = layers[0].data
    for e in err.errors():
        loc = clean_loc(tuple(e["loc"]))
        layer = _layer_for(loc, layers)
        details.append(describe(e, Catalog, layer.where, shown_prefix=layer.prefix))
        group = str(loc[0]) if loc else ""
        if e["type"] == "missing" and len(loc) == 3 and isinstance(builtin.get(group), dict) and loc[1] not in builtin[group]:
            guess = difflib.get_close_matches(str(loc[1]), list(builtin[group]), n=1)
            line = (
                f"{layer.where(loc[:2])}: {'.'.join(map(str, layer.prefix + loc[:2]))}: not in the built-in catalog, so it is read "
                f"as a new entry, which needs every field; did you mean {guess[0]!r}?"
            ) if guess else None
            if line and line not in guesses:
                guesses.append(line)
    origin = ", ".join(applied) if applied else str(BUILTIN)
    return InvalidInput(
        f"catalog is invalid after applying overrides ({origin})",
        details=guesses + details,
        hint="an override entry needs the same fields as the built-in one, plus `source` and `as_of`",
    )


def load_catalog(
    override_files: list[Path] | None = None,
    inline_overrides: dict[str, Any] | None = None,
    inline_origin: str = "decision file",
    include_home: bool = True,
    region: str | None = None,
    inline_source: YamlSource | None = None,
) -> Catalog:
    """The built-in catalog with every override merged over it, in order.

    `inline_source` is the decision file the `catalog:` section came from, so its errors name
    that file's lines (callers without it still get the field and the origin's name).
    """
    data = _read_yaml(BUILTIN)
    layers = [_Layer(BUILTIN, data)]
    applied: list[str] = []
    paths = (catalog_home_overrides(region) if include_home else []) + list(override_files or [])
    for path in paths:
        doc = _read_yaml(Path(path))
        data = deep_merge(data, doc)
        layers.append(_Layer(Path(path), doc))
        applied.append(str(path))
    if inline_overrides:
        data = deep_merge(data, inline_overrides)
        inline_path = inline_source.path if inline_source else Path(inline_origin)
        layers.append(_Layer(inline_path, inline_overrides, ("catalog",), inline_source))
        applied.append(f"{inline_source.path} (catalog:)" if inline_source else inline_origin)
    data["applied_overrides"] = applied
    try:
        return Catalog.model_validate(data)
    except ValidationError as err:
        raise _invalid(err, layers, applied) from None
