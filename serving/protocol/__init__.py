"""OpenAI Chat Completions <-> Anthropic Messages: requests, stream events, responses, usage.

Every upstream is asked to stream (the gateway needs time-to-first-token and stall detection
for non-streaming clients too); its stream is parsed into small canonical events, and those
are re-emitted in the client's protocol: as SSE for a streaming client, or collected into one
response body for a non-streaming one.

- events.py: the canonical event vocabulary and the stop-reason maps both directions share;
- requests.py: a client request rewritten for the upstream's protocol;
- parsers.py: upstream bytes -> SSE payloads -> canonical events (and upstream error bodies);
- writers.py: canonical events -> the client's SSE, one whole body, or an error body.
"""
