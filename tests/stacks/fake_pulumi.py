#!/usr/bin/env python3
"""A stand-in `pulumi` executable: records its argv and answers with canned JSON.

It lets the tests check the project's own command construction (flags, --config-file,
--stack, backend and secrets-provider environment, event-log handling) on machines without
the Pulumi CLI. Behaviour is steered by files in $FAKE_PULUMI_DIR:
  stacks.txt   names of stacks that exist (one a line); `stack init` appends
  fail.txt     "<operation> [partial]": that operation fails (after one create if partial)
  log.jsonl    written: one {"argv", "cwd", "env"} per invocation
"""

import json
import os
import sys
import time
from pathlib import Path

STATE = Path(os.environ["FAKE_PULUMI_DIR"])
VERSION = "v3.190.0"  # below 3.205, so the Automation API reads engine events from a file
OUTPUTS = {
    "gatewayUrl": "http://gateway-123.us-east-1.elb.amazonaws.com",
    "agentEndpoints": {"intake": "ssm:/agentdeploy/dev/intake/config",
                       "ticket-router": "http://gateway-123.us-east-1.elb.amazonaws.com/agents/ticket-router"},
    "routes": {"intake": "api", "ticket-router": "gpu"},
}


def flag(argv, name):
    return argv[argv.index(name) + 1] if name in argv else None


def stacks():
    path = STATE / "stacks.txt"
    return path.read_text().split() if path.exists() else []


def events(argv, op, planning, fail, partial):
    log = flag(argv, "--event-log")
    if not log:
        return
    stack = flag(argv, "--stack")
    urn = lambda t, n: f"urn:pulumi:{stack}::agentdeploy::{t}::{n}"  # noqa: E731
    seq = iter(range(100))
    lines = [{"preludeEvent": {"config": {}}}]
    resources = [("aws:ec2/vpc:Vpc", "network-vpc"), ("aws:autoscaling/group:Group", "fleet-router-asg")]
    lines.append({"resourcePreEvent": {"metadata": {"op": "same", "urn": urn("pulumi:pulumi:Stack", f"agentdeploy-{stack}"), "type": "pulumi:pulumi:Stack", "provider": ""}, "planning": planning}})
    for i, (typ, name) in enumerate(resources):
        meta = {"op": op, "urn": urn(typ, name), "type": typ, "provider": ""}
        lines.append({"resourcePreEvent": {"metadata": meta, "planning": planning}})
        if fail and (i == 1 or not partial):
            lines.append({"resOpFailedEvent": {"metadata": meta, "status": 1, "steps": 1}})
            lines.append({"diagnosticEvent": {"message": f"creating {name}: api error UnauthorizedOperation\n", "color": "never", "severity": "error", "urn": meta["urn"]}})
            break
        lines.append({"resOutputsEvent": {"metadata": meta, "planning": planning}})
    if not fail:
        lines.append({"summaryEvent": {"maybeCorrupt": False, "durationSeconds": 1, "resourceChanges": {op: 2, "same": 1}, "PolicyPacks": {}}})
    lines.append({"cancelEvent": {}})  # the engine ends every event log with it; the watcher stops there
    with open(log, "a") as f:
        for line in lines:
            f.write(json.dumps({"sequence": next(seq), "timestamp": int(time.time()), **line}) + "\n")


def main(argv):
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "log.jsonl", "a") as f:
        env = {k: os.environ.get(k) for k in ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_SKIP_UPDATE_CHECK")}
        f.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}) + "\n")
    argv = [a for a in argv if a != "--non-interactive"]  # a global flag the Automation API puts first
    if argv[:1] == ["version"]:
        print(VERSION)
        return 0
    stack = flag(argv, "--stack")
    if argv[:2] == ["stack", "select"]:
        if stack in stacks():
            return 0
        print(f"error: no stack named '{stack}' found", file=sys.stderr)
        return 255
    if argv[:2] == ["stack", "init"]:
        with open(STATE / "stacks.txt", "a") as f:
            f.write(argv[2] + "\n")
        return 0
    if argv[:2] == ["stack", "output"]:
        print(json.dumps(OUTPUTS))
        return 0
    if argv[:2] == ["stack", "history"]:
        print(json.dumps([{"version": 3, "kind": "update", "startTime": "2026-11-23T18:00:00.000Z", "message": "",
                           "environment": {}, "config": {}, "result": "succeeded",
                           "endTime": "2026-11-23T18:01:00.000Z", "resourceChanges": {"create": 2, "same": 1}}]))
        return 0
    op_name = argv[0]
    if op_name in ("preview", "up", "destroy", "refresh"):
        fail_spec = (STATE / "fail.txt").read_text().split() if (STATE / "fail.txt").exists() else []
        fail = bool(fail_spec) and fail_spec[0] == op_name
        partial = "partial" in fail_spec
        op = {"preview": "create", "up": "create", "destroy": "delete", "refresh": "refresh"}[op_name]
        events(argv, op, op_name == "preview", fail, partial)
        if fail:
            print("error: update failed", file=sys.stderr)
            return 255
        print(f"{op_name}: done")
        return 0
    print(f"fake pulumi: unsupported command {argv}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
