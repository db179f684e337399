"""A seeded corpus of malformed decision files, generated at test time (same seed, same files).

Every case is malformed by construction (no mutation here can leave a valid file), and says
what a good error must name: the field it broke (dotted, as the error prints it) and, where the
mutation put it on a known line, that line. Families follow the security review's fuzzing:
bad numbers (zero, negative, subnormal, huge, non-finite, bools, strings) in the decision file
and in `catalog:` overrides, control characters and huge values in every string that reaches a
rendered file, YAML 1.1-isms, duplicate keys, invalid UTF-8, raw control bytes, broken
structure, alias bombs and deep nesting.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
CATALOG = yaml.safe_load((ROOT / "planner" / "data" / "catalog.yaml").read_text())

BAD_NUMBERS: list[object] = [-1, -0.5, 5e-324, 1e-300, 1e308, 10**13, float("inf"), float("-inf"), float("nan"), True, "12", "1:30", "yes", [1], {"a": 1}]
BAD_IDENTIFIERS: list[object] = ["", "x\n", "us-east-1\nLD_PRELOAD=/tmp/evil.so", "a\x00b", "a\tb", "\u202eevil", "a\u2028b", "Caps Lock", None, 7, ["a"]]
#: Decision-file fields a value can be inserted at when absent (section -> field -> kind).
OPTIONAL_NUMBERS = {
    ("profile",): ["turn_gap_s", "turn_gap_cv", "output_tokens_p99", "static_prefix_tokens"],
    ("volume",): ["peak_factor", "active_hours_per_day", "conversations_per_month_12m"],
    (): ["budget_usd_per_month"],
}
CATALOG_GROUPS = ["claude_models", "open_models", "gpu_instances"]


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    #: Where the mistake is: the error must name this field (or its parent) on the line that
    #: holds it. None: a file-level problem (bad UTF-8, broken structure) with `line` or any line.
    path: tuple | None = None
    #: 1-based line the error must name (None: the line holding `field` is checked instead).
    line: int | None = None


def _dump(doc: object) -> bytes:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(doc, Dumper=dumper, sort_keys=False, width=10**9, allow_unicode=False).encode()


def _leaves(doc: object, prefix: tuple = ()) -> list[tuple]:
    """Paths to every number and string leaf of `doc`."""
    out: list[tuple] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _leaves(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _leaves(v, prefix + (i,))
    elif not isinstance(doc, bool) and isinstance(doc, (int, float)):
        out.append(prefix)
    return out


def _set(doc: dict, path: tuple, value: object) -> None:
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


class Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.docs = [(p.name, yaml.safe_load(p.read_text()), p.read_text()) for p in EXAMPLES]

    def pick_doc(self) -> tuple[str, dict, str]:
        name, doc, text = self.rng.choice(self.docs)
        return name, copy.deepcopy(doc), text

    # --- the decision file's own fields ------------------------------------------------------

    def bad_number(self) -> Case:
        name, doc, _ = self.pick_doc()
        path = self.rng.choice([p for p in _leaves(doc) if p[0] != "version"])
        value = self.rng.choice(BAD_NUMBERS)
        if path[-1] in ("static_prefix_tokens", "wrong_answer_cost", "ops_overhead_usd_per_fleet_month") and value == -0.5:
            value = -1  # -0.5 is still invalid there, but keep every value plainly out of range
        if isinstance(path[-1], int) and path[-2] == "budget_thresholds_pct" and value in ("12",):
            value = -1
        _set(doc, path, value)
        return Case(f"number-{name}-{_dotted(path)}", _dump(doc), path)

    def inserted_number(self) -> Case:
        name, doc, _ = self.pick_doc()
        agent = self.rng.choice(list(doc["agents"]))
        section, fields = self.rng.choice(list(OPTIONAL_NUMBERS.items()))
        field = self.rng.choice(fields)
        value = self.rng.choice([v for v in BAD_NUMBERS if v not in (-0.5,)])
        node = doc["agents"][agent]
        for part in section:
            node = node[part]
        node[field] = value
        path = ("agents", agent) + section + (field,)
        return Case(f"insert-{name}-{_dotted(path)}", _dump(doc), path)

    def bad_identifier(self) -> Case:
        name, doc, _ = self.pick_doc()
        agent = self.rng.choice(list(doc["agents"]))
        where = self.rng.choice(["stack.name", "stack.region", "email", "model", "instance_type", "description"])
        value = self.rng.choice(BAD_IDENTIFIERS + ["x" * self.rng.randint(41, 5_000)])
        if where == "stack.name":
            doc["stack"]["name"], path = value, ("stack", "name")
        elif where == "stack.region":
            doc["stack"]["region"], path = value, ("stack", "region")
        elif where == "email":
            doc["stack"]["alert_emails"] = ["ops@example.com", value if value != "Caps Lock" else "not an email"]
            path = ("stack", "alert_emails", 1)
        elif where == "description":
            value = self.rng.choice(["a\x00b", "\x1b[31mred", "a\rb", "\u202eevil", 7, ["a"]])
            doc["agents"][agent]["description"], path = value, ("agents", agent, "description")
        else:
            if value in ("Caps Lock", "", None) or (isinstance(value, str) and value.startswith("x" * 41)):
                value = "bad\nvalue"  # a plain unknown id is a planner question, not a front-door one
            doc["agents"][agent].setdefault("overrides", {})[where] = value
            path = ("agents", agent, "overrides", where)
        return Case(f"ident-{name}-{_dotted(path)}", _dump(doc), path)

    def bad_agent_name(self) -> Case:
        name, doc, _ = self.pick_doc()
        agent = self.rng.choice(list(doc["agents"]))
        new = self.rng.choice([agent + "\n", agent.upper(), "1" + agent, "a" * 41, "a b", "a\x00", "../etc", "a_b", agent + "\u2028"])
        doc["agents"] = {(new if k == agent else k): v for k, v in doc["agents"].items()}
        return Case(f"agent-name-{name}", _dump(doc), ("agents",))

    def too_many_emails(self) -> Case:
        name, doc, _ = self.pick_doc()
        count = self.rng.choice([101, 500])
        doc["stack"]["alert_emails"] = [f"ops{i}@example.com" for i in range(count)]
        if self.rng.random() < 0.5:
            doc["stack"]["alert_emails"] = ["a" * 250 + "@example.com"]
        return Case(f"emails-{name}", _dump(doc), ("stack", "alert_emails"))

    def missing_or_unknown(self) -> Case:
        name, doc, _ = self.pick_doc()
        agent = self.rng.choice(list(doc["agents"]))
        kind = self.rng.choice(["missing", "unknown", "misspelt", "container"])
        required = [("latency",), ("quality",), ("quality", "task"), ("volume",), ("volume", "conversations_per_month"),
                    ("profile",), ("profile", "input_tokens_per_turn"), ("profile", "output_tokens_per_turn")]
        if kind == "missing":
            section = self.rng.choice(required)
            node = doc["agents"][agent]
            for part in section[:-1]:
                node = node[part]
            node.pop(section[-1])
            return Case(f"missing-{name}", _dump(doc), ("agents", agent) + section)
        if kind == "unknown":
            section = self.rng.choice([("latency",), ("quality",), ("volume",), ("profile",), ()])
            node = doc["agents"][agent]
            for part in section:
                node = node[part]
            node["surprise_key"] = 1
            return Case(f"unknown-{name}", _dump(doc), ("agents", agent) + section + ("surprise_key",))
        if kind == "misspelt":
            key = self.rng.choice(["latency", "quality", "volume", "profile"])
            node = doc["agents"][agent]
            node[key[:-1] + "z"] = node.pop(key)
            return Case(f"misspelt-{name}", _dump(doc), ("agents", agent, key[:-1] + "z"))
        section = self.rng.choice(["latency", "quality", "volume", "profile"])
        doc["agents"][agent][section] = self.rng.choice([1, "text", [1, 2], None])
        return Case(f"container-{name}", _dump(doc), ("agents", agent, section))

    # --- `catalog:` overrides ----------------------------------------------------------------

    def catalog_number(self) -> Case:
        name, doc, _ = self.pick_doc()
        group = self.rng.choice(["assumptions", "infrastructure"] + CATALOG_GROUPS + ["perf"])
        value = self.rng.choice([0, -1, 5e-324, 1e-300, 1e308, 10**13, float("inf"), float("nan"), True])
        if group in ("assumptions", "infrastructure"):
            fields = [k for k, v in CATALOG[group].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            path = (group, self.rng.choice(fields))
            if value == 0 and path[1] in ("spot_interruptions_per_month", "batch_parallel_writes", "default_turn_gap_cv",
                                          "ops_overhead_usd_per_fleet_month") or value == 0 and group == "infrastructure":
                value = -1  # zero is a meaningful figure for these
        elif group == "perf":
            gpu = self.rng.choice([k for k, v in CATALOG["gpu_instances"].items() if v.get("perf")])
            size = self.rng.choice(list(CATALOG["gpu_instances"][gpu]["perf"]))
            perf = CATALOG["gpu_instances"][gpu]["perf"][size]
            path = ("gpu_instances", gpu, "perf", size, self.rng.choice([k for k, v in perf.items() if isinstance(v, (int, float))]))
        else:
            entry_id = self.rng.choice(list(CATALOG[group]))
            entry = CATALOG[group][entry_id]
            fields = [k for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            path = (group, entry_id, self.rng.choice(fields))
            if value == 0 and path[-1] in ("min_cacheable_tokens", "cache_write_5m_multiplier", "cache_write_1h_multiplier",
                                           "cache_read_multiplier", "batch_discount", "input_usd_per_mtok", "output_usd_per_mtok",
                                           "ttft_s_per_1k_input_tokens"):
                value = -1
        override: dict = {}
        _nest(override, path, value)
        doc["catalog"] = override
        return Case(f"catalog-{name}-{_dotted(path)}", _dump(doc), ("catalog",) + path)

    def catalog_text(self) -> Case:
        name, doc, _ = self.pick_doc()
        value = self.rng.choice(["x\n", "org/repo\nEVIL=1", "a\x00b", "\u202eevil", "a\u2028b"])
        choice = self.rng.choice(["claude", "hf_repo", "alternative", "gpu", "key"])
        if choice == "claude":
            path: tuple = ("claude_models", self.rng.choice(list(CATALOG["claude_models"])), "name")
        elif choice == "hf_repo":
            path = ("open_models", self.rng.choice(list(CATALOG["open_models"])), "hf_repo")
        elif choice == "gpu":
            path = ("gpu_instances", self.rng.choice(list(CATALOG["gpu_instances"])), "gpu")
        elif choice == "alternative":
            gpu = self.rng.choice(list(CATALOG["gpu_instances"]))
            override: dict = {}
            _nest(override, ("gpu_instances", gpu, "alternatives"), [value])
            doc["catalog"] = override
            return Case(f"catalog-text-{name}", _dump(doc), ("catalog", "gpu_instances", gpu, "alternatives", 0))
        else:
            doc["catalog"] = {"claude_models": {"claude-new" + value: {"name": "x"}}}
            return Case(f"catalog-key-{name}", _dump(doc), ("catalog", "claude_models", "claude-new" + value))
        override = {}
        _nest(override, path, value)
        doc["catalog"] = override
        return Case(f"catalog-text-{name}", _dump(doc), ("catalog",) + path)

    # --- the text itself ---------------------------------------------------------------------

    def duplicate_key(self) -> Case:
        name, _, text = self.pick_doc()
        lines = text.splitlines(keepends=True)
        candidates = [i for i, ln in enumerate(lines) if ":" in ln and not ln.lstrip().startswith(("#", "-")) and ln.strip()]
        i = self.rng.choice(candidates)
        lines.insert(i + 1, lines[i])
        return Case(f"dup-{name}-{i + 1}", "".join(lines).encode(), None, i + 2)

    def yaml11_value(self) -> Case:
        name, _, text = self.pick_doc()
        lines = text.splitlines(keepends=True)
        numeric = [i for i, ln in enumerate(lines) if _number_line(ln)]
        i = self.rng.choice(numeric)
        key = lines[i].split(":", 1)[0]
        word = self.rng.choice(["yes", "no", "on", "off", "y", "1:30", "0:45:10", "true", "false", "'5'", "1_0x"])
        lines[i] = f"{key}: {word}\n"
        return Case(f"yaml11-{name}-{i + 1}", "".join(lines).encode(), None, i + 1)

    def invalid_utf8(self) -> Case:
        name, _, text = self.pick_doc()
        lines = text.splitlines(keepends=True)
        i = self.rng.randrange(len(lines))
        raw = [ln.encode() for ln in lines]
        cut = self.rng.randint(0, max(0, len(raw[i]) - 1))
        raw[i] = raw[i][:cut] + self.rng.choice([b"\xff", b"\xc3\x28", b"\xe9", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]) + raw[i][cut:]
        return Case(f"utf8-{name}-{i + 1}", b"".join(raw), None, i + 1)

    def control_byte(self) -> Case:
        name, _, text = self.pick_doc()
        lines = text.splitlines(keepends=True)
        i = self.rng.randrange(len(lines))
        cut = self.rng.randint(0, max(0, len(lines[i]) - 1))
        ch = self.rng.choice(["\x00", "\x07", "\x1b", "\x7f", "\x08", "\ufffe"])
        lines[i] = lines[i][:cut] + ch + lines[i][cut:]
        return Case(f"ctrl-{name}-{i + 1}", "".join(lines).encode(), None, i + 1)

    def broken_structure(self) -> Case:
        name, _, text = self.pick_doc()
        cut = self.rng.randint(0, len(text))
        tail = self.rng.choice(["\nbad: [unclosed\n", "\n  - x\n y: {\n", "\nkey: 'open\n", "\n\t- tab\n", "\n? [a, b]\n: c\n"])
        return Case(f"broken-{name}-{cut}", (text[:cut] + tail).encode())

    def bomb(self) -> Case:
        kind = self.rng.choice(["laughs", "deep", "deepmap", "recursive", "two-docs", "python-tag", "bigint", "bigfloat", "toplevel"])
        if kind == "laughs":
            levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
            body = "version: 1\nstack: {name: bomb}\nagents:\n" + "".join(f"  {ln}\n" for ln in levels)
        elif kind == "deep":
            depth = self.rng.choice([100, 1000, 100_000])
            body = "version: 1\nstack: {name: deep}\nagents: " + "[" * depth + "]" * depth + "\n"
        elif kind == "deepmap":
            body = "version: 1\nstack: {name: deep}\nagents:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200))
        elif kind == "recursive":
            body = "version: 1\nstack: {name: x}\nagents:\n  a: &anchor\n    b: *anchor\n"
        elif kind == "two-docs":
            body = "version: 1\nstack: {name: x}\n---\nagents: {}\n"
        elif kind == "python-tag":
            body = "version: 1\nstack: !!python/object/apply:os.system ['echo pwned']\nagents: {}\n"
        elif kind == "bigint":
            body = "version: 1\nstack: {name: x, budget_headroom: " + "9" * self.rng.choice([31, 5000, 50_000]) + "}\nagents: {}\n"
        elif kind == "bigfloat":
            body = "version: 1\nstack: {name: x, budget_headroom: 1" + "0" * 400 + ".0}\nagents: {}\n"
        else:
            body = self.rng.choice(["", "# only a comment\n", "- a\n- list\n", "just text\n", "42\n", "null\n", "~\n", "[]\n"])
        return Case(f"bomb-{kind}", body.encode())

    def cases(self, count: int) -> list[Case]:
        families = [
            (self.bad_number, 18), (self.inserted_number, 8), (self.bad_identifier, 12), (self.bad_agent_name, 4),
            (self.too_many_emails, 2), (self.missing_or_unknown, 8), (self.catalog_number, 14), (self.catalog_text, 5),
            (self.duplicate_key, 7), (self.yaml11_value, 7), (self.invalid_utf8, 5), (self.control_byte, 4),
            (self.broken_structure, 4), (self.bomb, 2),
        ]
        makers = [f for f, w in families for _ in range(w)]
        return [self.rng.choice(makers)() for _ in range(count)]


def _nest(target: dict, path: tuple, value: object) -> None:
    node = target
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _number_line(line: str) -> bool:
    if ":" not in line or line.lstrip().startswith(("#", "-")):
        return False
    key, value = line.split(":", 1)
    value = value.split("#", 1)[0].strip()
    if key.strip() == "version":
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True
