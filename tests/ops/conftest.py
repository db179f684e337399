from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.ops.admin_server import admin_api  # noqa: F401  (fixture)
from tests.support.moto import aws, moto_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with two stacks: `shop` (three Claude agents) and `router` (GPU agents)."""
    root = tmp_path / "project"
    (root / "stacks").mkdir(parents=True)
    (root / "Pulumi.yaml").write_text("name: agentdeploy\nruntime: python\nstackConfigDir: stacks\n")
    for stack, example in (("shop", "service-business.yaml"), ("router", "high-volume-router.yaml")):
        shutil.copy(ROOT / "examples" / example, root / f"{stack}.yaml")
        (root / "stacks" / f"Pulumi.{stack}.yaml").write_text(f"config:\n  agentdeploy:decisionFile: {stack}.yaml\n")
    monkeypatch.setenv("AGENTDEPLOY_PROJECT", str(root))
    monkeypatch.setenv("AGENTDEPLOY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ANTHROPIC_ADMIN_KEY", raising=False)
    return root


@pytest.fixture
def gateway_shop(project: Path) -> Path:
    """`shop` with the gateway pinned in (the service business alone goes without one), so the
    gateway's SpendUSD is the stack's per-agent spend metric."""
    path = project / "shop.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["stack"]["gateway"] = True
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return project
