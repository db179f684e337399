"""The decision file: the three answers per agent, plus its token profile.

One YAML file per stack. Validation is strict (unknown keys are errors, with a "did you mean"),
and every error names the file, the line and the field, says what is wrong and what would be
valid. The loader never raises anything but `InvalidInput` for a user mistake.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agentdeploy.planner.catalog import TASKS
from agentdeploy.planner.figures import out_of_window
from agentdeploy.planner.frontdoor import read_decision_source, refuse, text_problems
from agentdeploy.planner.frontdoor import where as file_line
from agentdeploy.planner.problems import describe
from agentdeploy.planner.textcheck import clip
from agentdeploy.planner.yamlsource import YamlSource

Task = Literal["routing", "classification", "extraction", "qa", "reasoning", "generation"]
WrongCost = Literal["low", "medium", "high", "critical"]
Audience = Literal["interactive", "backend", "batch"]
Policy = Literal["block", "degrade", "alert"]
#: What a latency ceiling bounds: the first token (a person reading), the whole answer (a
#: program waiting), or nothing (batch: nobody waits).
Measure = Literal["first_token", "full_response", "none"]
#: Matched with `fullmatch` (a `$` alone also matches before a final newline); the `^...$` form
#: is kept for the JSON Schema's `pattern`.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
#: An AWS region name: area prefix, then one to three words, then a number (us-east-1,
#: us-gov-west-1, us-isob-east-1, ap-southeast-7, cn-north-1, eusc-de-east-1). A pattern rather
#: than a list, so a region AWS opens next year works; it lands in node env files and file names.
REGION_RE = re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx|cn|eusc)(-[a-z]+){1,3}-[1-9][0-9]?")
#: RFC 5321 caps an address at 254 characters; each address is an SNS subscription resource.
MAX_EMAIL_LENGTH = 254
MAX_ALERT_EMAILS = 100

# Upper bounds keep the planner's arithmetic finite (no overflow in fleet sizing or costs) while
# staying far above any real agent: 10 billion conversations a month is ~3,800 a second.
MAX_CONVERSATIONS = 1e10
MAX_TOKENS_FIELD = 10_000_000
MAX_USD = 1e9
MAX_SECONDS = 30 * 86400.0
MAX_WEIGHT = 1e9


class _Strict(BaseModel):
    # .inf and .nan are valid YAML floats; no field of the decision file means anything with them.
    # strict: YAML already types every value, so `turns: "4"` or `version: true` is a mistake to
    # report, not a string or a bool to convert.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    @field_validator("*")
    @classmethod
    def _in_window(cls, v: Any, info: ValidationInfo) -> Any:
        """No subnormal or astronomically large number, whatever the field's own bounds."""
        problem = None if info.field_name == "catalog" else out_of_window(v)  # the catalog checks its own, by field
        if problem:
            raise ValueError(problem)
        return v


class Latency(_Strict):
    """Question 1: is there a hard ceiling, and who waits for the answer?"""

    p95_s: float | None = Field(
        None, gt=0, le=MAX_SECONDS, description="p95 latency ceiling in seconds; omit for none (batch-tolerant)."
    )
    audience: Audience | None = Field(
        None, description="interactive: a person reads it live; backend: a program waits; batch: nobody waits."
    )
    measure: Literal["first_token", "full_response"] | None = Field(
        None, description="What the ceiling bounds. Default: first_token for interactive, full_response for backend."
    )

    @property
    def resolved_audience(self) -> Audience:
        if self.audience is not None:
            return self.audience
        if self.p95_s is None:
            return "batch"
        return "interactive" if self.p95_s <= 30 else "backend"

    @property
    def resolved_measure(self) -> Measure:
        audience = self.resolved_audience
        if audience == "batch":
            return "none"
        if self.measure is not None:
            return self.measure
        return "first_token" if audience == "interactive" else "full_response"

    @model_validator(mode="after")
    def _consistent(self) -> Latency:
        if self.audience in ("interactive", "backend") and self.p95_s is None:
            raise ValueError(f"audience {self.audience!r} needs a p95_s ceiling (or use audience: batch)")
        if self.audience == "batch" and self.p95_s is not None and self.p95_s < 3600:
            raise ValueError("audience 'batch' means hours: p95_s must be at least 3600 or omitted")
        return self


class Evals(_Strict):
    """Measured eval scores per candidate model: they override the tier rules."""

    scores: dict[str, float] = Field(description="model id -> score in [0, 1] on the agent's own eval set")
    pass_threshold: float = Field(ge=0, le=1)

    @field_validator("scores")
    @classmethod
    def _range(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, s in v.items() if not 0 <= s <= 1]
        if bad:
            raise ValueError(f"scores must be between 0 and 1 (check {', '.join(bad)})")
        return v


class Quality(_Strict):
    """Question 2: what does a wrong answer cost, on what kind of task?"""

    wrong_answer_cost: WrongCost | float = Field(
        description="low | medium | high | critical, or the cost of one wrong answer in USD."
    )
    task: Task
    evals: Evals | None = None

    @property
    def cost_level(self) -> WrongCost:
        value = self.wrong_answer_cost
        if isinstance(value, str):
            return value
        if value < 1:
            return "low"
        if value < 20:
            return "medium"
        if value < 200:
            return "high"
        return "critical"

    @field_validator("wrong_answer_cost")
    @classmethod
    def _non_negative(cls, v: Any) -> Any:
        if isinstance(v, float) and not 0 <= v <= MAX_USD:
            raise ValueError(f"a cost in USD must be between 0 and {MAX_USD:,.0f}")
        return v


class Volume(_Strict):
    """Question 3: volume now and at twelve months, and the shape of the day."""

    conversations_per_month: float = Field(gt=0, le=MAX_CONVERSATIONS)
    conversations_per_month_12m: float | None = Field(None, gt=0, le=MAX_CONVERSATIONS, description="Default: same as now.")
    #: The busiest hour cannot carry more than the whole day, so 24 is the most it can be.
    peak_factor: float = Field(3.0, ge=1, le=24, description="Busiest hour's rate / the average active hour's rate.")
    active_hours_per_day: float = Field(24.0, gt=0, le=24, description="Hours a day traffic arrives.")
    hourly_shape: list[float] | None = Field(
        None, description="24 relative weights (UTC hours); when given, sets active hours and peak factor."
    )
    ramp: Literal["linear", "geometric", "step"] = Field(
        "linear",
        description="How volume grows from launch (month 1) to month 12: linear, geometric (same % a month) or step (month 12's volume from month 2).",
    )

    @field_validator("hourly_shape")
    @classmethod
    def _shape(cls, v: list[float] | None) -> list[float] | None:
        if v is None:
            return v
        if len(v) != 24 or any(not 0 <= w <= MAX_WEIGHT for w in v) or sum(v) <= 0:
            raise ValueError(f"hourly_shape needs 24 weights between 0 and {MAX_WEIGHT:g}, not all zero")
        return v

    @property
    def month_12(self) -> float:
        return self.conversations_per_month_12m or self.conversations_per_month

    @property
    def resolved_active_hours(self) -> float:
        if self.hourly_shape:
            return float(sum(1 for w in self.hourly_shape if w > 0))
        return self.active_hours_per_day

    @property
    def resolved_peak_factor(self) -> float:
        if self.hourly_shape:
            active = [w for w in self.hourly_shape if w > 0]
            return max(active) / (sum(active) / len(active))
        return self.peak_factor


class Profile(_Strict):
    """The token profile of one conversation."""

    turns: int = Field(1, ge=1, le=200)
    input_tokens_per_turn: int = Field(ge=1, le=MAX_TOKENS_FIELD, description="New input per turn (user message, retrieval), without the static prefix.")
    output_tokens_per_turn: int = Field(ge=1, le=MAX_TOKENS_FIELD)
    static_prefix_tokens: int = Field(0, ge=0, le=MAX_TOKENS_FIELD, description="System prompt + tool definitions + fixed knowledge, identical on every call.")
    output_tokens_p99: int | None = Field(None, ge=1, le=MAX_TOKENS_FIELD, description="p99 output per turn; sets max_tokens. Default 2x the mean.")
    turn_gap_s: float | None = Field(None, gt=0, le=MAX_SECONDS, description="Seconds between turns of one conversation.")
    turn_gap_cv: float | None = Field(
        None, ge=0, le=10, description="Spread of the turn gap: its coefficient of variation (0 = exact; default in the catalog)."
    )
    resend_history: bool = Field(True, description="Each turn re-sends the conversation so far (chat APIs are stateless).")

    @property
    def p99_output(self) -> int:
        return self.output_tokens_p99 or 2 * self.output_tokens_per_turn

    @model_validator(mode="after")
    def _p99(self) -> Profile:
        if self.output_tokens_p99 is not None and self.output_tokens_p99 < self.output_tokens_per_turn:
            raise ValueError("output_tokens_p99 must be at least output_tokens_per_turn")
        return self


class Overrides(_Strict):
    """Pins that take a decision out of the planner's hands (the plan still explains the cost)."""

    model: str | None = None
    route: Literal["api", "batch", "gpu"] | None = None
    cache: Literal["auto", "off", "5m", "1h"] = "auto"
    instance_type: str | None = None

    @field_validator("cache", mode="before")
    @classmethod
    def _unquoted_off(cls, v: Any) -> Any:
        """YAML 1.1 reads an unquoted `off` as false: take it as the word the README shows."""
        return "off" if v is False else v


class AgentDecision(_Strict):
    description: str = ""
    latency: Latency
    quality: Quality
    volume: Volume
    profile: Profile
    budget_usd_per_month: float | None = Field(None, gt=0, le=MAX_USD)
    budget_policy: Policy | None = None
    overrides: Overrides = Overrides()


class StackSettings(_Strict):
    name: str
    region: str = "us-east-1"
    alert_emails: list[str] = Field(default_factory=list)
    budget_headroom: float = Field(1.25, ge=1, le=10)
    budget_thresholds_pct: list[int] = Field(default_factory=lambda: [50, 80, 100])
    budget_policy: Policy = "alert"
    #: Engineering time to run one self-hosted fleet, USD/month, added to the GPU side of the
    #: comparison. None: the catalog's sourced default (assumptions.ops_overhead_usd_per_fleet_month).
    ops_overhead_usd_per_fleet_month: float | None = Field(None, ge=0, le=MAX_USD)
    #: Run the gateway (true), go without it (false: only for stacks with no GPU agent), or let
    #: the planner decide from its fixed cost and what it would enforce (omitted).
    gateway: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_RE.fullmatch(v):
            raise ValueError("stack name: lower-case letters, digits and '-', starting with a letter, at most 40")
        return v

    @field_validator("alert_emails")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        if len(v) > MAX_ALERT_EMAILS:
            raise ValueError(f"{len(v):,} addresses; at most {MAX_ALERT_EMAILS} (use a mailing list)")
        bad = [e for e in v if len(e) > MAX_EMAIL_LENGTH or not EMAIL_RE.fullmatch(e)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(clip(e, 60) for e in bad[:3])}")
        return v

    @field_validator("region")
    @classmethod
    def _region(cls, v: str) -> str:
        if not REGION_RE.fullmatch(v):
            raise ValueError("not an AWS region name (for example us-east-1, eu-west-2 or ap-southeast-2)")
        return v

    @field_validator("budget_thresholds_pct")
    @classmethod
    def _thresholds(cls, v: list[int]) -> list[int]:
        if not v or len(v) > 10 or any(t <= 0 or t > 1000 for t in v):
            raise ValueError("1 to 10 thresholds, each a percentage between 1 and 1000 (AWS Budgets allows 10)")
        return sorted(set(v))


class Spec(_Strict):
    version: Literal[1] = 1
    stack: StackSettings
    catalog: dict[str, Any] | None = Field(None, description="Catalog overrides (same shape as the catalog).")
    agents: dict[str, AgentDecision] = Field(min_length=1, json_schema_extra={"propertyNames": {"pattern": NAME_RE.pattern}})

    _source: YamlSource | None = PrivateAttr(default=None)

    @field_validator("version", mode="before")
    @classmethod
    def _not_bool(cls, v: Any) -> Any:
        if type(v) is not int:  # `true == 1.0 == 1` in Python, so the literal alone would take them
            raise ValueError("the file format version is the number 1")
        return v

    @field_validator("agents")
    @classmethod
    def _agent_names(cls, v: dict[str, AgentDecision]) -> dict[str, AgentDecision]:
        bad = [n for n in v if not NAME_RE.fullmatch(n)]
        if bad:
            raise ValueError(
                "agent names must be lower-case letters, digits and '-', starting with a letter, at most 40"
                f" (got {', '.join(clip(n, 60) for n in bad[:3])})"
            )
        return v

    @property
    def source(self) -> YamlSource | None:
        """Where the file's keys are (for errors found later, such as in the `catalog:` section)."""
        return self._source

    @property
    def source_path(self) -> Path | None:
        return self._source.path if self._source else None

    def where(self, *loc: Any) -> str:
        """`file:line` for a location in the decision file (for errors found after validation)."""
        if self._source is None:
            return "<decision file>"
        return file_line(self._source, tuple(loc))


# --- loading and error reporting -------------------------------------------------------------


def load_decision_file(path: str | Path, text: str | None = None) -> Spec:
    """Read and validate a decision file; every user mistake becomes one `InvalidInput`."""
    path = Path(path)
    source = read_decision_source(path, text)
    details = text_problems(source)
    try:
        spec = Spec.model_validate(source.data)
    except ValidationError as err:
        details += [describe(e, Spec, lambda loc: file_line(source, loc)) for e in err.errors()]
    if details:
        raise refuse(path, details) from None
    spec._source = source.without_tree()
    return spec


def decision_file_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "agentdeploy decision file"
    return schema


__all__ = ["TASKS", "AgentDecision", "Spec", "decision_file_schema", "load_decision_file"]
