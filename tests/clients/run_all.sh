#!/usr/bin/env bash
# Runs the four client scripts (web3.py, ethers, viem, cast) against one chain, in sequence.
#   tests/clients/run_all.sh RPC_URL WS_URL [REGISTRY]
# REGISTRY: ModelRegistry address (default: the Lattice genesis address 0x4c61…0001), or the
# word `deploy` to deploy a fresh one first with deploy_registry.mjs (for chains without it, e.g. anvil).
# Exits non-zero if any script fails (all four run regardless). Env CLIENTS="web3 ethers viem cast"
# picks a subset; PYTHON overrides the interpreter (default tests/clients/.venv/bin/python).
# Set up once with tests/clients/setup.sh.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ $# -lt 2 ]]; then
  echo "usage: $0 RPC_URL WS_URL [REGISTRY|deploy]" >&2
  exit 2
fi
export RPC_URL="$1" WS_URL="$2"
REG="${3:-0x4c61747469636500000000000000000000000001}"
if [[ "$REG" == deploy ]]; then
  if ! REG="$(node "$HERE/deploy_registry.mjs")"; then
    echo "FAIL run_all: deploying ModelRegistry failed"
    exit 1
  fi
  echo "run_all: deployed ModelRegistry at $REG"
fi
export REGISTRY="$REG"
PY="${PYTHON:-$HERE/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3)"
TIMEOUT_S="${CLIENT_TIMEOUT_S:-180}"

declare -A CMD=(
  [web3]="$PY $HERE/web3_client.py"
  [ethers]="node $HERE/ethers.mjs"
  [viem]="node $HERE/viem.mjs"
  [cast]="bash $HERE/cast.sh"
)
failed=()
for name in ${CLIENTS:-web3 ethers viem cast}; do
  [[ -n "${CMD[$name]:-}" ]] || { echo "run_all: unknown client $name" >&2; exit 2; }
  echo "=== $name: ${CMD[$name]} (RPC_URL=$RPC_URL WS_URL=$WS_URL REGISTRY=$REGISTRY)"
  start=$SECONDS
  # shellcheck disable=SC2086
  timeout --kill-after=5 "$TIMEOUT_S" ${CMD[$name]}
  rc=$?
  if [[ $rc -ne 0 ]]; then
    [[ $rc -eq 124 ]] && echo "FAIL $name: timed out after ${TIMEOUT_S}s"
    echo "=== $name FAILED (exit $rc, $((SECONDS - start))s)"
    failed+=("$name")
  else
    echo "=== $name passed ($((SECONDS - start))s)"
  fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "run_all: FAILED: ${failed[*]}"
  exit 1
fi
echo "run_all: all passed"
