"""Entry point for `pulumi preview/up` (Pulumi.yaml: main: stacks/) and `deploy up`.

The program is the installed package `agentdeploy` (pip install 'agentdeploy[cloud]'), so the
same code runs from a laptop, from CI with plain `pulumi up`, and under the tests' mocks.
"""

from agentdeploy.stacks.program import main

main()
