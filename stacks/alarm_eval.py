"""CloudWatch alarm evaluation and Auto Scaling policy arithmetic over minute datapoints (pure).

`deploy simulate` and the scale-loop tests run the stack's own `AlarmRule`s and `PolicyRule`s
(stacks/scaling_rules.py) through these functions, so what they prove is about the definitions
`pulumi up` provisions. The rules modelled, from AWS's documentation:

- An alarm looks at its last `evaluation_periods` datapoints and goes to ALARM when at least
  `datapoints_to_alarm` of them breach. Missing datapoints count as breaching ("breaching"), as
  within the threshold ("notBreaching"); with "missing" and "ignore" only present datapoints
  count, and with none present the alarm is INSUFFICIENT_DATA ("missing") or keeps its state
  ("ignore"). (AWS widens the look-back for those two to find enough datapoints; the scale
  loop uses neither, so this simplification never decides anything here.)
- Metric math: evaluated per timestamp; FILL(x, v) is v where x has no datapoint; any other
  use of a missing datapoint gives a missing result (IF picks a branch first).
- "Except for Auto Scaling actions, the actions happen only on state transitions": an
  SNS action fires when the alarm enters the state, an Auto Scaling policy is invoked every
  period the alarm stays in it.
- Step adjustments bound (metric - threshold); the bound on the breach side is inclusive.
- Only simple scaling waits out cooldowns; step and target tracking never do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from agentdeploy.stacks.scaling_rules import ALERT, AlarmRule, PolicyRule, StepRule

State = Literal["OK", "ALARM", "INSUFFICIENT_DATA"]
#: One datapoint per period; None is a period with no datapoint.
Value = float | None
Series = Mapping[str, Sequence[Value]]

#: EC2 Auto Scaling's default cooldown, used by a simple policy that names none.
DEFAULT_COOLDOWN_S = 300


# ---------------------------------------------------------------------- metric math
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(>=|<=|==|!=|[-+*/<>(),]))")
_Node = Callable[[Mapping[str, Value]], Value]


def _tokens(expression: str) -> list[str]:
    out, pos = [], 0
    while pos < len(expression.rstrip()):
        m = _TOKEN.match(expression, pos)
        if m is None:
            raise ValueError(f"cannot read metric math {expression!r} at {expression[pos:]!r}")
        out.append(m.group(m.lastindex or 0))
        pos = m.end()
    return out


class _Parser:
    """Recursive descent over the subset the scale loop uses: numbers, metric ids, + - * /,
    comparisons, AND, OR, IF(c, a, b) and FILL(x, v)."""

    def __init__(self, expression: str) -> None:
        self.text, self.toks, self.i = expression, _tokens(expression), 0

    def parse(self) -> _Node:
        node = self._or()
        if self.i != len(self.toks):
            raise ValueError(f"unexpected {self.toks[self.i]!r} in metric math {self.text!r}")
        return node

    def _peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def _take(self, expected: str | None = None) -> str:
        tok = self._peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"expected {expected or 'more'} in metric math {self.text!r}")
        self.i += 1
        return tok

    def _binary(self, ops: dict[str, Callable[[float, float], float]], lower: Callable[[], _Node]) -> _Node:
        node = lower()
        while (op := self._peek()) in ops:
            self._take()
            node = _combine(node, lower(), ops[op])
        return node

    def _or(self) -> _Node:
        return self._binary({"OR": lambda a, b: float(bool(a) or bool(b))}, self._and)

    def _and(self) -> _Node:
        return self._binary({"AND": lambda a, b: float(bool(a) and bool(b))}, self._compare)

    def _compare(self) -> _Node:
        return self._binary({">": lambda a, b: float(a > b), "<": lambda a, b: float(a < b),
                             ">=": lambda a, b: float(a >= b), "<=": lambda a, b: float(a <= b),
                             "==": lambda a, b: float(a == b), "!=": lambda a, b: float(a != b)}, self._sum)

    def _sum(self) -> _Node:
        return self._binary({"+": lambda a, b: a + b, "-": lambda a, b: a - b}, self._product)

    def _product(self) -> _Node:
        return self._binary({"*": lambda a, b: a * b, "/": lambda a, b: a / b if b else float("nan")}, self._atom)

    def _atom(self) -> _Node:
        tok = self._take()
        if tok == "(":
            node = self._or()
            self._take(")")
            return node
        if tok == "-":
            inner = self._atom()
            return lambda env: None if (v := inner(env)) is None else -v
        if tok[0].isdigit():
            number = float(tok)
            return lambda env: number
        if self._peek() == "(":
            return self._call(tok)
        return lambda env: env.get(tok)

    def _call(self, name: str) -> _Node:
        self._take("(")
        args = [self._or()]
        while self._peek() == ",":
            self._take()
            args.append(self._or())
        self._take(")")
        if name == "IF" and len(args) == 3:
            cond, yes, no = args
            return lambda env: None if (c := cond(env)) is None else (yes(env) if c else no(env))
        if name == "FILL" and len(args) == 2:
            series, fill = args
            return lambda env: fill(env) if (v := series(env)) is None else v
        raise ValueError(f"metric math function {name}/{len(args)} is not modelled ({self.text!r})")


def _combine(left: _Node, right: _Node, op: Callable[[float, float], float]) -> _Node:
    def node(env: Mapping[str, Value]) -> Value:
        a, b = left(env), right(env)
        return None if a is None or b is None else op(a, b)
    return node


def compile_expression(expression: str) -> Callable[[Mapping[str, Value]], Value]:
    """A metric-math expression as a function of one timestamp's datapoints (by metric id)."""
    return _Parser(expression).parse()


def alarm_points(rule: AlarmRule, series: Series) -> list[Value]:
    """The series the alarm compares with its threshold, one value per period: the single
    metric's, or the expression's. `series` maps each metric id of the rule to its values."""
    ids = [m.id for m in rule.metrics]
    missing = [i for i in ids if i not in series]
    if missing:
        raise KeyError(f"alarm {rule.key}: no series for {missing}")
    length = len(series[ids[0]])
    if any(len(series[i]) != length for i in ids):
        raise ValueError(f"alarm {rule.key}: series of different lengths")
    if rule.expression is None:
        return list(series[ids[0]])
    fn = compile_expression(rule.expression)
    return [fn({i: series[i][t] for i in ids}) for t in range(length)]


# ---------------------------------------------------------------------- alarm states
def breaches(rule: AlarmRule, value: float) -> bool:
    c, th = rule.comparison, rule.threshold
    return {"GreaterThanOrEqualToThreshold": value >= th, "GreaterThanThreshold": value > th,
            "LessThanThreshold": value < th, "LessThanOrEqualToThreshold": value <= th}[c]


def next_state(rule: AlarmRule, window: Sequence[Value], previous: State) -> State:
    """The alarm's state after one evaluation of its last `evaluation_periods` datapoints
    (oldest first; shorter at the start of a series, where the rest counts as missing)."""
    points = [None] * (rule.evaluation_periods - len(window)) + list(window[-rule.evaluation_periods:])
    treat = rule.treat_missing_data
    if treat in ("breaching", "notBreaching"):
        missing_hits = sum(1 for p in points if p is None) if treat == "breaching" else 0
        hits = missing_hits + sum(1 for p in points if p is not None and breaches(rule, p))
        return "ALARM" if hits >= rule.datapoints_to_alarm else "OK"
    present = [p for p in points if p is not None]
    if not present:
        return previous if treat == "ignore" else "INSUFFICIENT_DATA"
    return "ALARM" if sum(1 for p in present if breaches(rule, p)) >= rule.datapoints_to_alarm else "OK"


def alarm_states(rule: AlarmRule, points: Sequence[Value], *, initial: State = "INSUFFICIENT_DATA") -> list[State]:
    """The state after each period's evaluation."""
    states: list[State] = []
    state = initial
    for t in range(len(points)):
        state = next_state(rule, points[: t + 1], state)
        states.append(state)
    return states


@dataclass(frozen=True)
class Invocation:
    period: int
    #: A policy key or ALERT.
    action: str
    state: State


def invocations(rule: AlarmRule, states: Sequence[State], *, initial: State = "INSUFFICIENT_DATA") -> list[Invocation]:
    """What the alarm's actions do each period: a policy runs every period the alarm is in the
    action's state; an alert goes out once, on entering it."""
    out: list[Invocation] = []
    previous = initial
    for t, state in enumerate(states):
        actions = rule.alarm_actions if state == "ALARM" else rule.ok_actions if state == "OK" else ()
        for action in actions:
            if action != ALERT or state != previous:
                out.append(Invocation(t, action, state))
        previous = state
    return out


# ---------------------------------------------------------------------- policies
def _step_matches(step: StepRule, diff: float, high: bool) -> bool:
    """Whether (metric - threshold) falls in the step; the bound on the breach side is
    inclusive (above a high threshold: the lower; below a low one: the upper)."""
    lower_ok = step.lower is None or (diff >= step.lower if high else diff > step.lower)
    upper_ok = step.upper is None or (diff < step.upper if high else diff <= step.upper)
    return lower_ok and upper_ok


def policy_capacity(policy: PolicyRule, *, current: int, min_size: int, max_size: int,
                    alarm: AlarmRule | None = None, value: float | None = None) -> int:
    """The desired capacity after `policy` runs once: a simple or step policy invoked by
    `alarm` whose datapoint was `value`. Clamped to the group's bounds."""
    if policy.kind == "target-tracking":
        raise ValueError("target tracking sets capacity from the alarms AWS creates for it, not from ours")
    if policy.kind == "simple":
        adjustment = policy.adjustment
    else:
        if alarm is None or value is None:
            raise ValueError(f"step policy {policy.key} needs the alarm and its datapoint")
        high = alarm.comparison.startswith("Greater")
        step = next((s for s in policy.steps if _step_matches(s, value - alarm.threshold, high)), None)
        adjustment = None if step is None else step.adjustment
    if adjustment is None:
        return current
    wanted = adjustment if policy.adjustment_type == "ExactCapacity" else current + adjustment
    return max(min_size, min(max_size, wanted))


def blocked_by_cooldown(policy: PolicyRule, now_s: float, cooldown_until_s: float | None) -> bool:
    """Whether a cooldown holds this policy back: only simple scaling ever waits."""
    return policy.kind == "simple" and cooldown_until_s is not None and now_s < cooldown_until_s


def cooldown_after(policy: PolicyRule, activity_end_s: float) -> float | None:
    """When the group's cooldown ends after an activity this policy started (None: it starts
    none; step and target tracking use instance warm-up instead)."""
    if policy.kind != "simple":
        return None
    return activity_end_s + (policy.cooldown_s if policy.cooldown_s is not None else DEFAULT_COOLDOWN_S)
