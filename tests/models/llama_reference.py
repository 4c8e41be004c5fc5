#!/usr/bin/env python3
"""Reference token ids for the GGUF llama runtime (crates/runtime/src/llama.rs).

Loads SmolLM2-135M-Instruct.Q4_1.gguf with Hugging Face transformers (which dequantizes every
tensor to float32) and records, for a few fixed prompts, the prompt's token ids and PyTorch's
greedy continuation; for a set of extra strings (unicode, digits, special tokens) only the ids.
Writes crates/runtime/tests/data/smollm2_reference.json, which crates/runtime/tests/llama.rs
checks the Rust tokenizer and generation against.

Usage (the model cache comes from tests/models/fetch.sh):

    /work/pyenv/torch/bin/python tests/models/llama_reference.py [--models DIR] [--out FILE]

Needs torch, transformers and gguf. Prints PyTorch's decode speed with torch.set_num_threads(2).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
NEW_TOKENS = 24

# Raw-text prompts generated from (no template).
PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
    "Water boils at 100 degrees Celsius and freezes at",
]
# One user message put through the chat template.
CHAT_MESSAGES = [
    "What is the tallest mountain in the world?",
]
# Strings only tokenized.
TOKENIZE_ONLY = [
    "Hello, world!",
    "  leading spaces and\ttabs\nnewlines\n\n",
    "Unicode: café, naïve, Zürich, 東京, emoji 🦀🚀, Ελληνικά, ру́сский",
    "Numbers 1234567 and 3.14159, year 2024",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
    "I'm sure it's what they've said: don't!",
    "",
]


def models_dir(arg):
    if arg:
        return arg
    out = subprocess.run(
        ["bash", os.path.join(ROOT, "tests", "models", "fetch.sh")],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", help="the test-model cache (default: run fetch.sh)")
    ap.add_argument(
        "--out",
        default=os.path.join(
            ROOT, "crates", "runtime", "tests", "data", "smollm2_reference.json"
        ),
    )
    args = ap.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    d = os.path.join(models_dir(args.models), "smollm2")
    tok = AutoTokenizer.from_pretrained(d, gguf_file=GGUF)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=GGUF, dtype=torch.float32)
    model.eval()

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    def greedy(prompt_ids):
        x = torch.tensor([prompt_ids])
        with torch.no_grad():
            out = model.generate(
                x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                eos_token_id=None,  # run the full length; the test handles EOS itself
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else 0,
            )
        return out[0, len(prompt_ids):].tolist()

    generations = []
    for p in PROMPTS:
        pid = ids(p)
        generations.append({"prompt": p, "chat": False, "prompt_ids": pid, "greedy": greedy(pid)})
    for m in CHAT_MESSAGES:
        text = tok.apply_chat_template(
            [{"role": "user", "content": m}], tokenize=False, add_generation_prompt=True
        )
        pid = ids(text)
        generations.append(
            {"prompt": text, "chat": True, "user_message": m, "prompt_ids": pid, "greedy": greedy(pid)}
        )

    # Decode speed: one prompt, 64 new tokens, KV cache on, 2 threads.
    x = torch.tensor([ids(PROMPTS[2])])
    with torch.no_grad():
        model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=4, do_sample=False)
        t0 = time.perf_counter()
        out = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=64,
            min_new_tokens=64,
            do_sample=False,
        )
        dt = time.perf_counter() - t0
    n = out.shape[1] - x.shape[1]
    tps = n / dt
    print(f"pytorch {torch.__version__} float32, 2 threads: {n} tokens in {dt:.2f} s = {tps:.1f} tokens/s")

    ref = {
        "model": GGUF,
        "generator": f"transformers {__import__('transformers').__version__}, torch {torch.__version__}, float32 (dequantized GGUF)",
        "new_tokens": NEW_TOKENS,
        "eos_token_id": tok.eos_token_id,
        "bos_token_id": tok.bos_token_id,
        "generations": generations,
        "tokenize": [{"text": t, "ids": ids(t)} for t in TOKENIZE_ONLY],
        "pytorch_tokens_per_s_2_threads": round(tps, 1),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for g in generations:
        print(repr(g["prompt"]), "->", repr(tok.decode(g["greedy"])))
    print("wrote", args.out, file=sys.stderr)


if __name__ == "__main__":
    main()
