#!/usr/bin/env bash
# Runtime benchmark: lattice's MiniLM-L6 embedding paths against Python peers
# (onnxruntime int8, onnxruntime fp32, PyTorch fp32), batch 1 and 32, 2 threads; and SmolLM2-135M
# greedy decode tokens/s against PyTorch (transformers on the same GGUF, dequantized to fp32).
#
#   bench/runtime/run.sh [peers.py args, e.g. --iters 50]
#
# Environment:
#   LATTICE_BENCH_VENV   venv for the peers (default ~/.cache/lattice/bench-venv, created from
#                        tests/models/requirements-bench.txt if missing; e.g. /work/pyenv/torch
#                        reuses an existing one)
#   LATTICE_BIN          lattice binary (default target/release/lattice); must support
#                        `bench runtime --json`
#   LATTICE_BENCH_ARGS   extra args for `lattice bench runtime --json`
#   LATTICE_TEST_MODELS  model cache (see tests/models/fetch.sh)
#   PYTHON               python used to create the venv (default python3)
#
# Both sides print JSON lines {"runtime","model","batch","threads","p50_ms","p90_ms","mean_ms",
# "iters"}; the table at the end gives lattice p50 / peer p50 per batch size (< 1: lattice faster).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"

echo "== models" >&2
models="$(bash tests/models/fetch.sh)"
export LATTICE_TEST_MODELS="$models"
echo "$models" >&2

echo "== venv" >&2
venv="${LATTICE_BENCH_VENV:-$HOME/.cache/lattice/bench-venv}"
req="tests/models/requirements-bench.txt"
if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating $venv from $req" >&2
    "${PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet -r "$req" >&2
fi
if ! "$venv/bin/python" -c 'import torch, transformers, tokenizers, onnxruntime, onnx, numpy' 2>/dev/null; then
    echo "error: $venv lacks the packages of $req; run: $venv/bin/python -m pip install -r $req" >&2
    exit 1
fi

out="$(mktemp -d "${TMPDIR:-/tmp}/lattice-bench.XXXXXX")"
trap 'rm -rf "$out"' EXIT

echo "== peers (python)" >&2
"$venv/bin/python" bench/runtime/peers.py --models "$models" "$@" | tee "$out/peers.jsonl"

echo "== lattice" >&2
bin="${LATTICE_BIN:-target/release/lattice}"
lattice_status=0
if [[ ! -x "$bin" ]]; then
    echo "error: lattice binary '$bin' not found or not executable (build it with" \
         "'cargo build --release', or set LATTICE_BIN)" >&2
    lattice_status=2
    : > "$out/lattice.jsonl"
else
    # shellcheck disable=SC2086
    if ! "$bin" bench runtime --json ${LATTICE_BENCH_ARGS:-} > "$out/lattice.raw"; then
        echo "error: '$bin bench runtime --json' failed (does this build have the runtime bench?)" >&2
        lattice_status=3
    fi
    grep '^{' "$out/lattice.raw" | tee "$out/lattice.jsonl" || true
    if [[ $lattice_status -eq 0 && ! -s "$out/lattice.jsonl" ]]; then
        echo "error: '$bin bench runtime --json' printed no JSON lines" >&2
        lattice_status=3
    fi
fi

echo "== table" >&2
"$venv/bin/python" - "$out/peers.jsonl" "$out/lattice.jsonl" <<'PY'
import json, sys

def load(path, side):
    rows = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            if "batch" not in r or "p50_ms" not in r:
                continue  # e.g. generation lines without latency percentiles
            for k in ("p90_ms", "mean_ms"):
                r.setdefault(k, float("nan"))
            r.setdefault("threads", "?")
            r.setdefault("iters", "?")
            r["side"] = side
            rows.append(r)
    return rows

peers = load(sys.argv[1], "peer")
lattice = load(sys.argv[2], "lattice")
name = lambda r: f'{r["runtime"]}/{r["model"]}'

for batch in sorted({r["batch"] for r in peers + lattice}):
    ps = [r for r in peers if r["batch"] == batch]
    ls = [r for r in lattice if r["batch"] == batch]
    print(f"\nbatch {batch}")
    w = max([len(name(r)) for r in ps + ls] + [10])
    print(f'  {"side":8} {"runtime/model":{w}} {"threads":>7} {"p50 ms":>9} {"p90 ms":>9} {"mean ms":>9} {"iters":>6}')
    for r in ls + ps:
        print(f'  {r["side"]:8} {name(r):{w}} {r["threads"]:>7} {r["p50_ms"]:>9.3f} '
              f'{r["p90_ms"]:>9.3f} {r["mean_ms"]:>9.3f} {r["iters"]:>6}')
    family = lambda r: r["model"].split("-")[0]
    ls = [l for l in ls if any(family(l) == family(p) for p in ps)]
    if ls and ps:
        print(f"  ratio lattice p50 / peer p50 (< 1 = lattice faster; same model marked *)")
        cw = max(len(name(p)) for p in ps) + 1
        print(f'  {"":{w}} ' + " ".join(f"{name(p):>{cw}}" for p in ps))
        for l in ls:
            cells = []
            for p in ps:
                if family(l) != family(p):
                    cells.append(f'{"-":>{cw}}')
                else:
                    mark = "*" if l["model"] == p["model"] else " "
                    cells.append(f'{l["p50_ms"] / p["p50_ms"]:>{cw - 1}.2f}{mark}')
            print(f"  {name(l):{w}} " + " ".join(cells))
        if any(l["threads"] != p["threads"] for l in ls for p in ps):
            print("  warning: thread counts differ between lattice and peers")

def gen(path, side):
    out = []
    for line in open(path):
        if line.strip().startswith("{"):
            r = json.loads(line)
            if "tokens_per_s" in r:
                r["side"] = side
                out.append(r)
    return out

gp, gl = gen(sys.argv[1], "peer"), gen(sys.argv[2], "lattice")
if gp or gl:
    print("\ngeneration (SmolLM2-135M, greedy, decode tokens/s after the prompt)")
    for r in gl + gp:
        print(f'  {r["side"]:8} {name(r):32} {r.get("threads", "?"):>7} '
              f'{r["tokens_per_s"]:>8.1f} tokens/s  prompt {r.get("prompt_ms", float("nan")):>7.1f} ms  '
              f'{r.get("new_tokens", "?")} new tokens')
    for l in gl:
        for p in gp:
            print(f"  ratio {name(l)} / {name(p)} tokens/s: {l['tokens_per_s'] / p['tokens_per_s']:.2f} (> 1 = lattice faster)")
PY

if [[ $lattice_status -ne 0 ]]; then
    echo "lattice side missing or failed (status $lattice_status); peer numbers above only" >&2
fi
exit $lattice_status
