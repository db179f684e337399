"""Parse `vllm serve` argument lists with vLLM's OWN parser (runs inside the vLLM venv).

Why: a launcher test that compares our argv with our own expectations proves nothing about
vLLM; parsing it with the parser `vllm serve` uses does. Reads a JSON list of argument lists
(what follows `vllm serve`) on stdin and prints one JSON result per list:
{"ok": true, "args": {...namespace...}} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def _parse(argv: list[str]) -> dict:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            ns = parser.parse_args(argv)
            validate_parsed_serve_args(ns)
    except SystemExit as e:  # argparse reports bad flags/values by exiting 2
        lines = err.getvalue().strip().splitlines()  # usage text, then "vllm serve: error: ..."
        return {"ok": False, "error": lines[-1] if lines else f"exit {e.code}"}
    except Exception as e:  # vLLM's own validation
        return {"ok": False, "error": f"{type(e).__name__}: {e}"}
    return {"ok": True, "args": {k: v for k, v in vars(ns).items() if _jsonable(v)}}


def _jsonable(v: object) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def main() -> int:
    cases = json.load(sys.stdin)
    with contextlib.redirect_stdout(sys.stderr):  # vLLM may log on import; keep stdout JSON-only
        results = [_parse(argv) for argv in cases]
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
