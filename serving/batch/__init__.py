"""The gateway's batch room: Message Batches for batch-route agents, at batch prices.

A batch agent's requests go to the Message Batches API (50% off every token, caching inside the
batch) instead of the realtime path, which refuses them (admission.py). The room takes a batch in
the Anthropic shape (`/v1/messages/batches`) or the OpenAI shape (`/v1/files` + `/v1/batches`),
prepares each request as the plan says (prepare.py), splits it within the API's limits
(limits.py), reserves its worst case at batch prices, submits it with the agent's upstream key
(upstream.py) and settles the budget from each result's usage once it ends (room.py).
"""
