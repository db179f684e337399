"""agentdeploy: decide each LLM agent's corner of the cost/latency/quality triangle, then deploy it.

The code lives in the card's top-level folders, installed under this one import root:
planner/ (decision core), cli/, serving/, stacks/ (Pulumi program), templates/.
"""

__version__ = "0.1.0"
