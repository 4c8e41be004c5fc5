#!/usr/bin/env python3
"""Reference outputs for all-MiniLM-L6-v2, for crates/runtime's Rust tests.

Writes crates/runtime/tests/data/minilm_reference.json with, for a fixed list of sentences:

  * input_ids          per sentence, from the `tokenizers` library with minilm/tokenizer.json
                       as shipped (truncation LongestFirst max_length 128 kept) but padding
                       disabled (the file configures Fixed(128) padding);
  * pytorch_fp32.batched   embeddings from transformers BertModel (fp32, eval, inference_mode)
                       on ONE batch padded to the longest sentence (pad id 0, attention mask 0,
                       token_type_ids all 0), mean-pooled over the attention mask, L2-normalised
                       (what sentence-transformers does for this model);
  * pytorch_fp32.single    the same sentences run one at a time (no padding), and the max abs
                       difference between the two (the effect of padding);
  * onnx_int8          the same token ids (same padded batch) through onnxruntime on
                       minilm-int8/model.onnx, its last_hidden_state pooled the same way.

Floats are rounded to 7 significant digits.

Usage: python tests/models/minilm_reference.py [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tokenizers
import torch
import transformers
from transformers import BertModel

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "crates" / "runtime" / "tests" / "data" / "minilm_reference.json"

LONG = (
    "Lattice nodes gossip blocks and transactions over a peer-to-peer network, and every "
    "validator re-executes each block to check the state root before voting on it. When a "
    "transaction asks for an AI inference, the runtime loads the requested model, tokenizes "
    "the prompt deterministically, runs the forward pass on the CPU with a fixed number of "
    "threads, and writes the resulting embedding or classification into the receipt. Because "
    "all honest validators must agree bit for bit, or at least within a tolerance the protocol "
    "defines, the implementation avoids nondeterministic reductions, pins its dependencies, "
    "and tests its outputs against reference values computed independently in Python with "
    "PyTorch and ONNX Runtime, including sentences long enough to be truncated at 128 tokens."
)

SENTENCES = [
    "a",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "Blockchains replicate state across many machines that do not trust each other.",
    "Café crème, naïve façade, Ångström: déjà vu — “quoted” text… ½ × 3 ≥ 1",
    "東京は日本の首都です。Привет, как дела? 🙂🚀 emoji and CJK mixed in.",
    "   Leading and trailing whitespace, UPPER CASE and mixed-Case WORDS, numbers 12345 and 3.14159.   ",
    LONG,
]


def f7(a: np.ndarray) -> list:
    return [float(f"{float(v):.7g}") for v in np.asarray(a).reshape(-1)]


def pad(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = max(len(x) for x in ids)
    input_ids = np.zeros((len(ids), n), dtype=np.int64)
    mask = np.zeros((len(ids), n), dtype=np.int64)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = x
        mask[i, : len(x)] = 1
    return input_ids, mask, np.zeros_like(input_ids)


def mean_pool_normalise(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers Pooling(mean) + Normalize, in float32."""
    m = mask[..., None].astype(np.float32)
    summed = (hidden.astype(np.float32) * m).sum(axis=1)
    counts = np.clip(m.sum(axis=1), 1e-9, None)
    emb = summed / counts
    norm = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.clip(norm, 1e-12, None)


def torch_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    emb = (hidden * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
    return torch.nn.functional.normalize(emb, p=2, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=os.environ.get(
        "LATTICE_TEST_MODELS", str(Path.home() / ".cache/lattice/test-models")))
    args = ap.parse_args()
    models = Path(args.models)
    torch.set_num_threads(2)

    tok = tokenizers.Tokenizer.from_file(str(models / "minilm" / "tokenizer.json"))
    trunc = tok.truncation
    tok.no_padding()
    encs = tok.encode_batch(SENTENCES)
    ids = [e.ids for e in encs]
    assert all(all(t == 0 for t in e.type_ids) for e in encs)

    model = BertModel.from_pretrained(str(models / "minilm"), add_pooling_layer=False,
                                      torch_dtype=torch.float32)
    model.eval()

    input_ids, mask, types = pad(ids)
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(input_ids),
                    attention_mask=torch.from_numpy(mask),
                    token_type_ids=torch.from_numpy(types))
        batched = torch_pool(out.last_hidden_state, torch.from_numpy(mask)).numpy()
        single = []
        for x in ids:
            i1, m1, t1 = pad([x])
            o = model(input_ids=torch.from_numpy(i1), attention_mask=torch.from_numpy(m1),
                      token_type_ids=torch.from_numpy(t1))
            single.append(torch_pool(o.last_hidden_state, torch.from_numpy(m1)).numpy()[0])
        single = np.stack(single)
    # Cross-check the numpy pooling used for ONNX against the torch one.
    np.testing.assert_allclose(mean_pool_normalise(out.last_hidden_state.numpy(), mask),
                               batched, atol=1e-6)
    pad_diff = float(np.abs(batched - single).max())

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(models / "minilm-int8" / "model.onnx"), opts,
                                providers=["CPUExecutionProvider"])
    in_names = [i.name for i in sess.get_inputs()]
    feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
    onnx_out = sess.run(None, {k: feeds[k] for k in in_names})
    hidden = onnx_out[0]
    assert hidden.shape == (len(ids), input_ids.shape[1], 384), hidden.shape
    onnx_emb = mean_pool_normalise(hidden, mask)
    onnx_diff = float(np.abs(onnx_emb - batched).max())
    onnx_cos = (onnx_emb * batched).sum(axis=1)

    doc = {
        "model": "all-MiniLM-L6-v2 (minilm/ safetensors + config.json)",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "onnxruntime": ort.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "tokenizer": {
            "file": "minilm/tokenizer.json",
            "truncation": trunc,
            "padding": "disabled (file has Fixed(128), removed with no_padding())",
            "note": "token_type_ids are all 0 for single sentences",
        },
        "pooling": "mean over attention_mask (sum(h*m)/max(sum(m),1e-9)), then L2 normalise (eps 1e-12)",
        "batching": "batched = one batch of all sentences right-padded with id 0 / mask 0 to the longest",
        "sentences": [
            {"text": s, "input_ids": x, "num_tokens": len(x)} for s, x in zip(SENTENCES, ids)
        ],
        "pytorch_fp32": {
            "batched": [f7(e) for e in batched],
            "single": [f7(e) for e in single],
            "max_abs_diff_batched_vs_single": float(f"{pad_diff:.7g}"),
        },
        "onnx_int8": {
            "file": "minilm-int8/model.onnx",
            "graph_inputs": [{"name": i.name, "shape": [str(d) for d in i.shape], "type": i.type}
                             for i in sess.get_inputs()],
            "graph_outputs": [{"name": o.name, "shape": [str(d) for d in o.shape], "type": o.type}
                              for o in sess.get_outputs()],
            "pooled_output": sess.get_outputs()[0].name,
            "how": "same padded batch as pytorch_fp32.batched; output last_hidden_state mean-pooled over attention_mask and L2-normalised as above",
            "batched": [f7(e) for e in onnx_emb],
            "max_abs_diff_vs_pytorch_batched": float(f"{onnx_diff:.7g}"),
            "min_cosine_vs_pytorch_batched": float(f"{float(onnx_cos.min()):.7g}"),
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n")
    print("tokens per sentence:", [len(x) for x in ids])
    print(f"pytorch batched vs single max |d| = {pad_diff:.3g}")
    print(f"onnx int8 vs pytorch max |d| = {onnx_diff:.3g}, min cosine = {onnx_cos.min():.6f}")
    print(f"onnx inputs {in_names} outputs {[o.name for o in sess.get_outputs()]}")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
