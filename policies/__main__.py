"""Pulumi policy pack: `pulumi preview --policy-pack policies` (or `deploy`'s pipelines).

A thin wrapper: every check is a plain function in agentdeploy.stacks.policy, unit-tested on
its own; here each becomes a mandatory resource policy. Config (PulumiPolicy config or
`--policy-pack-config`): `asg-within-ceiling.maxReplicas` (default 16).
"""

from agentdeploy.stacks.policy_pack import build_pack

build_pack()
