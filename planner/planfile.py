"""The plan file: the reviewed plan, and what it was planned from, so what is applied is what
was reviewed.

`deploy plan FILE --write` (or `deploy render`) writes the plan with a `source` block: the
decision file's SHA-256, a fingerprint of the effective catalog (built-in, ~/.agentdeploy
catalog.d, `--catalog` files and the decision file's `catalog:` section), when and by which
agentdeploy it was written. The Pulumi program and `deploy reap/status/cost` apply that plan
instead of planning again, after checking that neither input changed since: a spot-price
refresh between a pull request's preview and its merge would otherwise change what gets
deployed without anyone reviewing it. A stale plan is refused (exit 2) with what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from agentdeploy import __version__
from agentdeploy.errors import InvalidInput
from agentdeploy.planner.build import build_plan, spec_catalog
from agentdeploy.planner.catalog import Catalog
from agentdeploy.planner.plan import Plan
from agentdeploy.planner.spec import load_decision_file

#: `deploy plan decisions/shop.yaml --write` writes decisions/shop.plan.json.
PLAN_FILE_SUFFIX = ".plan.json"
#: What the catalog fingerprint leaves out: where overrides came from (paths differ between a
#: laptop and CI); their content is in the fingerprint.
_NOT_FINGERPRINTED = {"applied_overrides"}


class StalePlan(InvalidInput):
    """The plan file no longer matches its decision file or catalog (exit 2, like bad input)."""


class PlanSource(BaseModel):
    """Where a plan file's plan came from; paths are relative to the plan file's folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decision_file: str
    decision_sha256: str
    catalog_version: str
    catalog_as_of: str
    #: SHA-256 of the effective catalog, and of each of its sections (to say which changed).
    catalog_sha256: str
    catalog_sections: dict[str, str]
    #: `--catalog` override files the plan was priced with; applied again when checking.
    catalog_files: list[str] = []
    written_at: datetime
    agentdeploy_version: str


class PlanFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    source: PlanSource
    plan: Plan

    def document(self) -> dict[str, Any]:
        """The JSON document: the plan's own keys (what `deploy plan --json` prints) plus `source`."""
        return {"source": self.source.model_dump(mode="json"), **self.plan.to_json_dict()}


def default_plan_path(decision_file: Path) -> Path:
    """The plan file beside its decision file: shop.yaml -> shop.plan.json."""
    return decision_file.with_name(decision_file.stem + PLAN_FILE_SUFFIX)


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read ({err.strerror})") from None


def catalog_fingerprint(catalog: Catalog) -> tuple[str, dict[str, str]]:
    """SHA-256 of the effective catalog's content, whole and per section (claude_models, ...)."""
    data = catalog.model_dump(mode="json", exclude=_NOT_FINGERPRINTED)
    sections = {key: _sha256_json(value) for key, value in sorted(data.items()) if isinstance(value, dict)}
    return _sha256_json(data), sections


def _sha256_json(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _relative(path: Path, folder: Path) -> str:
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows): keep it absolute
        return str(path.resolve())


def plan_file_for(plan: Plan, plan_path: Path, decision_file: Path, catalog: Catalog,
                  catalog_files: Sequence[Path] = (), now: datetime | None = None) -> PlanFile:
    """The plan file `plan_path` would hold for `plan` (pure but for hashing the decision file)."""
    if plan.volume_scale != 1.0:
        raise InvalidInput("a --scale what-if is not a plan to deploy: write the plan without --scale")
    whole, sections = catalog_fingerprint(catalog)
    folder = plan_path.parent
    source = PlanSource(
        decision_file=_relative(decision_file, folder),
        decision_sha256=file_sha256(decision_file),
        catalog_version=catalog.version,
        catalog_as_of=catalog.as_of.isoformat(),
        catalog_sha256=whole,
        catalog_sections=sections,
        catalog_files=[_relative(p, folder) for p in catalog_files],
        written_at=(now or datetime.now(UTC)).replace(microsecond=0),
        agentdeploy_version=__version__,
    )
    return PlanFile(source=source, plan=plan)


def write_plan_file(path: Path, plan: Plan, decision_file: Path, catalog: Catalog,
                    catalog_files: Sequence[Path] = ()) -> PlanFile:
    """Write the plan file (indented JSON, stable key order: a readable diff in review)."""
    planned = plan_file_for(plan, path, decision_file, catalog, catalog_files)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(planned.document(), indent=2) + "\n")
    return planned


def parse_plan_document(data: object, origin: str) -> tuple[Plan, PlanSource | None]:
    """A plan file's document, or a bare plan (`deploy plan --json`): the plan and its source."""
    hint = "write it with `deploy plan FILE --write` (or `deploy plan FILE --json`)"
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{origin}: not a plan (not a JSON object)", hint=hint)
    body = dict(data)
    raw_source = body.pop("source", None)
    try:
        plan = Plan.model_validate(body)
        source = PlanSource.model_validate(raw_source) if raw_source is not None else None
    except ValidationError as err:
        details = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:10]]
        raise InvalidInput(f"{origin}: not a plan", details=details, hint=hint) from None
    return plan, source


def read_plan_document(path: Path) -> tuple[Plan, PlanSource | None]:
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise InvalidInput(f"{path}: cannot read plan ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise InvalidInput(f"{path}:{err.lineno}: not JSON ({err.msg})",
                           hint="write it with `deploy plan FILE --write`") from None
    return parse_plan_document(data, str(path))


def read_plan_file(path: Path) -> PlanFile:
    plan, source = read_plan_document(path)
    if source is None:
        raise InvalidInput(f"{path}: a plan without its `source` block, so it cannot be checked against its inputs",
                           hint="write it with `deploy plan DECISION_FILE --write`")
    return PlanFile(source=source, plan=plan)


def check_fresh(planned: PlanFile, path: Path, decision_file: Path) -> Catalog:
    """The catalog the plan was priced with, recomputed; `StalePlan` when an input changed."""
    source, folder = planned.source, path.parent
    rewrite = f"run `deploy plan {decision_file} --write{_write_arg(path, decision_file)}` and review the diff"
    recorded = (folder / source.decision_file).resolve()
    if recorded != decision_file.resolve():
        raise StalePlan(f"plan file {path} was written for decision file {recorded}, not {decision_file}",
                        hint=rewrite)
    if file_sha256(decision_file) != source.decision_sha256:
        raise StalePlan(f"decision file {decision_file} changed since the plan was written: {rewrite}",
                        details=[f"plan file: {path} (written {source.written_at.isoformat()})"])
    files = [folder / f for f in source.catalog_files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise StalePlan(f"catalog file {', '.join(missing)} the plan was priced with is missing", hint=rewrite)
    catalog = spec_catalog(load_decision_file(decision_file), files)
    whole, sections = catalog_fingerprint(catalog)
    if whole != source.catalog_sha256:
        changed = sorted(k for k in set(sections) | set(source.catalog_sections)
                         if sections.get(k) != source.catalog_sections.get(k))
        raise StalePlan(
            f"catalog changed since the plan was written (spot price refresh? override edited?): {rewrite}",
            details=[f"plan file: {path} (written {source.written_at.isoformat()})",
                     f"catalog then: version {source.catalog_version}, as of {source.catalog_as_of}",
                     f"catalog now: version {catalog.version}, as of {catalog.as_of.isoformat()}",
                     f"changed: {', '.join(changed)}",
                     f"overrides applied now: {', '.join(catalog.applied_overrides) or 'none'}"],
        )
    return catalog


def _write_arg(path: Path, decision_file: Path) -> str:
    return "" if path == default_plan_path(decision_file) else f" {path}"


def check_plan_file(decision_file: Path, plan_file: Path | None = None) -> None:
    """Refuse a stale or missing plan file before anything else runs (`deploy preview/up`
    check here, so the error is exit 2 before the Pulumi engine starts); no plan file is fine."""
    path = plan_file or default_plan_path(decision_file)
    if path.is_file():
        check_fresh(read_plan_file(path), path, decision_file)
    elif plan_file is not None:
        raise _missing(plan_file, decision_file)


def reviewed_plan(decision_file: Path, plan_file: Path | None = None) -> tuple[Plan, Catalog]:
    """The plan to apply for `decision_file`, and the catalog it is priced with.

    From the plan file when there is one (`plan_file`, else the default beside the decision
    file), checked fresh; planned from the decision file when there is none. A plan file named
    explicitly must exist.
    """
    path = plan_file or default_plan_path(decision_file)
    if path.is_file():
        planned = read_plan_file(path)
        catalog = check_fresh(planned, path, decision_file)
        return planned.plan, catalog
    if plan_file is not None:
        raise _missing(plan_file, decision_file)
    spec = load_decision_file(decision_file)
    catalog = spec_catalog(spec)
    return build_plan(spec, catalog), catalog


def _missing(plan_file: Path, decision_file: Path) -> InvalidInput:
    return InvalidInput(f"plan file {plan_file} does not exist",
                        hint=f"write it with `deploy plan {decision_file} --write {plan_file}`")
