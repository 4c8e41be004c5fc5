#!/usr/bin/env bash
# Black-box JSON-RPC checks of a dev chain with Foundry `cast` (tests/clients/node_modules/.bin/cast).
# Env: RPC_URL, REGISTRY, CHAIN_ID (optional). Needs node (JSON parsing); no jq.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
# The npm wrapper node_modules/.bin/cast (bin.mjs) always exits 0, even when cast fails: use the
# platform package's native binary, whose exit status the checks rely on.
CAST=""
for f in "$HERE"/node_modules/@foundry-rs/cast-*/bin/cast; do [[ -x "$f" ]] && CAST="$f" && break; done
[[ -n "$CAST" ]] || { echo "FAIL cast: no native cast binary under $HERE/node_modules/@foundry-rs/cast-*/bin (npm install --prefix tests/clients)"; exit 1; }
RPC_URL="${RPC_URL:-http://127.0.0.1:8545}"
REGISTRY="${REGISTRY:-0x4c61747469636500000000000000000000000001}"
K0=0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80
K1=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d
A0=0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266
export ETH_RPC_URL="$RPC_URL"
export FOUNDRY_DISABLE_NIGHTLY_WARNING=1
NAME=cast

# In a command substitution stdout is captured: say it on stderr too.
fail() { echo "FAIL $NAME: $*"; [[ $BASH_SUBSHELL -eq 0 ]] || echo "FAIL $NAME: $*" >&2; exit 1; }
ok() { echo "ok   $NAME: $*"; }
# eq WHAT GOT WANT
eq() { [[ "$2" == "$3" ]] || fail "$1: got '$2', want '$3'"; ok "$1 = $2"; }
# c ARGS...: runs cast; on failure prints its output and fails the check.
c() {
  local out
  if ! out="$("$CAST" "$@" 2>&1)"; then fail "cast $1 failed: $out"; fi
  printf '%s' "$out"
}
# j EXPR: evaluates a JS expression on stdin JSON bound to `o` (numbers as JS values; hex kept as strings).
j() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const o=JSON.parse(s);const v=eval(process.argv[1]);process.stdout.write(typeof v==="object"?JSON.stringify(v):String(v))})' "$1"; }
lower() { tr 'A-F' 'a-f'; }
dec() { node -e 'process.stdout.write(BigInt(process.argv[1]).toString())' "$1"; }
randhex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
send() { c send --timeout 30 --json "$@"; }

trap 'fail "unexpected error at line $LINENO"' ERR

# ------------------------------------------------------------------ basics
CHAIN=$(c chain-id)
[[ "$CHAIN" =~ ^[0-9]+$ && "$CHAIN" -gt 0 ]] || fail "chain-id not a positive integer: $CHAIN"
ok "chain-id = $CHAIN"
[[ -z "${CHAIN_ID:-}" ]] || eq "chain-id == CHAIN_ID" "$CHAIN" "$CHAIN_ID"
BN=$(c block-number)
[[ "$BN" =~ ^[0-9]+$ ]] || fail "block-number: $BN"
ok "block-number = $BN"
LATEST=$(c block latest --json)
BASEFEE=$(j 'o.baseFeePerGas' <<<"$LATEST")
[[ "$BASEFEE" =~ ^0x[0-9a-f]+$ ]] || fail "block latest has no baseFeePerGas: $BASEFEE"
ok "block latest baseFeePerGas = $BASEFEE ($(dec "$BASEFEE") wei)"
LN=$(dec "$(j 'o.number' <<<"$LATEST")")
[[ "$LN" -ge "$BN" ]] || fail "latest.number $LN < block-number $BN"
ok "block latest number $LN >= $BN"
BAL0=$(c balance "$A0")
[[ "$BAL0" =~ ^[0-9]+$ ]] && node -e 'process.exit(BigInt(process.argv[1]) > 10n**18n ? 0 : 1)' "$BAL0" || fail "account 0 balance: $BAL0"
ok "balance account 0 = $BAL0"

# ------------------------------------------------------------------ ETH transfer, exact deltas
TO=0x$(randhex 20)
VALUE=1000000000000000009
eq "fresh recipient balance" "$(c balance "$TO")" 0
B1=$(c balance "$A0")
R=$(send --private-key "$K0" "$TO" --value "$VALUE")
eq "transfer status" "$(j 'o.status' <<<"$R")" 0x1
eq "transfer gasUsed" "$(dec "$(j 'o.gasUsed' <<<"$R")")" 21000
eq "recipient balance" "$(c balance "$TO")" "$VALUE"
B2=$(c balance "$A0")
FEE=$(node -e 'process.stdout.write((BigInt(process.argv[1])*BigInt(process.argv[2])).toString())' "$(j 'o.gasUsed' <<<"$R")" "$(j 'o.effectiveGasPrice' <<<"$R")")
eq "sender delta == value + gasUsed*effectiveGasPrice" "$(node -e 'process.stdout.write((BigInt(process.argv[1])-BigInt(process.argv[2])).toString())' "$B1" "$B2")" \
  "$(node -e 'process.stdout.write((BigInt(process.argv[1])+BigInt(process.argv[2])).toString())' "$VALUE" "$FEE")"
TX=$(c tx "$(j 'o.transactionHash' <<<"$R")" --json)
eq "tx value" "$(dec "$(j 'o.value' <<<"$TX")")" "$VALUE"
eq "tx to" "$(j 'o.to' <<<"$TX" | lower)" "$(lower <<<"$TO")"

# ------------------------------------------------------------------ Counter via send --create
BYTECODE=$(node -e 'process.stdout.write(require(process.argv[1]).bytecode)' "$ROOT/contracts/artifacts/Counter.json")
DEPLOYED=$(node -e 'process.stdout.write(require(process.argv[1]).deployedBytecode)' "$ROOT/contracts/artifacts/Counter.json")
NONCE=$(c nonce "$A0" --block pending)
R=$(send --private-key "$K0" --create "$BYTECODE")
eq "deploy status" "$(j 'o.status' <<<"$R")" 0x1
COUNTER=$(j 'o.contractAddress' <<<"$R")
eq "deploy contractAddress == compute-address(nonce)" "$(lower <<<"$COUNTER")" \
  "$(c compute-address "$A0" --nonce "$NONCE" | sed 's/.*: //' | lower)"
DEPLOY_BLOCK=$(dec "$(j 'o.blockNumber' <<<"$R")")
[[ "$(c code "$COUNTER")" == "$DEPLOYED" ]] || fail "code != deployedBytecode"
ok "code == deployedBytecode (${#DEPLOYED} hex chars)"
eq "number() after deploy" "$(c call "$COUNTER" 'number()(uint256)')" 0

R=$(send --private-key "$K0" "$COUNTER" 'increment()')
H=$(j 'o.transactionHash' <<<"$R")
RC=$(c receipt "$H" --json)
eq "receipt status" "$(j 'o.status' <<<"$RC")" 0x1
eq "receipt logs count" "$(j 'o.logs.length' <<<"$RC")" 1
TOPIC0=$(c keccak 'Incremented(address,uint256)')
eq "receipt log topic0 == keccak(Incremented(address,uint256))" "$(j 'o.logs[0].topics[0]' <<<"$RC")" "$TOPIC0"
eq "receipt log topic1 == sender" "$(j 'o.logs[0].topics[1]' <<<"$RC")" "$(c abi-encode 'f(address)' "$A0")"
eq "receipt log data == 1" "$(dec "$(j 'o.logs[0].data' <<<"$RC")")" 1
eq "receipt log address" "$(j 'o.logs[0].address' <<<"$RC" | lower)" "$(lower <<<"$COUNTER")"
INC_BLOCK=$(dec "$(j 'o.blockNumber' <<<"$RC")")
eq "number() after increment" "$(c call "$COUNTER" 'number()(uint256)')" 1
eq "number() at increment block" "$(c call "$COUNTER" 'number()(uint256)' --block "$INC_BLOCK")" 1
eq "set(1000) status" "$(j 'o.status' <<<"$(send --private-key "$K1" "$COUNTER" 'set(uint256)' 1000)")" 0x1
R=$(send --private-key "$K1" "$COUNTER" 'increment()')
eq "increment by account 1 status" "$(j 'o.status' <<<"$R")" 0x1
INC2_BLOCK=$(dec "$(j 'o.blockNumber' <<<"$R")")
eq "number() == 1001" "$(c call "$COUNTER" 'number()(uint256)')" 1001
EST=$(c estimate "$COUNTER" 'increment()' --from "$A0")
[[ "$EST" -gt 21000 ]] || fail "estimate increment: $EST"
ok "estimate increment() = $EST"

if OUT=$("$CAST" call "$COUNTER" 'fail()' 2>&1); then fail "call fail() succeeded: $OUT"; fi
[[ "$OUT" == *"counter: nope"* ]] || fail "call fail() error lacks the revert reason: $OUT"
ok "call fail() reverts: $(tr '\n' ' ' <<<"$OUT" | cut -c1-100)"

LOGS=$(c logs --json --from-block "$DEPLOY_BLOCK" --to-block "$INC2_BLOCK" --address "$COUNTER" 'Incremented(address,uint256)')
eq "logs Incremented count" "$(j 'o.length' <<<"$LOGS")" 2
eq "logs Incremented values" "$(j 'o.map(l=>BigInt(l.data).toString()).join(",")' <<<"$LOGS")" "1,1001"
eq "logs Incremented blocks" "$(j 'o.map(l=>parseInt(l.blockNumber)).join(",")' <<<"$LOGS")" "$INC_BLOCK,$INC2_BLOCK"
LOGS=$(c logs --json --from-block "$DEPLOY_BLOCK" --to-block latest --address "$COUNTER" 'Incremented(address indexed,uint256)' 0x70997970C51812dc3A010C7d01b50e0d17dc79C8)
eq "logs Incremented(by=account 1) values" "$(j 'o.map(l=>BigInt(l.data).toString()).join(",")' <<<"$LOGS")" 1001

# ------------------------------------------------------------------ ModelRegistry
CODE=$(c code "$REGISTRY")
[[ "$CODE" != "0x" ]] || fail "no code at REGISTRY $REGISTRY"
ok "registry has code at $REGISTRY"
ROOT_CID=0x1220$(randhex 32)
MANIFEST_CID=0x1220$(randhex 32)
MODEL_ID=$(c keccak "$ROOT_CID")
SIG='registerModel(bytes,bytes,string,string,string,uint256,bool)'
COUNT0=$(c call "$REGISTRY" 'modelCount()(uint256)')
eq "registerModel call returns keccak(rootCid)" "$(c call "$REGISTRY" "$SIG(bytes32)" "$ROOT_CID" "$MANIFEST_CID" cast-model gguf qwen 5000000000 true --from "$A0")" "$MODEL_ID"
R=$(send --private-key "$K0" "$REGISTRY" "$SIG" "$ROOT_CID" "$MANIFEST_CID" cast-model gguf qwen 5000000000 true)
eq "registerModel status" "$(j 'o.status' <<<"$R")" 0x1
RBLOCK=$(j 'o.blockNumber' <<<"$R")
EV_TOPIC=$(c keccak 'ModelRegistered(bytes32,address,string,string,string,uint256,bool)')
EV=$(j "JSON.stringify(o.logs.find(l=>l.topics[0]==='$EV_TOPIC'))" <<<"$R")
[[ "$EV" != undefined ]] || fail "no ModelRegistered log in receipt"
eq "ModelRegistered topic1 (modelId)" "$(j 'o.topics[1]' <<<"$EV")" "$MODEL_ID"
eq "ModelRegistered topic2 (owner)" "$(j 'o.topics[2]' <<<"$EV")" "$(c abi-encode 'f(address)' "$A0")"
eq "ModelRegistered data (name,format,architecture,price,isPrivate)" \
  "$(c decode-abi --json 'f()(string,string,string,uint256,bool)' "$(j 'o.data' <<<"$EV")" | j o)" \
  '["cast-model","gguf","qwen",5000000000,true]'
LOGS=$(c logs --json --from-block "$RBLOCK" --to-block "$RBLOCK" --address "$REGISTRY" 'ModelRegistered(bytes32 indexed,address indexed,string,string,string,uint256,bool)' "$MODEL_ID")
eq "logs ModelRegistered(modelId) tx" "$(j 'o.map(l=>l.transactionHash).join(",")' <<<"$LOGS")" "$(j 'o.transactionHash' <<<"$R")"
eq "modelCount += 1" "$(c call "$REGISTRY" 'modelCount()(uint256)')" "$((COUNT0 + 1))"
TS=$(dec "$(j 'o.timestamp' <<<"$(c block "$RBLOCK" --json)")")
eq "getModel" "$(c call --json "$REGISTRY" 'getModel(bytes32)((bytes32,address,string,string,string,bytes,bytes,bytes,uint256,uint256,uint256,uint64,bool,bool))' "$MODEL_ID" | j 'o[0]')" \
  "[\"$MODEL_ID\",\"$A0\",\"cast-model\",\"gguf\",\"qwen\",\"$ROOT_CID\",\"$ROOT_CID\",\"$MANIFEST_CID\",0,5000000000,0,$TS,true,true]"
if OUT=$("$CAST" call "$REGISTRY" "$SIG" "$ROOT_CID" 0x cast-model gguf qwen 0 false --from "$A0" 2>&1); then fail "re-register succeeded"; fi
CIDUSED=$(c sig 'CidAlreadyUsed(bytes32)')
[[ "$OUT" == *"${CIDUSED}${MODEL_ID#0x}"* ]] || fail "re-register did not revert CidAlreadyUsed($MODEL_ID): $OUT"
ok "re-register reverts with data CidAlreadyUsed(modelId) = ${CIDUSED}${MODEL_ID#0x}"

eq "nonce pending == nonce latest (nothing queued)" "$(c nonce "$A0" --block pending)" "$(c nonce "$A0" --block latest)"
echo "PASS $NAME"
