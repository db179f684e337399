"""The node agent's wheel, built from this checkout and stored in the stack's own S3 bucket.

GPU nodes must not install our code by name from a public index (the name `agentdeploy` on
PyPI belongs to someone else). The program builds the wheel it is itself running from
(`pip wheel --no-deps`), uploads it under a key holding its SHA-256, and the node's install
script downloads that object through its instance role and refuses it unless the hash matches.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from agentdeploy import __version__
from agentdeploy.errors import MissingDependency
from agentdeploy.naming import ROLE_GPU_FLEET
from agentdeploy.stacks.common import tags


@dataclass(frozen=True)
class Wheel:
    path: Path
    sha256: str

    @property
    def key(self) -> str:
        return f"node/{self.sha256}/{self.path.name}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_wheel(project_root: Path, out_dir: Path) -> Path:
    """The project's wheel (no dependencies), as `pip install .` would build it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out_dir), str(project_root)],
                          capture_output=True, text=True, timeout=600)
    wheels = sorted(out_dir.glob(f"agentdeploy-{__version__}-*.whl"))
    if done.returncode != 0 or not wheels:
        raise MissingDependency("could not build the node agent's wheel from this checkout",
                                details=done.stderr.strip().splitlines()[-5:],
                                hint="run `pip wheel --no-deps -w dist .` in the project root to see why")
    return wheels[-1]


def resolve_wheel(configured: str | None, project_root: Path) -> Wheel:
    """The configured wheel file (agentdeploy:nodeWheel), else one built now into build/node-wheel."""
    path = Path(configured) if configured else build_wheel(project_root, project_root / "build" / "node-wheel")
    if not path.is_absolute():
        path = project_root / path
    if not path.is_file():
        raise MissingDependency(f"agentdeploy:nodeWheel {path} does not exist",
                                hint="build it with `pip wheel --no-deps -w dist .`, or unset nodeWheel to build it on `up`")
    return Wheel(path, sha256_of(path))


class NodeArtifacts(pulumi.ComponentResource):
    """A private, versioned, encrypted bucket holding what GPU nodes install."""

    bucket_name: pulumi.Output[str]
    object_arn: pulumi.Output[str]

    def __init__(self, name: str, stack: str, wheel: Wheel, opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:fleet:NodeArtifacts", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        t = lambda n: tags(stack, n, role=ROLE_GPU_FLEET)  # noqa: E731
        bucket = aws.s3.Bucket(f"{name}-bucket", force_destroy=True, tags=t(f"agentdeploy-{stack}-artifacts"), opts=child)
        aws.s3.BucketPublicAccessBlock(f"{name}-private", bucket=bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True, restrict_public_buckets=True,
                                       opts=child)
        obj = aws.s3.BucketObjectv2(f"{name}-node-wheel", bucket=bucket.id, key=wheel.key,
                                    source=pulumi.FileAsset(str(wheel.path)), checksum_algorithm="SHA256",
                                    server_side_encryption="AES256", tags=t(wheel.path.name), opts=child)
        self.bucket_name = bucket.bucket
        self.object_arn = pulumi.Output.concat(bucket.arn, "/", obj.key)
        self.wheel = wheel
        self.register_outputs({"bucket_name": self.bucket_name})
