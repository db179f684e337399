"""The gateway's container image, built from this checkout and pushed to the stack's own ECR
repository by `deploy up` (pulumi-docker-build: BuildKit through the local Docker daemon).

No manual `docker build/push`: the task definition references the image by the digest the
push returned (`<repo>@sha256:...`), so a task can only ever run exactly what was built.
"""

from __future__ import annotations

from pathlib import Path

import pulumi
import pulumi_aws as aws

from agentdeploy import __version__
from agentdeploy.naming import ROLE_GATEWAY
from agentdeploy.stacks.common import tags


def image_ref(repository_url: str, digest: str) -> str:
    return f"{repository_url}@{digest}"


class GatewayImage(pulumi.ComponentResource):
    ref: pulumi.Output[str]

    def __init__(self, name: str, stack: str, project_root: Path, opts: pulumi.ResourceOptions | None = None):
        super().__init__("agentdeploy:gateway:GatewayImage", name, None, opts)
        import pulumi_docker_build as docker_build

        child = pulumi.ResourceOptions(parent=self)
        repo_name = f"agentdeploy-{stack}-gateway"
        repo = aws.ecr.Repository(f"{name}-repo", name=repo_name, force_delete=True,
                                  image_scanning_configuration={"scan_on_push": True},
                                  encryption_configurations=[{"encryption_type": "AES256"}],
                                  tags=tags(stack, repo_name, role=ROLE_GATEWAY), opts=child)
        auth = aws.ecr.get_authorization_token_output(registry_id=repo.registry_id, opts=pulumi.InvokeOutputOptions(parent=self))
        image = docker_build.Image(
            f"{name}-image", context={"location": str(project_root)},
            dockerfile={"location": str(project_root / "Dockerfile")},
            platforms=[docker_build.Platform.LINUX_AMD64], push=True,
            tags=[repo.repository_url.apply(lambda url: f"{url}:{__version__}")],
            registries=[{"address": repo.repository_url, "username": auth.user_name, "password": auth.password}],
            opts=child)
        self.ref = pulumi.Output.all(repo.repository_url, image.digest).apply(lambda v: image_ref(v[0], v[1]))
        self.register_outputs({"ref": self.ref})
