# The serving gateway's container image (ECS Fargate task in the provisioned stack).
# `deploy up` builds it from this file and pushes it to the stack's own ECR repository
# (stacks/components/gateway_image.py); the task runs it by digest. To use an image you built
# yourself instead: pulumi config set agentdeploy:gatewayImage <tag> --config-file stacks/Pulumi.<stack>.yaml
# Only the product folders are copied: the emulators and test servers live in tests/ and never ship.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.py README.md ./
COPY agentdeploy agentdeploy
COPY planner planner
COPY cli cli
COPY serving serving
COPY stacks stacks
COPY templates templates
RUN pip install --no-cache-dir ".[serving]" && useradd --system --uid 10001 gateway
USER gateway
EXPOSE 8080
# The stack's task definition writes the rendered config (env AGENTDEPLOY_GATEWAY_CONFIG) to
# /tmp/agentdeploy/gateway.yaml and runs `deploy serve`; run it yourself the same way:
CMD ["sh", "-c", "mkdir -p /tmp/agentdeploy && printf '%s' \"$AGENTDEPLOY_GATEWAY_CONFIG\" > /tmp/agentdeploy/gateway.yaml && exec deploy serve --config /tmp/agentdeploy/gateway.yaml --host 0.0.0.0 --port 8080"]
