"""Map the card's top-level folders onto one import root, `agentdeploy`.

The design card fixes the top level (cli/, serving/, stacks/, templates/ ...); installing them
as generic top-level modules (`cli`, `serving`) would collide with other packages, so each
folder becomes a subpackage: serving/gateway.py imports as agentdeploy.serving.gateway.
"""
from setuptools import find_packages, setup

FOLDERS = ["planner", "cli", "serving", "stacks", "templates"]

packages = ["agentdeploy"] + [f"agentdeploy.{sub}" for sub in find_packages("agentdeploy")]
package_dir = {"agentdeploy": "agentdeploy"}
for folder in FOLDERS:
    packages.append(f"agentdeploy.{folder}")
    package_dir[f"agentdeploy.{folder}"] = folder
    for sub in find_packages(folder):
        packages.append(f"agentdeploy.{folder}.{sub}")
        package_dir[f"agentdeploy.{folder}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"

setup(packages=packages, package_dir=package_dir)
