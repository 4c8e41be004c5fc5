"""Writes crates/import/tests/data/tiny-gpt2-bin/pytorch_model.bin: the tiny GPT-2 of
crates/runtime/tests/data/tiny-gpt2 saved as a PyTorch checkpoint (torch.save of the state
dict, zip format, lm_head.weight tied to wte as transformers saves it), so the import's
.bin -> safetensors conversion can be checked against the safetensors twin.

Run with the torch venv: /work/pyenv/torch/bin/python tests/models/make_bin_fixture.py
"""

import pathlib

import torch
from safetensors.torch import load_file

root = pathlib.Path(__file__).resolve().parents[2]
src = root / "crates/runtime/tests/data/tiny-gpt2/model.safetensors"
out = root / "crates/import/tests/data/tiny-gpt2-bin/pytorch_model.bin"

state = load_file(str(src))
# transformers ties the LM head to the token embedding; the checkpoint shares the storage.
state["lm_head.weight"] = state["transformer.wte.weight"]
out.parent.mkdir(parents=True, exist_ok=True)
torch.save(state, str(out))
print(out, out.stat().st_size)
