"""The node agent, one per GPU instance: `python -m agentdeploy.serving.node` (cli.py).

Each module does one job; `agent.NodeAgent` wires them together. notices.py / drain.py are
pure (parsing and decisions; vLLM's /metrics text is read by serving/prometheus.py, shared with
the gateway); imds.py, vllm_client.py, cloud.py and stopper.py are the side effects behind small
interfaces; health.py is the HTTP face; cli.py turns options and environment into settings.
"""
