"""`python -m agentdeploy ...` runs the `deploy` CLI (for environments where scripts are not on PATH)."""

from agentdeploy.cli.main import main

main()
