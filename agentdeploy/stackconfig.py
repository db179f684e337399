"""Where stack configs live, found the way the Pulumi CLI finds them.

Pulumi.yaml sets `stackConfigDir: stacks`, so the CLI reads `stacks/Pulumi.<stack>.yaml`. The
Python Automation API ignores stackConfigDir, so every part of agentdeploy that needs a stack's
settings (the provisioning commands, reap, cost, status) resolves them here, in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentdeploy.errors import InvalidInput
from agentdeploy.naming import CONFIG_DECISION_FILE, CONFIG_PLAN_FILE


@dataclass(frozen=True)
class StackConfig:
    name: str
    project_root: Path
    config_file: Path
    #: The `config:` mapping as written (secure values stay encrypted objects).
    config: dict[str, Any]

    @property
    def decision_file(self) -> Path:
        value = self.config.get(CONFIG_DECISION_FILE)
        if not isinstance(value, str) or not value:
            raise InvalidInput(
                f"{self.config_file}: stack {self.name!r} does not name its decision file",
                hint=f"add `{CONFIG_DECISION_FILE}: path/to/decisions.yaml` under `config:`",
            )
        return self._project_path(value)

    @property
    def plan_file(self) -> Path | None:
        """The plan file the stack config names; None: the default beside the decision file."""
        value = self.config.get(CONFIG_PLAN_FILE)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"{self.config_file}: `{CONFIG_PLAN_FILE}` must be a path",
                               hint=f"e.g. `{CONFIG_PLAN_FILE}: decisions/shop.plan.json`")
        return self._project_path(value)

    def _project_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else self.project_root / path


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder holding Pulumi.yaml (AGENTDEPLOY_PROJECT overrides)."""
    env = os.environ.get("AGENTDEPLOY_PROJECT")
    if env:
        root = Path(env).resolve()
        if (root / "Pulumi.yaml").is_file():
            return root
        raise InvalidInput(f"AGENTDEPLOY_PROJECT={env} has no Pulumi.yaml")
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "Pulumi.yaml").is_file():
            return folder
    raise InvalidInput(
        f"no Pulumi.yaml in {here} or any parent folder",
        hint="run from an agentdeploy project, or set AGENTDEPLOY_PROJECT",
    )


def stack_config_dir(project_root: Path) -> Path:
    project = yaml.safe_load((project_root / "Pulumi.yaml").read_text()) or {}
    return project_root / str(project.get("stackConfigDir", "."))


def list_stacks(project_root: Path) -> list[str]:
    folder = stack_config_dir(project_root)
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in folder.glob("Pulumi.*.yaml"))


def load_stack_config(name: str, project_root: Path | None = None) -> StackConfig:
    root = project_root or find_project_root()
    path = stack_config_dir(root) / f"Pulumi.{name}.yaml"
    if not path.is_file():
        known = list_stacks(root)
        raise InvalidInput(
            f"stack {name!r} does not exist (no {path.relative_to(root)})",
            hint=f"known stacks: {', '.join(known) or 'none'}; create {path.relative_to(root)} to add one",
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InvalidInput(f"{path}: not valid YAML ({err})") from None
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise InvalidInput(f"{path}: `config:` must be a mapping")
    return StackConfig(name=name, project_root=root, config_file=path, config=config)
