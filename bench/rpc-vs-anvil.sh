#!/usr/bin/env bash
# Transfers/s through JSON-RPC and ModelRegistry eth_call latency: `lattice devnet` against
# anvil, same tool (`lattice bench rpc` / `lattice bench registry`), same N, same machine.
#
# Usage: bench/rpc-vs-anvil.sh [N transfers (50000)] [models (10000)]
#
# Environment:
#   SAMPLES=2000            eth_calls of each kind in the registry bench
#   RPC_ARGS=""             extra `lattice bench rpc` arguments (e.g. "--senders 200 --batch 500")
#   ANVIL=path              anvil binary (default: the one under tests/clients/node_modules)
#   ANVIL_ARGS="--block-time 1 --disable-block-gas-limit"
#       anvil's default automine stalls under this load (v1.7.1: with a few thousand
#       transactions pending it stops producing blocks while burning CPU), so anvil mines a
#       block a second instead, with no block gas limit so that its own speed, not the 30M gas
#       limit (1,428 transfers/s at 1 block/s), is what gets measured. Before the registry
#       latency run interval mining is switched off (evm_setIntervalMining 0), so no block
#       production disturbs the reads: anvil then idles like an automine node.
#   ANVIL_PORT=18545 LATTICE_PORT=18546
#   LATTICE_BIN=path        skip the release build and use this binary
#   ONLY=anvil|lattice      run one side only
#
# Each node runs alone (anvil is stopped before lattice starts). Results are kept as JSON in
# $OUT (default: a temporary folder, printed at the end).
set -uo pipefail

N=${1:-50000}
MODELS=${2:-10000}
SAMPLES=${SAMPLES:-2000}
RPC_ARGS=${RPC_ARGS:-}
ANVIL_ARGS=${ANVIL_ARGS:---block-time 1 --disable-block-gas-limit}
ANVIL_PORT=${ANVIL_PORT:-18545}
LATTICE_PORT=${LATTICE_PORT:-18546}
ONLY=${ONLY:-}

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUT=${OUT:-$(mktemp -d -t lattice-rpc-bench.XXXXXX)}
mkdir -p "$OUT"

if [[ -z ${ANVIL:-} ]]; then
    # The npm package's .bin/anvil is a node wrapper; run the real binary so `kill` stops it.
    ANVIL=$(ls "$ROOT"/tests/clients/node_modules/@foundry-rs/anvil-*/bin/anvil 2>/dev/null | head -n1)
    [[ -n $ANVIL ]] || ANVIL=$(command -v anvil || true)
fi

if [[ -n ${LATTICE_BIN:-} ]]; then
    LATTICE=$LATTICE_BIN
else
    echo "building lattice (release)..." >&2
    cargo build --release -p lattice >&2 || exit 1
    LATTICE="$ROOT/target/release/lattice"
fi
# Keep a private copy: others may rebuild target/ while this runs.
cp "$LATTICE" "$OUT/lattice" || exit 1
LATTICE="$OUT/lattice"

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rpc() { # url method params-json
    curl -sf -m 5 -X POST -H 'content-type: application/json' \
        -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "$1"
}

wait_rpc() { # url seconds
    for _ in $(seq 1 $(($2 * 10))); do
        rpc "$1" eth_chainId '[]' >/dev/null && return 0
        sleep 0.1
    done
    echo "no JSON-RPC answer from $1 after $2 s" >&2
    return 1
}

# bench_pair NAME URL DEPLOY_FLAG BEFORE_LATENCY_HOOK: rpc bench, then registry fill + latency.
bench_node() {
    local name=$1 url=$2 deploy=$3 hook=$4
    echo "== $name: lattice bench rpc --txs $N $RPC_ARGS" >&2
    # shellcheck disable=SC2086
    "$LATTICE" --json bench rpc --rpc "$url" --txs "$N" $RPC_ARGS >"$OUT/$name-rpc.json" ||
        echo "$name: bench rpc failed" >&2
    echo "== $name: lattice bench registry --models $MODELS (fill)" >&2
    "$LATTICE" --json bench registry --rpc "$url" --models "$MODELS" --samples 20 $deploy \
        >"$OUT/$name-fill.json" || {
        echo "$name: bench registry (fill) failed" >&2
        return 0
    }
    local registry
    registry=$(jq -r .registry "$OUT/$name-fill.json")
    $hook "$url"
    echo "== $name: lattice bench registry --samples $SAMPLES (latency)" >&2
    "$LATTICE" --json bench registry --rpc "$url" --models "$MODELS" --samples "$SAMPLES" \
        --registry "$registry" >"$OUT/$name-registry.json" ||
        echo "$name: bench registry failed" >&2
}

anvil_quiet() { rpc "$1" evm_setIntervalMining '[0]' >/dev/null; }
nothing() { :; }

if [[ $ONLY != lattice ]]; then
    if [[ -z $ANVIL || ! -x $ANVIL ]]; then
        echo "anvil not found (npm ci --prefix tests/clients, or set ANVIL=)" >&2
    else
        # shellcheck disable=SC2086
        "$ANVIL" --port "$ANVIL_PORT" --silent $ANVIL_ARGS >"$OUT/anvil.log" 2>&1 &
        PIDS+=($!)
        if wait_rpc "http://127.0.0.1:$ANVIL_PORT" 30; then
            bench_node anvil "http://127.0.0.1:$ANVIL_PORT" --deploy anvil_quiet
        fi
        cleanup
    fi
fi

if [[ $ONLY != anvil ]]; then
    if ! "$LATTICE" devnet --help >/dev/null 2>&1; then
        echo "lattice devnet not available in this build: skipped" >&2
    else
        mkdir -p "$OUT/devnet"
        "$LATTICE" devnet --instant --port "$LATTICE_PORT" --datadir "$OUT/devnet" \
            >"$OUT/devnet.out" 2>"$OUT/devnet.err" &
        PIDS+=($!)
        url=
        for _ in $(seq 1 600); do
            line=$(grep -m1 -o 'Listening on [0-9.:]*' "$OUT/devnet.out" 2>/dev/null)
            if [[ -n $line ]]; then
                url="http://${line#Listening on }"
                break
            fi
            kill -0 "${PIDS[-1]}" 2>/dev/null || break
            sleep 0.1
        done
        if [[ -z $url ]]; then
            echo "lattice devnet did not start (see $OUT/devnet.err):" >&2
            tail -n 5 "$OUT/devnet.err" >&2
        elif wait_rpc "$url" 30; then
            bench_node lattice "$url" "" nothing
        fi
        cleanup
    fi
fi

# ------------------------------------------------------------------------------ summary
field() { # file jq-filter
    [[ -s $1 ]] && jq -r "$2 // empty" "$1" 2>/dev/null
}
ratio() { # a b
    [[ -n $1 && -n $2 ]] && awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b }'
}

echo
echo "machine: $(nproc) cores, $(uname -sr); load before summary: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "anvil: $("$ANVIL" --version 2>/dev/null | head -n1) args: $ANVIL_ARGS"
printf '%-10s %12s %12s %8s %10s\n' node "transfers/s" "submit tx/s" blocks "max tx/blk"
for name in anvil lattice; do
    f="$OUT/$name-rpc.json"
    [[ -s $f ]] || continue
    printf '%-10s %12.0f %12.0f %8s %10s\n' "$name" "$(field "$f" .tx_per_s)" \
        "$(field "$f" .submit_tx_per_s)" "$(field "$f" .block_stats.blocks_with_txs)" \
        "$(field "$f" .block_stats.max_txs_per_block)"
done
a=$(field "$OUT/anvil-rpc.json" .tx_per_s)
l=$(field "$OUT/lattice-rpc.json" .tx_per_s)
if [[ -n $a && -n $l ]]; then
    echo "lattice / anvil: $(ratio "$l" "$a") (target >= 5x; lattice target >= 12500 transfers/s)"
fi

echo
printf '%-10s %7s %13s %13s %15s %15s\n' node models "getModel p50" "getModel p99" "listModels p50" "listModels p99"
for name in anvil lattice; do
    f="$OUT/$name-registry.json"
    [[ -s $f ]] || continue
    printf '%-10s %7s %10.3f ms %10.3f ms %12.3f ms %12.3f ms\n' "$name" "$(field "$f" .models)" \
        "$(field "$f" .get_model.p50_ms)" "$(field "$f" .get_model.p99_ms)" \
        "$(field "$f" .list_models.p50_ms)" "$(field "$f" .list_models.p99_ms)"
done
echo "(targets: getModel p99 < 1 ms, listModels(offset, 100) p99 < 5 ms)"
echo "JSON results: $OUT"
