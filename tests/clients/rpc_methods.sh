#!/usr/bin/env bash
# Lists the JSON-RPC methods and param shapes each client script sends, by running each one
# through the logging proxy rpc_log.mjs in front of a running chain.
#   tests/clients/rpc_methods.sh RPC_URL REGISTRY [PROXY_PORT] [--reject m1,m2]
# e.g. (anvil on 8599, registry deployed with deploy_registry.mjs):
#   tests/clients/rpc_methods.sh http://127.0.0.1:8599 0x5FbDB2315678afecb367f032d93F642f64180aa3 8600 --reject anvil_nodeInfo,eth_fillTransaction
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TARGET="$1" REG="$2" PORT="${3:-8600}"
shift 3 || shift $#
DIR="$(mktemp -d)"
rc=0
for c in web3 ethers viem cast; do
  node "$HERE/rpc_log.mjs" --listen "$PORT" --target "$TARGET" --out "$DIR/$c.jsonl" "$@" 2>/dev/null &
  P=$!
  sleep 0.7
  CLIENTS=$c "$HERE/run_all.sh" "http://127.0.0.1:$PORT" "ws://127.0.0.1:$PORT" "$REG" >"$DIR/$c.out" 2>&1 || { rc=1; echo "($c FAILED, see $DIR/$c.out)"; }
  sleep 0.5
  kill $P; wait $P 2>/dev/null
  echo "## $c"
  node "$HERE/rpc_log.mjs" --summarize "$DIR/$c.jsonl"
done
exit $rc
