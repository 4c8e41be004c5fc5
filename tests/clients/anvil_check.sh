#!/usr/bin/env bash
# Proves the client scripts against the reference dev chain: starts anvil (tests/clients/node_modules)
# on PORT (default 8599), deploys ModelRegistry, runs run_all.sh, stops anvil.
#   tests/clients/anvil_check.sh [PORT] [extra anvil args, e.g. --block-time 1]
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${1:-8599}"
shift || true
ANVIL=""
# The npm wrapper (node_modules/.bin/anvil) works too, but the native binary is killed cleanly.
for f in "$HERE"/node_modules/@foundry-rs/anvil-*/bin/anvil; do [[ -x "$f" ]] && ANVIL="$f" && break; done
[[ -n "$ANVIL" ]] || { echo "anvil_check: no native anvil under $HERE/node_modules/@foundry-rs (run tests/clients/setup.sh)"; exit 1; }
LOG="$(mktemp)"
"$ANVIL" --port "$PORT" "$@" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -f "$LOG"' EXIT
for _ in $(seq 50); do grep -q "Listening on" "$LOG" && break; sleep 0.2; done
grep -q "Listening on" "$LOG" || { echo "anvil_check: anvil did not start:"; cat "$LOG"; exit 1; }
"$HERE/run_all.sh" "http://127.0.0.1:$PORT" "ws://127.0.0.1:$PORT" deploy
