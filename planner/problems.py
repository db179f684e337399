"""Validation errors as `file:line: field: what is wrong; what is valid` lines.

The decision file and the catalog overrides both go through `describe`, so a mistake reads the
same wherever it is made: the line to change, the dotted field, pydantic's complaint with the
offending value, the allowed range for numbers, and "did you mean" for a misspelt key.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from agentdeploy.planner.textcheck import clip, dotted

#: loc (as pydantic reports it, union tags removed) -> "file:line" or "file"
Where = Callable[[tuple[Any, ...]], str]


def clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The location without the union member names pydantic inserts ("float", "literal[...]")."""
    return tuple(p for p in loc if not (isinstance(p, str) and _is_union_tag(p)))


def describe(error: ErrorDetails, root: type[BaseModel], where: Where, shown_prefix: tuple[Any, ...] = ()) -> str:
    """One line for one pydantic error; `shown_prefix` is where `root` sits in the user's file."""
    loc = clean_loc(tuple(error["loc"]))
    place = where(loc)
    field = dotted(shown_prefix + loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = fields_at(root, loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {guess[0]!r}?" if guess else f"allowed keys: {', '.join(allowed)}"
        return f"{place}: {field}: unknown key; {hint}"
    if kind == "missing":
        return f"{place}: {field}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    got = error.get("input")
    shown = f" (got {clip(got)})" if got is not None and not isinstance(got, (dict, list)) else ""
    if kind == "finite_number":
        bounds = bounds_text(field_info_at(root, loc))
        shown += f"; valid: a finite number{' ' + bounds if bounds else ''}"
    return f"{place}: {field}: {message}{shown}"


def _is_union_tag(part: str) -> bool:
    return part.startswith(("literal[", "function-")) or part in ("float", "int", "str", "bool", "list[float]")


def _step(annotation: Any, part: Any) -> Any:
    """The annotation one location part below `annotation` (a model field, a dict value, a list item)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field else None
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list and isinstance(part, int):
        return get_args(annotation)[0]
    return None


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _annotation_at(root: type[BaseModel], loc: tuple[Any, ...]) -> Any:
    annotation: Any = root
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    return annotation


def fields_at(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed at `loc` (empty where the location is not a model)."""
    model = _model_in(_annotation_at(root, loc))
    return list(model.model_fields) if model else []


def field_info_at(root: type[BaseModel], loc: tuple[Any, ...]) -> FieldInfo | None:
    if not loc:
        return None
    model = _model_in(_annotation_at(root, loc[:-1]))
    return model.model_fields.get(str(loc[-1])) if model else None


def bounds_text(info: FieldInfo | None) -> str:
    """'greater than 0 and at most 10000000000' from a field's gt/ge/lt/le constraints."""
    if info is None:
        return ""
    words: list[str] = []
    for m in info.metadata:
        if isinstance(m, Gt):
            words.append(f"greater than {_num(m.gt)}")
        elif isinstance(m, Ge):
            words.append(f"at least {_num(m.ge)}")
        elif isinstance(m, Lt):
            words.append(f"less than {_num(m.lt)}")
        elif isinstance(m, Le):
            words.append(f"at most {_num(m.le)}")
    return " and ".join(words)


def _num(x: Any) -> str:
    return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"
