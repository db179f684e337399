"""A deliberately cheap OpenAI-compatible streaming upstream for the gateway benchmark.

Raw asyncio protocol, canned bytes: it must cost the benchmark machine as little as possible
so the numbers measure the proxy in front of it, not this server. Every POST gets a chat
completion stream of `--chunks` content chunks (`--delay-ms` apart; the first arrives at
once), a finish chunk, a usage chunk and `data: [DONE]`. GET /metrics answers vLLM-style
gauges (the gateway polls them).

    python bench/gateway/fast_upstream.py --port 9100 --chunks 20 --delay-ms 5
"""

from __future__ import annotations

import argparse
import asyncio
import json


def _chunk(obj: dict) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def build_stream(chunks: int) -> tuple[bytes, list[bytes], bytes]:
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "bench-model"}
    head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + _chunk({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}))
    body = [_chunk({**base, "choices": [{"index": 0, "delta": {"content": f"word{i} "}, "finish_reason": None}]}) for i in range(chunks)]
    done = b"data: [DONE]\n\n"
    tail = (
        _chunk({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        + _chunk({**base, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": chunks, "total_tokens": 12 + chunks}})
        + f"{len(done):x}\r\n".encode() + done + b"\r\n0\r\n\r\n"
    )
    return head, body, tail


#: The loopback addresses the upstream listens on (the bench's replicas of one GPU agent).
REPLICA_ALIASES = (1, 2, 3)
METRICS = b'vllm:num_requests_running{model_name="bench-model"} 0.0\nvllm:num_requests_waiting{model_name="bench-model"} 0.0\n'
METRICS_RESP = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: " + str(len(METRICS)).encode() + b"\r\n\r\n" + METRICS


class Upstream(asyncio.Protocol):
    head: bytes
    body: list[bytes]
    tail: bytes
    delay: float

    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            headers = self.buf[:end].lower()
            length = 0
            i = headers.find(b"content-length:")
            if i >= 0:
                length = int(headers[i + 15 : headers.find(b"\r\n", i) if headers.find(b"\r\n", i) > 0 else None].strip())
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            if headers.startswith(b"get"):
                self.t.write(METRICS_RESP)
            elif self.delay <= 0:
                self.t.write(self.head + b"".join(self.body) + self.tail)
            else:
                self.t.write(self.head + self.body[0])
                loop = asyncio.get_running_loop()
                for n, piece in enumerate(self.body[1:] + [self.tail], 1):
                    loop.call_later(self.delay * n, self._write, piece)

    def _write(self, piece: bytes) -> None:
        if not self.t.is_closing():
            self.t.write(piece)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--chunks", type=int, default=20)
    p.add_argument("--delay-ms", type=float, default=0.0)
    a = p.parse_args()
    Upstream.head, Upstream.body, Upstream.tail = build_stream(a.chunks)
    Upstream.delay = a.delay_ms / 1000
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def serve():
        # Every loopback alias the bench names as a replica (127.0.0.1-3): one process, three "replicas".
        loop = asyncio.get_running_loop()
        servers = [await loop.create_server(Upstream, f"127.0.0.{i}", a.port, backlog=1024) for i in REPLICA_ALIASES]
        server = servers[0]
        print(f"fast upstream on {a.port}", flush=True)
        await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
