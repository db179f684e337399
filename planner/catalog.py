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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from agentdeploy.errors import InvalidInput
from agentdeploy.images import EngineImage
from agentdeploy.planner.figures import out_of_window
from agentdeploy.planner.problems import clean_loc, describe
from agentdeploy.planner.textcheck import control_characters, dotted
from agentdeploy.planner.yamlsource import YamlSource, YamlSyntaxError, load_yaml_source, read_yaml_file
from agentdeploy.tokens import TOKEN_KINDS, TokenKind, TokenPrices

BUILTIN = Path(__file__).parent / "data" / "catalog.yaml"
TASKS = ("routing", "classification", "extraction", "qa", "reasoning", "generation")


class _Figures(BaseModel):
    """Catalog entries: every number within the window of `figures.py` (no subnormal, no 1e308)."""

    @field_validator("*")
    @classmethod
    def _in_window(cls, v: Any) -> Any:
        problem = out_of_window(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_figures(cls, v: Any, info: ValidationInfo) -> Any:
        """Lax validation reads `true` as 1: no price, speed or limit is a yes/no."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(v, bool) and field is not None and field.annotation is not bool:
            raise ValueError("true/false is not valid here")
        return v


class Sourced(_Figures):
    """An entry whose figures carry a source and an as-of date."""

    # .inf / .nan are valid YAML, and no price, speed or limit means anything with them
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source: str = Field(min_length=3, description="Where the figures come from (OFFICIAL / 3P / EST + where).")
    as_of: date
    #: Per-field sources where a figure comes from elsewhere than `source`: field -> "text (date)".
    field_sources: dict[str, str] = Field(default_factory=dict)
    notes: str = ""


@lru_cache(maxsize=256)
def _token_rates(input_mtok: float, output_mtok: float, write_5m: float, write_1h: float, read: float) -> Mapping[TokenKind, float]:
    base = input_mtok / 1e6
    return MappingProxyType({"input": base, "output": output_mtok / 1e6, "cache_write_5m": base * write_5m, "cache_write_1h": base * write_1h,
            "cache_read": base * read})


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
    #: What each 1,000 prompt tokens add to the time to first token (prefill on Anthropic's side).
    ttft_s_per_1k_input_tokens: float = Field(0.0, ge=0)
    output_tokens_per_s: float = Field(gt=0)
    quality_tier: int = Field(ge=1, le=5)
    #: Whether the planner may choose it; newer or unverified models can be enabled by override.
    selectable: bool = True

    def usd_per_token(self, kind: TokenKind) -> float:
        return self.token_rates[kind]

    @property
    def token_rates(self) -> Mapping[TokenKind, float]:
        """USD per token of each kind (the planner reads these ~350,000 times for 1,000 agents:
        worked out once per distinct set of prices, never stale after a `model_copy`)."""
        return _token_rates(self.input_usd_per_mtok, self.output_usd_per_mtok, self.cache_write_5m_multiplier,
                            self.cache_write_1h_multiplier, self.cache_read_multiplier)

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
    task_tiers: dict[str, Annotated[int, Field(ge=1, le=5)]]

    @model_validator(mode="after")
    def _tasks_known(self) -> OpenModel:
        bad = sorted(set(self.task_tiers) - set(TASKS))
        if bad:
            raise ValueError(f"unknown task kinds {bad}; known: {list(TASKS)}")
        return self


class InstancePerf(_Figures):
    """How one model size class runs on one instance type (vLLM, single replica)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    single_stream_tok_s: float = Field(gt=0)
    #: Aggregate output tokens/s at the knee concurrency.
    aggregate_tok_s: float = Field(gt=0)
    #: Concurrency where throughput saturates and tail latency starts rising.
    knee_concurrency: int = Field(gt=0)
    ttft_p95_s_at_knee: float = Field(gt=0)
    #: Prompt tokens a replica prefills per second; None: estimated from the GPU's FLOPs
    #: (see `GpuInstance.bf16_tflops` and `Assumptions.prefill_mfu`).
    prefill_tok_s: float | None = Field(None, gt=0)
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
    #: Dense BF16 tensor TFLOPS of one GPU (datasheet), for the FLOPs-based prefill estimate.
    bf16_tflops: float = Field(gt=0)
    perf: dict[str, InstancePerf] = Field(default_factory=dict)
    #: Other sizes of the same GPU (informational; the fleet's types come from planner/families.py).
    alternatives: list[str] = Field(default_factory=list)


class Assumptions(Sourced):
    """Planner constants that are estimates rather than published figures."""

    #: max_tokens = p99 output x this margin: below 1 it truncates the p99 answer (0 plans max_tokens 0).
    max_tokens_margin: float = Field(1.25, ge=1, le=10)
    #: Spot interruptions per instance per month (AWS Spot Instance Advisor frequency band).
    spot_interruptions_per_month: float = Field(0.1, ge=0, le=720)
    #: Requests the Batch API runs together before any response has begun (all of them write).
    batch_parallel_writes: float = Field(10.0, ge=0, le=100_000)
    default_turn_gap_s: float = Field(30.0, ge=0.1, le=30 * 86400)
    #: Coefficient of variation of the turn gap (lognormal) where the profile gives none.
    default_turn_gap_cv: float = Field(1.0, ge=0, le=10)
    #: Engineering time to run one self-hosted fleet, USD per fleet-month.
    ops_overhead_usd_per_fleet_month: float = Field(500.0, ge=0)
    #: Share of a GPU's peak FLOPs a prefill reaches (model FLOPs utilisation).
    prefill_mfu: float = Field(0.4, gt=0, le=1)
    #: Gigabytes of weights a booting replica pulls through the NAT: bytes per parameter.
    weight_bytes_per_param: float = Field(2.0, ge=0.1, le=8)
    days_per_month: float = Field(30.4, ge=28, le=31)
    #: GPU replicas run at most this share of their knee concurrency at peak.
    gpu_target_utilisation: float = Field(0.7, ge=0.05, le=1)
    idle_minutes_default: int = Field(15, ge=1, le=7 * 24 * 60)


class Infrastructure(Sourced):
    """What the stack itself costs a month, whatever the traffic (us-east-1 list prices)."""

    hours_per_month: float = Field(730.0, ge=672, le=744)
    nat_gateway_usd_per_hour: float = Field(ge=0)
    nat_usd_per_gb: float = Field(ge=0)
    alb_usd_per_hour: float = Field(ge=0)
    #: One load-balancer capacity unit an hour: a small stack's steady use.
    alb_lcu_usd_per_hour: float = Field(ge=0)
    fargate_vcpu_usd_per_hour: float = Field(ge=0)
    fargate_gb_usd_per_hour: float = Field(ge=0)
    #: The gateway's tasks: vCPU and GB each, and how many run.
    gateway_task_vcpu: float = Field(gt=0)
    gateway_task_gb: float = Field(gt=0)
    gateway_tasks: int = Field(ge=1)
    #: The shared budget store the gateway replicas count spend in (one small cache node).
    budget_store_usd_per_hour: float = Field(ge=0)
    cloudwatch_alarm_usd_per_month: float = Field(ge=0)
    cloudwatch_logs_usd_per_gb: float = Field(ge=0)
    #: Gateway logs a month (GB): request lines and metrics.
    gateway_logs_gb_per_month: float = Field(ge=0)


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    version: str
    as_of: date
    claude_models: dict[str, ClaudeModel]
    open_models: dict[str, OpenModel]
    gpu_instances: dict[str, GpuInstance]
    engine_image: EngineImage  # the vLLM engine image GPU nodes run (agentdeploy/images.py)
    assumptions: Assumptions
    infrastructure: Infrastructure
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


def _read_yaml(path: Path) -> tuple[dict[str, Any], YamlSource]:
    """A catalog file's mapping and its node tree (for lines), read with the decision file's YAML rules."""
    try:
        source = read_yaml_file(path)
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read catalog file ({err.strerror})") from None
    except YamlSyntaxError as err:
        where = f"{path}:{err.line}" if err.line else str(path)
        field = f"{err.field}: " if err.field else ""
        raise InvalidInput(f"{where}: {field}catalog file is not valid YAML ({err.problem})") from None
    data = source.data
    if data is None:
        return {}, source
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}:1: a catalog file must be a mapping at the top level", hint="see planner/data/catalog.yaml for its shape")
    return data, source


@lru_cache(maxsize=4)
def _builtin(stamp: tuple[int, int]) -> tuple[dict[str, Any], YamlSource]:
    """The built-in catalog, parsed once per version of the file (merges copy, never mutate it)."""
    return _read_yaml(BUILTIN)


def _control_characters(layer: _Layer) -> list[str]:
    """Override values with control characters: a model id or repo lands in rendered node files."""
    return [
        f"{layer.where(loc)}: {dotted(layer.prefix + loc)}: {problem}; control characters cannot reach a rendered file"
        for loc, problem in control_characters(layer.data)
    ]


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
                f"{layer.where(loc[:2])}: {dotted(layer.prefix + loc[:2])}: not in the built-in catalog, so it is read "
                f"as a new entry, which needs every field; did you mean {guess[0]!r}?"
            ) if guess else None
            if line and line not in guesses:
                guesses.append(line)
    origin = ", ".join(applied) if applied else str(BUILTIN)
    return InvalidInput(
        f"catalog is invalid after applying overrides ({origin})",
        details=guesses + details,
        hint="an override entry needs the same fields as the built-in one, plus `source` and `as_of`"
        if any(e["type"] == "missing" for e in err.errors())
        else "each line says the field's allowed range; planner/data/catalog.yaml has the built-in figures and their sources",
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
    stat = BUILTIN.stat()
    data, builtin_source = _builtin((stat.st_mtime_ns, stat.st_size))
    data = dict(data)  # the cached document is shared: only this copy's top level is written
    layers = [_Layer(BUILTIN, data, (), builtin_source)]
    applied: list[str] = []
    paths = (catalog_home_overrides(region) if include_home else []) + list(override_files or [])
    for path in paths:
        doc, doc_source = _read_yaml(Path(path))
        data = deep_merge(data, doc)
        layers.append(_Layer(Path(path), doc, (), doc_source))
        applied.append(str(path))
    if inline_overrides:
        data = deep_merge(data, inline_overrides)
        inline_path = inline_source.path if inline_source else Path(inline_origin)
        layers.append(_Layer(inline_path, inline_overrides, ("catalog",), inline_source))
        applied.append(f"{inline_source.path} (catalog:)" if inline_source else inline_origin)
    data["applied_overrides"] = applied
    text_problems = [line for layer in layers[1:] for line in _control_characters(layer)]
    if text_problems:
        raise InvalidInput(f"catalog overrides hold control characters ({', '.join(applied)})", details=text_problems[:40])
    try:
        return Catalog.model_validate(data)
    except ValidationError as err:
        raise _invalid(err, layers, applied) from None
