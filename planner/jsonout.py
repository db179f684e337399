"""`deploy plan --json`'s text: the bytes `json.dumps(plan, indent=2, allow_nan=False)` gives,
built faster and agent by agent.

With `indent` set, the standard library encodes in pure Python, one generator step per token,
and holds every token before joining them: at 10,000 agents that was seconds and ~275 MB. Here
each container is joined as it closes (its C string escaper and `float.__repr__` for the leaves),
and the plan's agents are dumped and encoded one at a time, so what is held is the text itself.
Each agent's text is pydantic's `model_dump_json` where that is surely the same bytes
(`_unsure`). tests/planner/test_jsonout.py holds it to `json.dumps` byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from agentdeploy.planner.plan import AgentPlan, Plan

_INDENT = "  "
#: "\n" and the indent of each of the first levels; a key's text with its ": ", by key.
_NEWLINES = ["\n" + _INDENT * n for n in range(16)]
_KEYS: dict[str, str] = {}


def dumps(value: Any) -> str:
    """`json.dumps(value, indent=2, allow_nan=False)`, for the JSON types `model_dump(mode="json")` gives."""
    return _encode(value, 0)


def plan_json(plan: Plan, agent_texts: Sequence[str] | None = None) -> list[str]:
    """The plan's JSON text in pieces (`"".join` of them is `dumps(plan.model_dump(mode="json"))`),
    dumping one agent at a time. Any number JSON cannot carry raises ValueError before a piece is
    returned, so a caller never writes half a document. With `agent_texts` (each agent already
    encoded at level 2, `agent_text`), those stand for `plan.agents`, which are not read."""
    head = {k: _encode(v, 1) for k, v in plan.model_dump(mode="json", exclude={"agents"}).items()}
    texts = agent_texts if agent_texts is not None else [_encode(a.model_dump(mode="json"), 2) for a in plan.agents]
    pieces: list[str] = []
    for name in type(plan).model_fields:
        lead = ("{" if not pieces else ",") + _NEWLINES[1] + encode_basestring_ascii(name) + ": "
        if name == "agents":
            if not texts:
                pieces.append(lead + "[]")
                continue
            for i, text in enumerate(texts):
                pieces.append((lead + "[" if i == 0 else ",") + _NEWLINES[2])
                pieces.append(text)  # not joined to its lead: a copy of every agent's text would double the peak
            pieces.append(_NEWLINES[1] + "]")
        elif name in head:
            pieces.append(lead + head[name])
    pieces.append("\n}" if pieces else "{}")
    return pieces


#: An agent's last fields: those its share of the stack's fixed cost changes (and `volume` between).
AGENT_TAIL = ("budget", "volume", "why")
assert tuple(AgentPlan.model_fields)[-len(AGENT_TAIL):] == AGENT_TAIL
_TAIL_SET = set(AGENT_TAIL)


#: A negative exponent in pydantic's JSON text: under 1e-4 the two write numbers differently
#: (pydantic 0.00001 and 1.2e-7, Python 1e-05 and 1.2e-07); from 1e-4 up they agree.
_SMALL = re.compile(r"e-\d")


def _unsure(text: str) -> bool:
    """Whether pydantic's JSON text may differ from `json.dumps`'s: a number under 1e-4, NaN or an
    infinity (json.dumps refuses them), an escape (the sets escaped differ), DEL or anything not
    ASCII (json.dumps escapes them). Conservative: the same text inside a string counts too."""
    return ("0.0000" in text or _SMALL.search(text) is not None or "NaN" in text or "Infinity" in text or "\\u" in text
            or "\x7f" in text or not text.isascii())


def agent_head(agent: AgentPlan) -> str:
    """The agent's JSON members before `AGENT_TAIL`, encoded at the level of `plan_json`'s agents,
    without the braces: what `agent_text` completes. Pydantic's serializer writes the text (in
    Rust, about twice as fast); where it might differ from `json.dumps` (`_unsure`), this
    encoder does."""
    text = agent.model_dump_json(indent=2, exclude=_TAIL_SET)
    if not _unsure(text):
        return text[4:-2].replace("\n", _NEWLINES[2])
    inner = _NEWLINES[3]
    return ("," + inner).join(_key(k) + ": " + _encode(v, 3) for k, v in agent.model_dump(mode="json", exclude=_TAIL_SET).items())


def agent_text(head: str, tail: dict[str, Any]) -> str:
    """`_encode(agent.model_dump(mode="json"), 2)` from `agent_head(agent)` and the tail members
    (in `AGENT_TAIL`'s order; models or their `model_dump(mode="json")`). Written by pydantic's
    serializer, as `agent_head`, unless `_unsure`."""
    inner = _NEWLINES[3]
    text = _TAIL.dump_json(tail, indent=2).decode()
    if not _unsure(text):
        return "{" + inner + head + "," + inner + text[4:-2].replace("\n", _NEWLINES[2]) + _NEWLINES[2] + "}"
    dumped = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in tail.items()}
    rest = "".join("," + inner + _key(k) + ": " + _encode(v, 3) for k, v in dumped.items())
    return "{" + inner + head + rest + _NEWLINES[2] + "}"


#: The tail's members as they come (a model serialises by its own schema; NaN and infinities
#: written as constants, for `_unsure` to see).
_TAIL: TypeAdapter[dict[str, Any]] = TypeAdapter(dict[str, Any], config=ConfigDict(ser_json_inf_nan="constants"))


def _encode(o: Any, level: int) -> str:
    t = type(o)
    if t is str:
        return encode_basestring_ascii(o)
    if t is float:
        return _float(o)
    if t is dict:
        if not o:
            return "{}"
        inner = _NEWLINES[level + 1] if level + 1 < len(_NEWLINES) else "\n" + _INDENT * (level + 1)
        keys = _KEYS
        parts = []
        for k, v in o.items():
            key = keys.get(k) if type(k) is str else None
            if key is None:
                key = _key(k) + ": "
                if type(k) is str:
                    keys[k] = key
            parts.append(key + _encode(v, level + 1))
        return "{" + inner + ("," + inner).join(parts) + inner[:-2] + "}"
    if t is list or t is tuple:
        if not o:
            return "[]"
        inner = _NEWLINES[level + 1] if level + 1 < len(_NEWLINES) else "\n" + _INDENT * (level + 1)
        return "[" + inner + ("," + inner).join([_encode(v, level + 1) for v in o]) + inner[:-2] + "]"
    if o is None:
        return "null"
    if o is True:
        return "true"
    if o is False:
        return "false"
    if isinstance(o, int):
        return int.__repr__(o)
    if isinstance(o, str):
        return encode_basestring_ascii(o)
    if isinstance(o, float):
        return _float(o)
    if isinstance(o, (list, tuple, dict)):
        return _encode(dict(o) if isinstance(o, dict) else list(o), level)
    raise TypeError(f"Object of type {o.__class__.__name__} is not JSON serializable")


_INF = float("inf")


def _float(o: float) -> str:
    if o != o or o == _INF or o == -_INF:
        raise ValueError("Out of range float values are not JSON compliant: " + repr(o))
    return float.__repr__(o)


def _key(k: Any) -> str:
    """A dict key the way `json.dumps` writes it (strings; numbers, booleans and None as their text)."""
    if isinstance(k, str):
        return encode_basestring_ascii(k)
    if isinstance(k, float):
        return '"' + _float(k) + '"'
    if k is True:
        return '"true"'
    if k is False:
        return '"false"'
    if k is None:
        return '"null"'
    if isinstance(k, int):
        return '"' + int.__repr__(k) + '"'
    raise TypeError(f"keys must be str, int, float, bool or None, not {k.__class__.__name__}")
