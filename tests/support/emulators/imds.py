"""A local EC2 instance metadata service (IMDSv2) for tests of the node agent.

Faithful where the node agent depends on it:
- a session token first: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds`
  (1..21600, else 400); every metadata GET without a valid token gets 401 (IMDSv2 required);
- `/latest/meta-data/spot/instance-action`: 404 until an interruption is set, then 200 with
  `{"action": "terminate|stop|hibernate", "time": "YYYY-MM-DDTHH:MM:SSZ"}`; the legacy
  `/latest/meta-data/spot/termination-time` follows it;
- `/latest/meta-data/events/recommendations/rebalance`: 404, then `{"noticeTime": "...Z"}`;
- `/latest/meta-data/autoscaling/target-lifecycle-state`: "InService" until set (e.g. to
  "Terminated", as the group does on scale-in); 404 when the emulated instance is in no group;
- identity paths: instance-id, instance-type, placement/availability-zone, placement/region,
  and `tags/instance/aws:autoscaling:groupName` when a group name is given.

Control (tests): methods `interrupt()`, `recommend_rebalance()`, `set_target_lifecycle_state()`,
`clear()` (the notices only) in-process, or HTTP
  POST   /_emulator/spot-interruption      {"action": "terminate", "in_seconds": 120}
  POST   /_emulator/rebalance              {}
  POST   /_emulator/target-lifecycle-state {"state": "Terminated"}  (null: in no group, 404)
  DELETE /_emulator/notices
  GET    /_emulator/requests           [[method, path, status], ...]

Run from the repository root: python -m tests.support.emulators.imds --port 8769 --instance-id i-0123456789abcdef0
"""

from __future__ import annotations

import argparse
import json
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"
MAX_TOKEN_TTL_S = 21600
SPOT_ACTIONS = ("terminate", "stop", "hibernate")
#: The steady states Auto Scaling publishes as autoscaling/target-lifecycle-state.
TARGET_LIFECYCLE_STATES = ("InService", "Terminated", "Detached", "Standby", "Warmed:Hibernated",
                           "Warmed:Running", "Warmed:Stopped", "Warmed:Terminated")


def imds_time(at: datetime) -> str:
    """IMDS's timestamp format: UTC, whole seconds, trailing Z."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _QuietServer(ThreadingHTTPServer):
    """A client that gives up mid-request (its own timeout) is normal here, not a traceback."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        pass


class ImdsEmulator:
    """The metadata state plus an HTTP server on loopback, run in a daemon thread."""

    def __init__(
        self,
        instance_id: str = "i-0123456789abcdef0",
        *,
        region: str = "us-east-1",
        availability_zone: str | None = None,
        instance_type: str = "g6.xlarge",
        autoscaling_group: str | None = None,
        target_lifecycle_state: str | None = "InService",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.instance_id = instance_id
        self.region = region
        self.availability_zone = availability_zone or f"{region}a"
        self.instance_type = instance_type
        self.autoscaling_group = autoscaling_group
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}
        self._spot_action: dict[str, str] | None = None
        self._rebalance: dict[str, str] | None = None
        self._target_state: str | None = None
        self.set_target_lifecycle_state(target_lifecycle_state)
        self.requests: list[tuple[str, str, int]] = []
        self._server = _QuietServer((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ImdsEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="imds-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ImdsEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------
    def interrupt(self, action: str = "terminate", in_seconds: float = 120.0) -> dict[str, str]:
        """Issue a spot interruption notice taking effect `in_seconds` from now."""
        if action not in SPOT_ACTIONS:
            raise ValueError(f"action must be one of {SPOT_ACTIONS}, not {action!r}")
        notice = {"action": action, "time": imds_time(datetime.now(UTC) + timedelta(seconds=in_seconds))}
        with self._lock:
            self._spot_action = notice
        return notice

    def recommend_rebalance(self) -> dict[str, str]:
        notice = {"noticeTime": imds_time(datetime.now(UTC))}
        with self._lock:
            self._rebalance = notice
        return notice

    def set_target_lifecycle_state(self, state: str | None) -> str | None:
        """What the group says it is moving the instance to; None: the instance is in no group."""
        if state is not None and state not in TARGET_LIFECYCLE_STATES:
            raise ValueError(f"state must be one of {TARGET_LIFECYCLE_STATES} or null, not {state!r}")
        with self._lock:
            self._target_state = state
        return state

    def clear(self) -> None:
        with self._lock:
            self._spot_action = None
            self._rebalance = None

    # -- metadata ----------------------------------------------------------------------------
    def issue_token(self, ttl_s: int) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.monotonic() + ttl_s
        return token

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._tokens.get(token or "")
        return expiry is not None and time.monotonic() < expiry

    def metadata(self, path: str) -> str | None:
        """The body for a metadata path under /latest/meta-data/, or None (404)."""
        with self._lock:
            spot, rebalance, target = self._spot_action, self._rebalance, self._target_state
        static = {
            "instance-id": self.instance_id,
            "instance-type": self.instance_type,
            "placement/availability-zone": self.availability_zone,
            "placement/region": self.region,
            "local-ipv4": "127.0.0.1",
        }
        if self.autoscaling_group:
            static["tags/instance"] = "aws:autoscaling:groupName"
            static["tags/instance/aws:autoscaling:groupName"] = self.autoscaling_group
        if path in static:
            return static[path]
        if path == "spot/instance-action" and spot:
            return json.dumps(spot)
        if path == "spot/termination-time" and spot and spot["action"] == "terminate":
            return spot["time"]
        if path == "events/recommendations/rebalance" and rebalance:
            return json.dumps(rebalance)
        if path == "autoscaling/target-lifecycle-state" and target:
            return target
        return None


def _handler_for(emulator: ImdsEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: object) -> None:  # quiet: tests read .requests
            pass

        def _reply(self, status: int, body: str = "", content_type: str = "text/plain") -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            emulator.requests.append((self.command, self.path, status))

        def _body(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            return json.loads(raw) if raw.strip() else {}

        def do_PUT(self) -> None:
            if self.path != "/latest/api/token":
                return self._reply(404, "404 - Not Found")
            self._body()
            try:
                ttl = int(self.headers.get(TOKEN_TTL_HEADER, ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= MAX_TOKEN_TTL_S:
                return self._reply(400, "400 - Bad Request")
            self._reply(200, emulator.issue_token(ttl))

        def do_GET(self) -> None:
            if self.path == "/_emulator/requests":
                return self._reply(200, json.dumps(emulator.requests), "application/json")
            prefix = "/latest/meta-data/"
            if not self.path.startswith(prefix):
                return self._reply(404, "404 - Not Found")
            if not emulator.token_valid(self.headers.get(TOKEN_HEADER)):
                return self._reply(401, "401 - Unauthorized")
            body = emulator.metadata(self.path[len(prefix):].rstrip("/"))
            if body is None:
                return self._reply(404, "404 - Not Found")
            ctype = "application/json" if body.startswith("{") else "text/plain"
            self._reply(200, body, ctype)

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path == "/_emulator/spot-interruption":
                    notice = emulator.interrupt(body.get("action", "terminate"), float(body.get("in_seconds", 120)))
                    return self._reply(200, json.dumps(notice), "application/json")
                if self.path == "/_emulator/rebalance":
                    return self._reply(200, json.dumps(emulator.recommend_rebalance()), "application/json")
                if self.path == "/_emulator/target-lifecycle-state":
                    if "state" not in body:
                        raise ValueError('body must be {"state": "<target lifecycle state>" | null}')
                    state = emulator.set_target_lifecycle_state(body["state"])
                    return self._reply(200, json.dumps({"state": state}), "application/json")
            except (ValueError, TypeError) as e:
                return self._reply(400, json.dumps({"error": str(e)}), "application/json")
            self._reply(404, "404 - Not Found")

        def do_DELETE(self) -> None:
            if self.path == "/_emulator/notices":
                emulator.clear()
                return self._reply(204)
            self._reply(404, "404 - Not Found")

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local EC2 instance metadata (IMDSv2) emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8769)
    parser.add_argument("--instance-id", default="i-0123456789abcdef0")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--autoscaling-group", default=None)
    parser.add_argument("--target-lifecycle-state", default="InService",
                        help="initial autoscaling/target-lifecycle-state; empty: in no group (404)")
    args = parser.parse_args(argv)
    emulator = ImdsEmulator(
        args.instance_id, region=args.region, autoscaling_group=args.autoscaling_group,
        target_lifecycle_state=args.target_lifecycle_state or None, host=args.host, port=args.port,
    )
    print(f"IMDS emulator on {emulator.url}", flush=True)
    try:
        emulator._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        emulator._server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
