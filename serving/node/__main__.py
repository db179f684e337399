"""`python -m agentdeploy.serving.node`: run the node agent (see cli.py for its options)."""

from agentdeploy.serving.node.cli import main

raise SystemExit(main())
