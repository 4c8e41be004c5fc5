"""Small randomly initialised models for families no PyPI package ships weights of, saved as
safetensors with PyTorch's outputs on fixed inputs, so the Rust tests can compare without
PyTorch. Run with the bench venv (tests/models/requirements-bench.txt):

    python tests/models/make_fixtures.py [NAME ...]   # all, or only the named fixtures

Writes crates/runtime/tests/data/<name>/ (config.json, model.safetensors, tokenizer.json,
reference.json). Seeds are fixed; rerunning gives the same files.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import torch
from tokenizers import Tokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers
import numpy as np
from PIL import Image
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    RobertaConfig,
    RobertaForSequenceClassification,
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    ConvNextImageProcessor,
    ResNetConfig,
    ResNetForImageClassification,
    GenerationConfig,
    ViTConfig,
    ViTForImageClassification,
    WhisperConfig,
    WhisperFeatureExtractor,
    WhisperForConditionalGeneration,
)

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "crates/runtime/tests/data"
MODELS = Path(subprocess.check_output(["bash", str(ROOT / "tests/models/fetch.sh")], text=True).strip())

TEXTS = [
    "This movie was wonderful, I loved every minute.",
    "Terrible service and cold food.",
    "ok",
    "The results are mixed: some parts are great and others are not worth the time at all.",
]


def tokenizer(path):
    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    return tok


def batch(tok, texts, pad_id=0):
    enc = [tok.encode(t) for t in texts]
    n = max(len(e.ids) for e in enc)
    ids = [e.ids + [pad_id] * (n - len(e.ids)) for e in enc]
    mask = [[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in enc]
    return torch.tensor(ids), torch.tensor(mask), [e.ids for e in enc]


def classifier(name, config, model_cls, seed, own_tokenizer=False, pad_id=0,
               perturb=("LayerNorm", "layer_norm"), encoder=None):
    """A tiny random *ForSequenceClassification and PyTorch's logits on TEXTS (one padded
    batch). The tokenizer is MiniLM's uncased one unless `own_tokenizer` (then
    out/tokenizer.json is already written). With `encoder` (the model's base module), also the
    mean-pooled, normalised embeddings of its last hidden state."""
    out = DATA / name
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    # Random init leaves norms at 1/0 and biases at 0; perturb them so the test sees them.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if any(n in pname for n in perturb) or pname.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    if not own_tokenizer:
        shutil.copy(MODELS / "minilm/tokenizer.json", out / "tokenizer.json")
    tok = tokenizer(out / "tokenizer.json")
    ids, mask, raw = batch(tok, TEXTS, pad_id=pad_id)
    with torch.inference_mode():
        logits = model(input_ids=ids, attention_mask=mask).logits
        if encoder is not None:
            hidden = encoder(model)(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask[..., None].float()
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            emb = torch.nn.functional.normalize(pooled, dim=-1)
    ref = {
        "torch": torch.__version__,
        "texts": TEXTS,
        "input_ids": raw,
        "logits": [[float(f"{x:.7g}") for x in row] for row in logits.tolist()],
        "labels": [config.id2label[int(i)] for i in logits.argmax(-1)],
    }
    if encoder is not None:
        ref["embeddings"] = [[float(f"{x:.7g}") for x in row] for row in emb.tolist()]
    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    if (out / "generation_config.json").exists():
        os.remove(out / "generation_config.json")
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


def bert_classifier():
    labels = ["negative", "neutral", "positive"]
    config = BertConfig(
        vocab_size=30522,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=128,
        num_labels=3,
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        architectures=["BertForSequenceClassification"],
    )
    classifier("tiny-bert-classifier", config, BertForSequenceClassification, 7)


def distilbert_classifier():
    config = DistilBertConfig(
        vocab_size=30522,
        dim=16,
        n_layers=2,
        n_heads=4,
        hidden_dim=32,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"},
        label2id={"NEGATIVE": 0, "POSITIVE": 1},
        architectures=["DistilBertForSequenceClassification"],
    )
    classifier("tiny-distilbert-classifier", config, DistilBertForSequenceClassification, 9)


CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A model is a function from inputs to outputs, stored as weights.",
    "Blocks are agreed by validators and executed by the EVM.",
    "Content addressing names data by the hash of its bytes.",
    "Once upon a time there was a small language model that liked to count: one, two, three.",
    "def add(a, b):\n    return a + b\n",
] * 20


def gpt2():
    """A tiny GPT-2 with its own byte-level BPE tokenizer (trained here on CORPUS)."""
    out = DATA / "tiny-gpt2"
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(out / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    torch.manual_seed(11)
    config = GPT2Config(
        vocab_size=tok.get_vocab_size(),
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=eos,
        eos_token_id=eos,
        architectures=["GPT2LMHeadModel"],
    )
    model = GPT2LMHeadModel(config).eval()
    # A few hundred steps on CORPUS, so greedy decoding continues text instead of repeating
    # one token (a random GPT-2 collapses), which is what exercises the KV cache.
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = [torch.tensor([tok.encode(t).ids]) for t in CORPUS[:6]]
    for step in range(300):
        x = data[step % len(data)]
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    prompts = ["Once upon a time", "def add(a, b):", "The quick brown"]
    refs = []
    for prompt in prompts:
        ids = tok.encode(prompt).ids
        x = torch.tensor([ids])
        with torch.inference_mode():
            logits = model(x).logits[0, -1]
            gen = model.generate(
                x,
                max_new_tokens=16,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=eos,
            )[0, len(ids):].tolist()
            # The distribution each new token was picked from, computed without a cache
            # over the whole sequence (the Rust side decodes with its KV cache).
            full = torch.tensor([ids + gen])
            steps = model(full).logits[0, len(ids) - 1 : len(ids) - 1 + len(gen)]
        refs.append({
            "prompt": prompt,
            "prompt_ids": ids,
            "last_logits": [float(f"{v:.7g}") for v in logits.tolist()],
            "greedy": gen,
            "step_logits": [[float(f"{v:.6g}") for v in row] for row in steps.tolist()],
        })
    (out / "reference.json").write_text(json.dumps({"torch": torch.__version__, "prompts": refs}) + "\n")
    for extra in ["generation_config.json"]:
        if (out / extra).exists():
            os.remove(out / extra)
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


LLAMA_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def llama():
    """A tiny LlamaForCausalLM (grouped-query attention: 4 heads, 2 kv heads; tied embeddings;
    rope_theta 100000 and rms_norm_eps 1e-5, not the defaults) with its own byte-level BPE
    tokenizer split like SmolLM2's (digits one by one, then the GPT-2 regex) and ChatML special
    tokens, trained a few hundred steps on CORPUS. Widths are multiples of 32 so Q8_0/Q4_0
    apply to every matrix. The reference: PyTorch fp32 last-position logits and 16 greedy
    tokens per prompt, with the greedy margin (best minus second-best logit) at every step.
    `lattice model import --quantize` turns this folder into a GGUF."""
    out = DATA / "tiny-llama"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.save(str(out / "tokenizer.json"))
    eos = tok.token_to_id("<|endoftext|>")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "add_bos_token": False,
        "model_max_length": 128,
        "chat_template": LLAMA_CHAT_TEMPLATE,
    }, indent=1) + "\n")
    torch.manual_seed(17)
    config = LlamaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=tok.token_to_id("<|im_end|>"),
        pad_token_id=eos,
        architectures=["LlamaForCausalLM"],
    )
    model = LlamaForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = [torch.tensor([tok.encode(t).ids]) for t in CORPUS[:6]]
    for step in range(300):
        x = data[step % len(data)]
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("loss", float(loss))
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    prompts = ["Once upon a time", "def add(a, b):", "The quick brown", "Count: one, two, 3 4"]
    refs = []
    for prompt in prompts:
        ids = tok.encode(prompt).ids
        x = torch.tensor([ids])
        with torch.inference_mode():
            logits = model(x).logits[0, -1]
            gen = model.generate(
                x,
                max_new_tokens=16,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=eos,
            )[0, len(ids):].tolist()
            full = torch.tensor([ids + gen])
            steps = model(full).logits[0, len(ids) - 1 : len(ids) - 1 + len(gen)]
        top2 = steps.topk(2, dim=-1).values
        refs.append({
            "prompt": prompt,
            "prompt_ids": ids,
            "last_logits": [float(f"{v:.7g}") for v in logits.tolist()],
            "greedy": gen,
            "greedy_margins": [float(f"{v:.5g}") for v in (top2[:, 0] - top2[:, 1]).tolist()],
            "text": tok.decode(gen),
        })
        print(repr(prompt), "->", repr(refs[-1]["text"]), "min margin", min(refs[-1]["greedy_margins"]))
    (out / "reference.json").write_text(json.dumps({"torch": torch.__version__, "prompts": refs}) + "\n")
    for extra in ["generation_config.json"]:
        if (out / extra).exists():
            os.remove(out / extra)
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


def vit():
    """A tiny random ViT classifier with a ViTImageProcessor-style preprocessor_config.json.
    The reference runs on 32x32 images (the model's size, so resizing is the identity in both
    PIL and the image crate) and records the exact pixel_values PyTorch saw."""
    out = DATA / "tiny-vit"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(5)
    labels = ["cat", "dog", "ship", "tree", "car"]
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        architectures=["ViTForImageClassification"],
    )
    model = ViTForImageClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layernorm" in name or name.endswith("bias") or "cls_token" in name or "position" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    pre = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": 32, "width": 32},
        "resample": 2,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=1) + "\n")
    rng = np.random.default_rng(3)
    refs = []
    for i in range(3):
        img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        name = f"image{i}.png"
        Image.fromarray(img).save(out / name)
        x = (img.astype(np.float32) * np.float32(1 / 255) - 0.5) / 0.5
        pixel_values = torch.from_numpy(x).permute(2, 0, 1)[None]
        with torch.inference_mode():
            logits = model(pixel_values=pixel_values).logits[0]
        refs.append({
            "file": name,
            "logits": [float(f"{v:.7g}") for v in logits.tolist()],
            "label": labels[int(logits.argmax())],
        })
    (out / "reference.json").write_text(json.dumps({"torch": torch.__version__, "images": refs}, indent=1) + "\n")
    for extra in ["generation_config.json"]:
        if (out / extra).exists():
            os.remove(out / extra)
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


def roberta():
    """A tiny random RobertaForSequenceClassification with its own byte-level BPE tokenizer
    (<s> … </s>, <pad> = 1, as RoBERTa's): PyTorch's logits and the mean-pooled, normalised
    embeddings of its encoder on TEXTS in one padded batch (padding shifts RoBERTa's position
    ids, which start at pad_token_id + 1)."""
    out = DATA / "tiny-roberta-classifier"
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS + TEXTS * 5, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save(str(out / "tokenizer.json"))
    labels = ["negative", "positive"]
    config = RobertaConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=66,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        architectures=["RobertaForSequenceClassification"],
    )
    classifier("tiny-roberta-classifier", config, RobertaForSequenceClassification, 13,
               own_tokenizer=True, pad_id=1, perturb=("LayerNorm", "position"),
               encoder=lambda model: model.roberta)


def smooth_image(w, h, seed):
    """A smooth picture (gradients and a disc), so resampling differences stay small."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c = rng.uniform(0, 1, size=(3, 3))
    img = np.stack([
        255 * (c[k, 0] * x / w + c[k, 1] * y / h) / (c[k, 0] + c[k, 1])
        for k in range(3)
    ], axis=-1)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.25) ** 2
    img[disc] = 255 * c[:, 2]
    return np.clip(img, 0, 255).astype(np.uint8)


def preprocess_reference(out, processor, config, w, h, seed):
    """A non-square image run through the Hugging Face image processor: the Rust side compares
    its own resize/crop/normalise within a tolerance (PIL and the image crate resample
    differently)."""
    img = smooth_image(w, h, seed)
    name = f"wide{w}x{h}.png"
    Image.fromarray(img).save(out / name)
    pv = processor(images=Image.open(out / name), return_tensors="pt").pixel_values[0]
    return {
        "file": name,
        "processor": type(processor).__name__,
        "config": config,
        "shape": list(pv.shape),
        "pixel_values": [float(f"{v:.6g}") for v in pv.flatten().tolist()],
    }


def perturb(model, names):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(n in name for n in names) or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)


def resnet():
    """A tiny random ResNetForImageClassification (bottleneck layers; BatchNorm statistics and
    affine parameters perturbed so folding them is tested) with a ConvNextImageProcessor-style
    preprocessor_config.json. crop_pct is 1 in the fixture, so the 32x32 PNGs pass resize and
    crop unchanged and the logits test is exact; a second config with microsoft/resnet-50's
    crop_pct 0.875 is recorded with PyTorch's pixel_values of a non-square image."""
    out = DATA / "tiny-resnet"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    labels = ["cat", "dog", "ship", "tree"]
    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16, 24],
        depths=[1, 2, 1],
        layer_type="bottleneck",
        hidden_act="relu",
        downsample_in_first_stage=False,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)},
        architectures=["ResNetForImageClassification"],
    )
    model = ResNetForImageClassification(config).eval()
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(1 + torch.randn_like(m.weight) * 0.2)
                m.bias.copy_(torch.randn_like(m.bias) * 0.2)
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.2)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
        model.classifier[1].bias.add_(torch.randn_like(model.classifier[1].bias) * 0.1)
    model.save_pretrained(out, safe_serialization=True)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pre = {
        "image_processor_type": "ConvNextImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": 32},
        "crop_pct": 1.0,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=1) + "\n")
    processor = ConvNextImageProcessor.from_pretrained(out)
    rng = np.random.default_rng(4)
    refs = []
    for i in range(3):
        img = smooth_image(32, 32, 30 + i) if i else rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        name = f"image{i}.png"
        Image.fromarray(img).save(out / name)
        pixel_values = processor(images=Image.open(out / name), return_tensors="pt").pixel_values
        x = (img.astype(np.float32) * np.float32(1 / 255) - np.array(mean, np.float32)) / np.array(std, np.float32)
        exact = torch.from_numpy(x).permute(2, 0, 1)[None]
        assert (pixel_values - exact).abs().max() < 1e-5, "identity preprocessing"
        with torch.inference_mode():
            logits = model(pixel_values=pixel_values).logits[0]
        refs.append({
            "file": name,
            "logits": [float(f"{v:.7g}") for v in logits.tolist()],
            "label": labels[int(logits.argmax())],
        })
    real = dict(pre, crop_pct=0.875)
    resnet50 = ConvNextImageProcessor(**{k: v for k, v in real.items() if k != "image_processor_type"})
    prep = preprocess_reference(out, resnet50, real, 45, 60, 8)
    (out / "reference.json").write_text(
        json.dumps({"torch": torch.__version__, "images": refs, "preprocess": prep}) + "\n"
    )
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


def resnet_variants():
    """Two more tiny ResNets for the code paths tiny-resnet does not take, logits only (same
    preprocessing as tiny-resnet, 32x32 PNGs): basic layers with GELU (so the stem's max pool
    sees negative values) and a downsampling first stage, and bottlenecks that downsample in
    their first 1x1 convolution."""
    variants = {
        "tiny-resnet-basic": dict(layer_type="basic", hidden_act="gelu", downsample_in_first_stage=True),
        "tiny-resnet-dib": dict(layer_type="bottleneck", downsample_in_bottleneck=True),
    }
    labels = ["cat", "dog", "ship"]
    for seed, (name, extra) in enumerate(variants.items()):
        out = DATA / name
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(40 + seed)
        config = ResNetConfig(
            embedding_size=8,
            hidden_sizes=[8, 16],
            depths=[2, 1],
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={l: i for i, l in enumerate(labels)},
            architectures=["ResNetForImageClassification"],
            **extra,
        )
        model = ResNetForImageClassification(config).eval()
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.copy_(1 + torch.randn_like(m.weight) * 0.2)
                    m.bias.copy_(torch.randn_like(m.bias) * 0.2)
                    m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.2)
                    m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
        model.save_pretrained(out, safe_serialization=True)
        shutil.copy(DATA / "tiny-resnet/preprocessor_config.json", out / "preprocessor_config.json")
        mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
        refs = []
        for i in range(3):
            img = smooth_image(32, 32, 50 + i + 10 * seed)
            fname = f"image{i}.png"
            Image.fromarray(img).save(out / fname)
            x = (img.astype(np.float32) * np.float32(1 / 255) - mean) / std
            with torch.inference_mode():
                logits = model(pixel_values=torch.from_numpy(x).permute(2, 0, 1)[None]).logits[0]
            refs.append({
                "file": fname,
                "logits": [float(f"{v:.7g}") for v in logits.tolist()],
                "label": labels[int(logits.argmax())],
            })
        (out / "reference.json").write_text(json.dumps({"torch": torch.__version__, "images": refs}, indent=1) + "\n")
        print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


CLIP_CORPUS = [
    "a photo of a cat",
    "a photo of a dog",
    "a picture of a red car",
    "two dogs playing in the snow",
    "a cat sleeping on a sofa",
    "a diagram of a ship at sea",
]


def clip_tokenizer(out):
    """A tiny CLIP-style BPE (lowercase, words end in </w>) with CLIP's special tokens: the
    post-processor wraps every text as <|startoftext|> ... <|endoftext|> and batches pad with
    <|endoftext|>, as openai/clip-vit-base-patch32's tokenizer does."""
    from tokenizers import normalizers, processors

    # Vocabulary and merges built directly (a BpeTrainer orders tied tokens differently from
    # run to run): every character alone and word-final, each corpus word merged left to
    # right, then the special tokens last as in CLIP's vocabulary (so <|endoftext|> has the
    # largest id and the old argmax pooling finds it too).
    words = sorted({w for t in CLIP_CORPUS for w in t.lower().split()})
    chars = sorted({c for w in words for c in w})
    vocab = {}
    for t in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(t, len(vocab))
    merges = []
    for w in words:
        pieces = list(w[:-1]) + [w[-1] + "</w>"]
        cur = pieces[0]
        for p in pieces[1:]:
            if cur + p not in vocab:
                merges.append((cur, p))
                vocab[cur + p] = len(vocab)
            cur = cur + p
    for t in ["<|startoftext|>", "<|endoftext|>"]:
        vocab[t] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<|endoftext|>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    bos, eos = tok.token_to_id("<|startoftext|>"), tok.token_to_id("<|endoftext|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>",
        special_tokens=[("<|startoftext|>", bos), ("<|endoftext|>", eos)],
    )
    tok.enable_padding(pad_id=eos, pad_token="<|endoftext|>")
    tok.enable_truncation(max_length=32)
    tok.save(str(out / "tokenizer.json"))
    return tok, bos, eos


def clip():
    """A tiny random CLIPModel with its own CLIP-style tokenizer and a CLIPImageProcessor
    preprocessor_config.json; the reference has the normalised text and image embeddings and
    logits_per_image for 3 images x 3 texts (32x32 PNGs, so resize and crop are the identity),
    plus PyTorch's pixel_values for a non-square image."""
    out = DATA / "tiny-clip"
    out.mkdir(parents=True, exist_ok=True)
    tok, bos, eos = clip_tokenizer(out)
    torch.manual_seed(13)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=tok.get_vocab_size(),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=32,
            hidden_act="quick_gelu",
            projection_dim=16,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            hidden_act="quick_gelu",
            projection_dim=16,
        ),
        projection_dim=16,
        architectures=["CLIPModel"],
    )
    model = CLIPModel(config).eval()
    perturb(model, ["layer_norm", "layernorm", "layrnorm", "class_embedding", "position_embedding"])
    with torch.no_grad():
        model.logit_scale.fill_(2.0)
    model.save_pretrained(out, safe_serialization=True)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    pre = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": 32},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": 32, "width": 32},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
        "do_convert_rgb": True,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=1) + "\n")
    processor = CLIPImageProcessor.from_pretrained(out)
    texts = ["a photo of a cat", "a dog playing in the snow", "red car"]
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    rng = np.random.default_rng(6)
    files, pixels = [], []
    for i in range(3):
        img = smooth_image(32, 32, 20 + i) if i else rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        name = f"image{i}.png"
        Image.fromarray(img).save(out / name)
        pv = processor(images=Image.open(out / name), return_tensors="pt").pixel_values
        x = (img.astype(np.float32) * np.float32(1 / 255) - np.array(mean, np.float32)) / np.array(std, np.float32)
        assert (pv - torch.from_numpy(x).permute(2, 0, 1)[None]).abs().max() < 1e-5, "identity preprocessing"
        files.append(name)
        pixels.append(pv)
    with torch.inference_mode():
        o = model(input_ids=ids, attention_mask=mask, pixel_values=torch.cat(pixels))
    # CLIPModel's outputs: text_embeds/image_embeds are normalised; logits_per_image is
    # logit_scale.exp() * cos.
    ref = {
        "torch": torch.__version__,
        "texts": texts,
        "input_ids": [e.ids for e in enc],
        "files": files,
        "logit_scale": float(model.logit_scale.detach()),
        "text_embeds": [[float(f"{v:.7g}") for v in r] for r in o.text_embeds.tolist()],
        "image_embeds": [[float(f"{v:.7g}") for v in r] for r in o.image_embeds.tolist()],
        "logits_per_image": [[float(f"{v:.7g}") for v in r] for r in o.logits_per_image.tolist()],
        "preprocess": preprocess_reference(out, CLIPImageProcessor(**{k: v for k, v in pre.items() if k != "image_processor_type"}), pre, 60, 45, 9),
    }
    (out / "reference.json").write_text(json.dumps(ref) + "\n")
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


SPEECH = [
    "the cat sat on the mat and looked at the dog",
    "speech to text turns sound into words",
    "one two three four five six seven eight nine ten",
    "a quick test of the whisper decoder with a tiny vocabulary",
] * 20
WHISPER_SPECIAL = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|fr|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]


def whisper_audio(rng, rate, seconds, channels):
    """A few seeded test signals: two tones with a chirp and a little noise per channel."""
    t = np.arange(int(rate * seconds)) / rate
    out = []
    for c in range(channels):
        f0 = rng.uniform(150, 400)
        x = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.2 * np.sin(2 * np.pi * (600 + 900 * t) * t + c)
        x *= 0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t) ** 2
        x += 0.02 * rng.standard_normal(len(t))
        out.append(x)
    return np.stack(out, axis=1)


def whisper():
    """A tiny random WhisperForConditionalGeneration (multilingual layout: language detection,
    forced <|transcribe|>, <|notimestamps|>, suppress_tokens and begin_suppress_tokens) with a
    byte-level BPE trained on SPEECH plus Whisper's special tokens at the end of the vocabulary,
    three WAVs (16 kHz mono int16, 44.1 kHz stereo int16, 24 kHz mono float32) and PyTorch's
    features and greedy tokens for each. Audio at other rates is resampled with
    scipy.signal.resample_poly (Kaiser window, beta 5), which the Rust side implements too."""
    from scipy.io import wavfile
    from scipy.signal import resample_poly

    out = DATA / "tiny-whisper"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(SPEECH, trainer)
    tok.add_special_tokens(WHISPER_SPECIAL)
    tok.save(str(out / "tokenizer.json"))
    sp = {t: tok.token_to_id(t) for t in WHISPER_SPECIAL}
    eot, sot = sp["<|endoftext|>"], sp["<|startoftranscript|>"]
    space = tok.token_to_id("Ġ")

    rng = np.random.default_rng(21)
    wavs = []
    for name, rate, seconds, channels, kind in [
        ("tone16k.wav", 16000, 2.0, 1, "int16"),
        ("stereo44k.wav", 44100, 1.5, 2, "int16"),
        ("float24k.wav", 24000, 1.0, 1, "float32"),
    ]:
        x = whisper_audio(rng, rate, seconds, channels)
        if kind == "int16":
            data = np.round(x * 32767).astype(np.int16)
            samples = data.astype(np.float64) / 32768.0
        else:
            data = x.astype(np.float32)
            samples = data.astype(np.float64)
        wavfile.write(out / name, rate, data if channels > 1 else data[:, 0])
        mono = samples.mean(axis=1)
        if rate != 16000:
            g = np.gcd(16000, rate)
            mono = resample_poly(mono, 16000 // g, rate // g)
        wavs.append((name, mono.astype(np.float32)))

    fe = WhisperFeatureExtractor(feature_size=80)
    fe.save_pretrained(out)
    torch.manual_seed(13)
    lang = {t: sp[t] for t in ["<|en|>", "<|fr|>", "<|de|>"]}
    config = WhisperConfig(
        vocab_size=tok.get_vocab_size(),
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        encoder_attention_heads=4,
        decoder_layers=2,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=96,
        max_source_positions=1500,
        max_target_positions=64,
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        begin_suppress_tokens=[space, eot],
        architectures=["WhisperForConditionalGeneration"],
    )
    model = WhisperForConditionalGeneration(config).eval()
    feats = [fe(x, sampling_rate=16000, return_tensors="pt").input_features for _, x in wavs]
    # A random decoder repeats one token; a few steps of teacher forcing (each audio to its own
    # sentence and language) make greedy decoding produce varied text, end with <|endoftext|>
    # and detect different languages, which is what the Rust side must reproduce.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "layer_norm" in pname or pname.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    targets = []
    for i, l in enumerate(["<|en|>", "<|fr|>", "<|de|>"]):
        ids = [sot, sp[l], sp["<|transcribe|>"], sp["<|notimestamps|>"]] + tok.encode(" " + SPEECH[i]).ids + [eot]
        targets.append(torch.tensor([ids]))
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(120):
        i = step % 3
        ids = targets[i]
        loss = model(input_features=feats[i], decoder_input_ids=ids[:, :-1], labels=ids[:, 1:]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("loss", float(loss))
    model.eval()

    def gen_config(suppress, begin):
        g = GenerationConfig(
            decoder_start_token_id=sot,
            eos_token_id=eot,
            pad_token_id=eot,
            bos_token_id=eot,
            max_new_tokens=24,
            do_sample=False,
            is_multilingual=True,
            lang_to_id=lang,
            task_to_id={"transcribe": sp["<|transcribe|>"], "translate": sp["<|translate|>"]},
            no_timestamps_token_id=sp["<|notimestamps|>"],
            forced_decoder_ids=[[1, None], [2, sp["<|transcribe|>"]]],
            suppress_tokens=suppress,
            begin_suppress_tokens=begin,
        )
        return g

    def generate(g, f):
        with torch.inference_mode():
            return model.generate(f, generation_config=g).tolist()[0]

    # Which tokens the model would pick unsuppressed, so the suppression lists are seen to matter.
    free = [generate(gen_config(None, None), f) for f in feats]
    print("unsuppressed:", free)
    specials = [sp[t] for t in ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]]
    # (generate returns the new tokens only.) Two regular tokens the free run picks are
    # suppressed everywhere, and its first token at the beginning.
    regular = sorted({t for seq in free for t in seq[1:] if t < space}) or [5]
    suppress = sorted(set(regular[:2] + specials))
    begin = sorted({space, eot, free[0][0]})
    g = gen_config(suppress, begin)
    g.save_pretrained(out)
    config.suppress_tokens = suppress
    config.begin_suppress_tokens = begin
    model.generation_config = g
    model.save_pretrained(out, safe_serialization=True)
    g.save_pretrained(out)

    refs = []
    raw = []
    offset = 0
    for (name, x), f in zip(wavs, feats):
        tokens = generate(g, f)
        with torch.inference_mode():
            full = model.generate(f, generation_config=g, return_dict_in_generate=True, output_scores=True)
        seq = full.sequences[0].tolist()
        steps = len(full.scores)
        prompt = seq[: len(seq) - steps]
        new_ids = seq[len(prompt):]
        assert new_ids[: len(tokens)] == tokens and new_ids[len(tokens):] in ([], [eot]), (seq, tokens)
        # Greedy margins: the gap between the best and second-best processed logit at every
        # step, so float differences cannot flip a token.
        gaps = [float(r[0].topk(2).values[0] - r[0].topk(2).values[1]) for r in full.scores]
        frames = min(3000, len(x) // 160 + 6)
        block = f[0, :, :frames].numpy().astype("<f4")
        raw.append(block.tobytes())
        refs.append({
            "file": name,
            "samples_16k": len(x),
            "frames": frames,
            "features_offset": offset,
            "prompt": prompt,
            "tokens": tokens,
            "stopped_at_eot": new_ids[-1] == eot,
            "text": tok.decode(tokens, skip_special_tokens=True),
            "min_greedy_gap": min(gaps),
        })
        offset += block.size
        print(name, prompt, tokens, repr(refs[-1]["text"]), "min gap", min(gaps))
    (out / "features.f32").write_bytes(b"".join(raw))
    # The decoder prompt transformers builds for other generation configs (on the first
    # audio): a set language, a set task (the language still detected), both, and an
    # English-only layout (no lang_to_id; forced <|notimestamps|> only). `set` overrides keys
    # of generation_config.json; null removes one.
    prompt_cases = []
    for overrides in [
        {"language": "fr"},
        {"task": "translate"},
        {"language": "de", "task": "translate"},
        {
            "is_multilingual": False,
            "lang_to_id": None,
            "task_to_id": None,
            "forced_decoder_ids": [[1, sp["<|notimestamps|>"]]],
        },
    ]:
        g2 = GenerationConfig.from_dict(g.to_dict())
        for k, v in overrides.items():
            if v is None:
                delattr(g2, k)
            else:
                setattr(g2, k, v)
        with torch.inference_mode():
            o = model.generate(feats[0], generation_config=g2, return_dict_in_generate=True, output_scores=True)
        sq = o.sequences[0].tolist()
        prompt_cases.append({"set": overrides, "prompt": sq[: len(sq) - len(o.scores)]})
        print("prompt case", overrides, prompt_cases[-1]["prompt"])
    ref = {
        "torch": torch.__version__,
        "features": "features.f32: little-endian f32, per file [80, frames] row-major at features_offset (in floats); "
        "WhisperFeatureExtractor's first `frames` frames",
        "max_new_tokens": 24,
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin,
        "audio": refs,
        "prompt_cases": prompt_cases,
    }
    (out / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(out, sum(f.stat().st_size for f in out.iterdir()), "bytes")


FIXTURES = {
    "bert-classifier": bert_classifier,
    "distilbert-classifier": distilbert_classifier,
    "gpt2": gpt2,
    "llama": llama,
    "vit": vit,
    "roberta": roberta,
    "resnet": resnet,
    "resnet-variants": resnet_variants,
    "clip": clip,
    "whisper": whisper,
}

if __name__ == "__main__":
    import sys

    torch.set_num_threads(1)
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixture(s) {unknown}; known: {list(FIXTURES)}")
    for name in names:
        FIXTURES[name]()
