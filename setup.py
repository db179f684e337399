"""One import root, `agentdeploy`, with the card's top-level folders kept where they are.

The design card fixes the top level (cli/, serving/, stacks/, templates/, planner/ ...);
installing them as generic top-level modules (`cli`, `serving`) would collide with other
packages. Each folder is linked into the import root (agentdeploy/serving -> ../serving), so
serving/app.py imports as agentdeploy.serving.app from a checkout, an editable install or a
wheel alike, and static tools (mypy, an IDE) resolve every agentdeploy.* name to its file
with no install-time mapping. A wheel holds real files: the build follows the links.
"""

from pathlib import Path

from setuptools import find_packages, setup

FOLDERS = ["planner", "cli", "serving", "stacks", "templates"]

ROOT = Path(__file__).resolve().parent
for folder in FOLDERS:
    link = ROOT / "agentdeploy" / folder
    if not (link.is_symlink() and link.resolve() == ROOT / folder):
        raise SystemExit(f"agentdeploy/{folder} must be a link to ../{folder} (git clone with symlinks enabled)")

setup(packages=find_packages(include=["agentdeploy", "agentdeploy.*"]))
