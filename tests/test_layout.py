"""The layout's rules, checked: data flows one way, rooms stay small, test servers never ship.

These are the habits issue 8 set (see the README's map): `serving/` is the runtime and imports
nothing from the planner or the render stage; no product module grows past 400 lines; class
names are unique across the package; the wheel (and so the gateway image and the GPU node,
which install it) carries no emulator.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ["agentdeploy", "planner", "cli", "serving", "stacks", "templates"]
MAX_LINES = 400


def _product_files() -> list[Path]:
    """Every product .py file once: agentdeploy/<folder> are links to the top-level folders."""
    files: list[Path] = []
    for folder in PRODUCT:
        for dirpath, _dirs, names in os.walk(ROOT / folder, followlinks=False):
            files += [Path(dirpath) / n for n in names if n.endswith(".py")]
    return sorted(files)


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return out


def test_the_import_root_links_every_top_level_folder() -> None:
    for folder in PRODUCT[1:]:
        link = ROOT / "agentdeploy" / folder
        assert link.is_symlink(), f"agentdeploy/{folder} is not a link"
        assert link.resolve() == ROOT / folder, f"agentdeploy/{folder} points at {link.resolve()}"


def test_serving_imports_nothing_from_the_planner_or_the_render_stage() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "serving").rglob("*.py")
        for module in _imports(path)
        if module.startswith(("agentdeploy.planner", "agentdeploy.templates", "agentdeploy.stacks", "agentdeploy.cli"))
    }
    assert not offenders, "serving/ is the runtime; render passes it what it needs:\n" + "\n".join(sorted(offenders))


def test_the_planner_imports_no_later_stage() -> None:
    offenders = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "planner").rglob("*.py")
        for module in _imports(path)
        if module.startswith(("agentdeploy.serving", "agentdeploy.templates", "agentdeploy.stacks", "agentdeploy.cli",
                              "agentdeploy.ops", "pulumi", "boto3"))
    }
    assert not offenders, "\n".join(sorted(offenders))


def test_no_product_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _product_files() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by job (at most {MAX_LINES} lines): {long}"


def test_class_names_are_unique_across_the_package() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in _product_files():
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(ROOT)))
    twice = {name: files for name, files in where.items() if len(files) > 1}
    assert not twice, f"one name, one class: {twice}"


def test_no_emulator_or_test_code_in_the_product_tree() -> None:
    names = {str(p.relative_to(ROOT)) for p in _product_files()}
    assert not [n for n in names if "emulator" in n], sorted(n for n in names if "emulator" in n)


def test_the_gateway_image_copies_no_tests() -> None:
    copies = [line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")]
    assert copies, "the Dockerfile copies nothing?"
    assert not [c for c in copies if c.startswith(("tests", "bench", "."))], copies


@pytest.mark.timeout(300)
def test_the_wheel_ships_no_emulator_and_every_package(tmp_path: Path) -> None:
    """Build the wheel as `pip install .` (and so the Dockerfile) would, from a copy of what git
    tracks (a build/ folder left in the checkout could carry deleted modules), and look inside."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    src = tmp_path / "src"
    for name in tracked.decode().split("\0"):
        if name and not name.startswith(("tests/", "bench/")) and (ROOT / name).exists():
            target = src / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if (ROOT / name).is_symlink():
                target.symlink_to(os.readlink(ROOT / name))
            else:
                shutil.copy2(ROOT / name, target)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, timeout=280)
    wheel = next((tmp_path / "dist").glob("agentdeploy-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "emulator" in n or n.startswith("tests/")], "test servers shipped"
    for module in ("agentdeploy/serving/app.py", "agentdeploy/serving/node/__main__.py",
                   "agentdeploy/planner/data/catalog.yaml", "agentdeploy/templates/gateway.py",
                   "agentdeploy/cli/main.py", "agentdeploy/stacks/program.py", "agentdeploy/py.typed"):
        assert module in names, f"{module} missing from the wheel"
