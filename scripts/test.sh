#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run it.
#   - the project with its dev extras (pytest, hypothesis, moto server, pulumi SDK, ...)
#   - Debian packages the tests run for real: redis-server, shellcheck, cloud-init (schema check),
#     systemd (systemd-analyze verify for the rendered units)
#   - vLLM on CPU in its own virtual environment (scripts/setup-vllm.sh), found through VLLM_PYTHON
# Then the habits that keep the layout honest: ruff over the tree, mypy over the package (strict
# on planner/ and serving/, see pyproject.toml), and the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/planner -x).
set -euo pipefail
cd "$(dirname "$0")/.."

# The GPU node's hash-pinned lock (templates/scripts/node-requirements.txt.j2) pins the same
# packages here: the tests run the versions a node installs, and a dependency released this
# morning cannot make the lock's check (scripts/lock-node-requirements.py --check) fail.
constraints="$(mktemp)"
sed -n 's/ --hash=sha256:[0-9a-f]*$//p' templates/scripts/node-requirements.txt.j2 > "$constraints"
python3 -m pip install -q --disable-pip-version-check -e '.[dev]' -c "$constraints"
rm -f "$constraints"

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v cloud-init >/dev/null || need+=(cloud-init)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VLLM_PYTHON="$(bash scripts/setup-vllm.sh | tail -n 1)"
export VLLM_PYTHON

echo "[test] ruff check" >&2
python3 -m ruff check .
echo "[test] mypy -p agentdeploy" >&2
python3 -m mypy -p agentdeploy

exec python3 -m pytest "$@"
