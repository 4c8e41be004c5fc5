//! `--quantize`: a Hugging Face llama-family checkpoint (`config.json`, safetensors,
//! `tokenizer.json`) → one quantized GGUF file the runtime runs
//! (`lattice_runtime::llama`, candle's quantized llama).
//!
//! Follows llama.cpp's `convert_hf_to_gguf.py` (architecture `llama`):
//!
//! - tensor names: `model.embed_tokens` → `token_embd`, `model.layers.N.self_attn.{q,k,v,o}_proj`
//!   → `blk.N.attn_{q,k,v,output}`, `mlp.{gate,up,down}_proj` → `blk.N.ffn_{gate,up,down}`,
//!   `input_layernorm` → `blk.N.attn_norm`, `post_attention_layernorm` → `blk.N.ffn_norm`,
//!   `model.norm` → `output_norm`, `lm_head` → `output` (left out when the embeddings are
//!   tied: the runtime then uses `token_embd` as the output head);
//! - the rows of `attn_q` (per head) and `attn_k` (per kv head) are permuted from the
//!   Hugging Face rotary layout (`rotate_half`: dimension i pairs with i + d/2) to GGUF llama's
//!   interleaved one (2i pairs with 2i + 1), which candle's quantized llama applies (`rope_i`);
//! - 1-D tensors (the RMS norms) stay F32; a matrix whose rows are not a whole number of
//!   32-value blocks cannot be quantized and is stored F16 (as the convert script does);
//! - `q8_0`: every other matrix Q8_0. `q4_0`: every other matrix Q4_0 except the output head
//!   (`output`, or `token_embd` when tied), which gets Q6_K as llama.cpp's `llama-quantize`
//!   gives it, or Q8_0 when its rows are not a whole number of 256-value blocks (llama.cpp's
//!   fallback);
//! - metadata: `general.*`, the `llama.*` hyper-parameters, and the tokenizer as
//!   `tokenizer.ggml.*` (model `gpt2`: tokens, token types, merges, special token ids,
//!   `add_bos_token`, the chat template).
//!
//! Refuses (before reading any weights) what the runtime could not run or would run wrong:
//! architectures other than `LlamaForCausalLM`/`MistralForCausalLM`, attention or MLP biases,
//! rope scaling, an activation other than SiLU, a head size other than hidden / heads,
//! tokenizers other than byte-level BPE split the GPT-2 way (optionally digits first, as
//! SmolLM's), and unknown tensors.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use candle_core::quantized::gguf_file::{self, Value as Gv};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Observer;
use crate::error::{ImportError, Result, io};

/// The weight quantizations `--quantize` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Quantization {
    /// 4-bit blocks of 32 with one f16 scale (4.5 bits a weight).
    #[serde(rename = "q4_0")]
    Q4_0,
    /// 8-bit blocks of 32 with one f16 scale (8.5 bits a weight).
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl Quantization {
    /// `q4_0` or `q8_0`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::Q4_0 => "q4_0",
            Quantization::Q8_0 => "q8_0",
        }
    }

    fn ggml(self) -> GgmlDType {
        match self {
            Quantization::Q4_0 => GgmlDType::Q4_0,
            Quantization::Q8_0 => GgmlDType::Q8_0,
        }
    }

    /// llama.cpp's `llama_ftype` (`general.file_type`).
    fn file_type(self) -> u32 {
        match self {
            Quantization::Q4_0 => 2,
            Quantization::Q8_0 => 7,
        }
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Quantization {
    type Err = ImportError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q4_0" => Ok(Quantization::Q4_0),
            "q8_0" => Ok(Quantization::Q8_0),
            _ => Err(ImportError::Unsupported(format!(
                "quantization {s:?}: expected q4_0 or q8_0"
            ))),
        }
    }
}

/// What `--quantize` converts, for error messages.
pub const QUANTIZE_SUPPORTED: &str = "llama-family decoders (LlamaForCausalLM, \
     MistralForCausalLM: no biases, no rope scaling, SiLU) with a byte-level BPE tokenizer.json \
     (GPT-2 split, optionally digits first as SmolLM's), as safetensors or pytorch_model.bin";

/// The file name of the GGUF inside an imported folder.
pub const GGUF_FILE: &str = "model.gguf";

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_NORMAL: i32 = 1;
const TOKEN_CONTROL: i32 = 3;
const TOKEN_USER_DEFINED: i32 = 4;
const TOKEN_UNUSED: i32 = 5;

/// The hyper-parameters of a llama-family `config.json`.
#[derive(Debug, Clone)]
struct Hparams {
    vocab: usize,
    embd: usize,
    ff: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    context: Option<usize>,
    rope_theta: f32,
    rms_eps: f32,
    tied: bool,
}

/// The tokenizer as GGUF describes it.
#[derive(Debug, Clone)]
struct Vocab {
    pre: &'static str,
    add_space_prefix: bool,
    tokens: Vec<String>,
    types: Vec<i32>,
    merges: Vec<String>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    pad: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    chat_template: Option<String>,
}

/// A checkpoint judged convertible: its hyper-parameters and tokenizer (no weights read yet).
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    hp: Hparams,
    vocab: Vocab,
}

fn refuse(msg: impl fmt::Display) -> ImportError {
    ImportError::Unsupported(format!(
        "--quantize: {msg}; --quantize converts {QUANTIZE_SUPPORTED}"
    ))
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ImportError::Source(format!("{}: not JSON: {e}", path.display())))
}

/// Judges from the metadata of `files` (names in `dir`; weights may still be missing) whether
/// `--quantize` can convert the model: the weights must be safetensors or
/// `pytorch_model.bin`, and [`plan`] must accept `config.json` and the tokenizer.
pub(crate) fn precheck(dir: &Path, files: &[String]) -> Result<Plan> {
    if let Some(w) = files
        .iter()
        .find(|f| f.ends_with(".gguf") || f.ends_with(".onnx"))
    {
        return Err(refuse(format!(
            "the weights are {w}, not a safetensors or PyTorch checkpoint (import a GGUF without --quantize)"
        )));
    }
    if !files
        .iter()
        .any(|f| f.ends_with(".safetensors") || f == crate::PYTORCH_BIN)
    {
        return Err(refuse("no safetensors or pytorch_model.bin weights"));
    }
    plan(dir)
}

/// Reads `config.json`, `tokenizer.json` and (when present) `tokenizer_config.json` and
/// `chat_template.jinja` of `dir`, refusing what the runtime cannot run.
pub(crate) fn plan(dir: &Path) -> Result<Plan> {
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(refuse("no config.json"));
    }
    let config = read_json(&config_path)?;
    let architecture = config
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .unwrap_or("");
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    let known = matches!(
        (architecture, model_type),
        ("LlamaForCausalLM", "llama") | ("MistralForCausalLM", "mistral")
    );
    if !known {
        return Err(refuse(format!(
            "architecture {architecture:?} (model_type {model_type:?}) is not supported \
             (the runtime runs GGUF decoders of llama.cpp's \"llama\" architecture only)"
        )));
    }
    let hp = hparams(&config)?;
    let vocab = vocab(dir, &config, hp.vocab)?;
    Ok(Plan { hp, vocab })
}

fn hparams(c: &Value) -> Result<Hparams> {
    let us = |k: &str| -> Result<usize> {
        c.get(k)
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0 && v <= u32::MAX as usize)
            .ok_or_else(|| {
                refuse(format!(
                    "config.json: {k} missing or not a positive integer"
                ))
            })
    };
    let opt_us = |k: &str| -> Result<Option<usize>> {
        match c.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => us(k).map(Some),
        }
    };
    let f = |v: Option<&Value>, k: &str, default: f64| -> Result<f32> {
        match v {
            None | Some(Value::Null) => Ok(default as f32),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(|x| x as f32)
                .ok_or_else(|| refuse(format!("config.json: {k} is not a positive number"))),
        }
    };
    let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);

    let embd = us("hidden_size")?;
    let heads = us("num_attention_heads")?;
    let kv_heads = opt_us("num_key_value_heads")?.unwrap_or(heads);
    if !embd.is_multiple_of(heads) || !heads.is_multiple_of(kv_heads) {
        return Err(refuse(format!(
            "hidden_size {embd}, {heads} heads and {kv_heads} kv heads do not divide"
        )));
    }
    let head_dim = embd / heads;
    if let Some(d) = opt_us("head_dim")?
        && d != head_dim
    {
        return Err(refuse(format!(
            "head_dim {d} is not hidden_size / num_attention_heads = {head_dim} (candle's quantized llama assumes it is)"
        )));
    }
    if !head_dim.is_multiple_of(2) {
        return Err(refuse(format!("head size {head_dim} is odd")));
    }
    for k in ["attention_bias", "mlp_bias"] {
        if flag(k) {
            return Err(refuse(format!(
                "config.json: {k} is true (candle's quantized llama has no biases)"
            )));
        }
    }
    if let Some(act) = c.get("hidden_act").and_then(Value::as_str)
        && act != "silu"
    {
        return Err(refuse(format!("hidden_act {act:?} (only silu)")));
    }
    // transformers 5 keeps rope_theta and the scaling type in rope_parameters.
    let rope = c.get("rope_parameters").filter(|v| v.is_object());
    let scaling = c
        .get("rope_scaling")
        .filter(|v| !v.is_null())
        .or(rope)
        .and_then(|r| r.get("rope_type").or_else(|| r.get("type")))
        .and_then(Value::as_str)
        .unwrap_or("default");
    if scaling != "default" {
        return Err(refuse(format!(
            "rope scaling {scaling:?} (the runtime applies plain rotary embeddings only)"
        )));
    }
    let theta = c
        .get("rope_theta")
        .or_else(|| rope.and_then(|r| r.get("rope_theta")));
    let context = opt_us("max_position_embeddings")?;
    if let Some(Value::Number(w)) = c.get("sliding_window")
        && let Some(w) = w.as_u64()
    {
        let reach = context
            .unwrap_or(usize::MAX)
            .min(lattice_runtime::llama::MAX_CONTEXT);
        if (w as usize) < reach {
            return Err(refuse(format!(
                "sliding_window {w} is shorter than the {reach} positions the runtime attends over"
            )));
        }
    }
    Ok(Hparams {
        vocab: us("vocab_size")?,
        embd,
        ff: us("intermediate_size")?,
        layers: us("num_hidden_layers")?,
        heads,
        kv_heads,
        context,
        rope_theta: f(theta, "rope_theta", 10_000.0)?,
        rms_eps: f(c.get("rms_norm_eps"), "rms_norm_eps", 1e-6)?,
        tied: flag("tie_word_embeddings"),
    })
}

/// A special token of `tokenizer_config.json` (`"<s>"` or `{"content": "<s>", …}`).
fn token_content(v: Option<&Value>) -> Option<&str> {
    match v? {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("content").and_then(Value::as_str),
        _ => None,
    }
}

fn is_null_or(v: Option<&Value>, ok: impl Fn(&Value) -> bool) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(v) => ok(v),
    }
}

/// A `ByteLevel` pre-tokenizer with the GPT-2 regex; its `add_prefix_space`.
fn byte_level(p: &Value) -> Option<bool> {
    (p.get("type")?.as_str()? == "ByteLevel"
        && p.get("use_regex").and_then(Value::as_bool).unwrap_or(true))
    .then(|| {
        p.get("add_prefix_space")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    })
}

fn vocab(dir: &Path, config: &Value, vocab_size: usize) -> Result<Vocab> {
    let tok_path = dir.join("tokenizer.json");
    if !tok_path.is_file() {
        return Err(refuse("no tokenizer.json"));
    }
    let tok = read_json(&tok_path)?;
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.is_file() {
        read_json(&tc_path)?
    } else {
        Value::Null
    };
    let model = tok.get("model").unwrap_or(&Value::Null);
    let bad = |what: String| refuse(format!("tokenizer.json: {what}"));
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "BPE" {
        return Err(bad(format!(
            "model {kind:?}, not BPE (sentencepiece-style llama tokenizers are not supported by the runtime)"
        )));
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(bad(
            "byte_fallback BPE (a sentencepiece-style tokenizer) is not supported".into(),
        ));
    }
    if model.get("ignore_merges").and_then(Value::as_bool) == Some(true) {
        return Err(bad("ignore_merges is not supported".into()));
    }
    for k in ["dropout", "continuing_subword_prefix", "end_of_word_suffix"] {
        if !is_null_or(model.get(k), |v| v.as_str() == Some("")) {
            return Err(bad(format!("BPE {k} is not supported")));
        }
    }
    if !is_null_or(tok.get("normalizer"), |_| false) {
        return Err(bad("a normalizer is not supported".into()));
    }
    let pre_tok = tok.get("pre_tokenizer").unwrap_or(&Value::Null);
    let (pre, add_space_prefix) = if let Some(prefix) = byte_level(pre_tok) {
        ("gpt2", prefix)
    } else {
        let seq = (pre_tok.get("type").and_then(Value::as_str) == Some("Sequence"))
            .then(|| pre_tok.get("pretokenizers").and_then(Value::as_array))
            .flatten();
        match seq.map(Vec::as_slice) {
            Some([digits, bl])
                if digits.get("type").and_then(Value::as_str) == Some("Digits")
                    && digits.get("individual_digits").and_then(Value::as_bool) == Some(true)
                    && byte_level(bl).is_some() =>
            {
                ("smollm", byte_level(bl).unwrap_or(false))
            }
            _ => {
                return Err(bad(
                    "the pre-tokenizer is neither ByteLevel nor Digits + ByteLevel".into(),
                ));
            }
        }
    };
    if tok
        .get("decoder")
        .and_then(|d| d.get("type"))
        .and_then(Value::as_str)
        != Some("ByteLevel")
    {
        return Err(bad("the decoder is not ByteLevel".into()));
    }

    // id → (token, type)
    let mut by_id: BTreeMap<usize, (String, i32)> = BTreeMap::new();
    let entries = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no BPE vocab".into()))?;
    for (t, id) in entries {
        let id = id
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .ok_or_else(|| bad(format!("vocab id of {t:?} is not an integer")))?;
        by_id.insert(id, (t.clone(), TOKEN_NORMAL));
    }
    for a in tok
        .get("added_tokens")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let (Some(id), Some(content)) = (
            a.get("id")
                .and_then(Value::as_u64)
                .and_then(|i| usize::try_from(i).ok()),
            a.get("content").and_then(Value::as_str),
        ) else {
            return Err(bad("an added token without id or content".into()));
        };
        let special = a.get("special").and_then(Value::as_bool).unwrap_or(false);
        // convert_hf_to_gguf.py: special added tokens, and those that look like control
        // tokens, are CONTROL; the others USER_DEFINED.
        let looks_special = (content.starts_with("<|") && content.ends_with("|>"))
            || matches!(content, "<s>" | "</s>" | "<unk>" | "<pad>" | "<mask>");
        let ty = if special || looks_special {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
        by_id.insert(id, (content.to_string(), ty));
    }
    if let Some((&max, _)) = by_id.last_key_value()
        && max >= vocab_size
    {
        return Err(bad(format!(
            "token id {max} is beyond config.json's vocab_size {vocab_size}"
        )));
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for i in 0..vocab_size {
        match by_id.remove(&i) {
            Some((t, ty)) => {
                tokens.push(t);
                types.push(ty);
            }
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(TOKEN_UNUSED);
            }
        }
    }

    let mut merges = Vec::new();
    for m in model
        .get("merges")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let merge = match m {
            Value::String(s) if s.split(' ').count() == 2 => s.clone(),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] if !a.contains(' ') && !b.contains(' ') => {
                    format!("{a} {b}")
                }
                _ => return Err(bad(format!("merge {m} is not two tokens"))),
            },
            _ => return Err(bad(format!("merge {m} is not two tokens"))),
        };
        merges.push(merge);
    }
    if merges.is_empty() {
        return Err(bad("no BPE merges".into()));
    }

    let lookup = |s: &str| tokens.iter().position(|t| t == s).map(|i| i as u32);
    let from_config = |k: &str| -> Option<u32> {
        let v = config.get(k)?;
        let v = v.as_array().and_then(|a| a.first()).unwrap_or(v);
        v.as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .filter(|&i| (i as usize) < vocab_size)
    };
    let special = |name: &str| -> Option<u32> {
        token_content(tc.get(format!("{name}_token").as_str()))
            .and_then(lookup)
            .or_else(|| from_config(&format!("{name}_token_id")))
    };
    let (bos, eos, unk, pad) = (
        special("bos"),
        special("eos"),
        special("unk"),
        special("pad"),
    );
    // add_bos_token from tokenizer_config.json, else whether the post-processor puts the BOS
    // token first.
    let add_bos = tc
        .get("add_bos_token")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| {
            let first = tok
                .get("post_processor")
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("TemplateProcessing"))
                .and_then(|p| p.get("single"))
                .and_then(|s| s.get(0))
                .and_then(|s| s.get("SpecialToken"))
                .and_then(|s| s.get("id"))
                .and_then(Value::as_str);
            bos.is_some() && first.and_then(lookup) == bos
        });
    let add_eos = tc
        .get("add_eos_token")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let chat_template = match tc.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => {
            let p = dir.join("chat_template.jinja");
            if p.is_file() {
                Some(std::fs::read_to_string(&p).map_err(io(&p))?)
            } else {
                None
            }
        }
    };
    Ok(Vocab {
        pre,
        add_space_prefix,
        tokens,
        types,
        merges,
        bos,
        eos,
        unk,
        pad,
        add_bos,
        add_eos,
        chat_template,
    })
}

/// What a GGUF tensor is, for its storage type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `token_embd` (also the output head when tied).
    Embed,
    /// `output`.
    Output,
    /// `attn_q` of a layer: permuted with the head count.
    Query,
    /// `attn_k`: permuted with the kv head count.
    Key,
    /// Another matrix.
    Matrix,
    /// A norm (1-D).
    Norm,
}

/// The GGUF name and role of a Hugging Face llama tensor; `None` for tensors left out
/// (`rotary_emb.inv_freq` buffers of old checkpoints); an error for unknown ones.
fn gguf_name(hf: &str) -> Result<Option<(String, Role)>> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some(("token_embd.weight".to_string(), Role::Embed)),
        "model.norm.weight" => Some(("output_norm.weight".to_string(), Role::Norm)),
        "lm_head.weight" => Some(("output.weight".to_string(), Role::Output)),
        _ => None,
    };
    if fixed.is_some() {
        return Ok(fixed);
    }
    let unknown = || {
        refuse(format!(
            "tensor {hf} is not one of a llama checkpoint's (embed_tokens, q/k/v/o_proj, \
             gate/up/down_proj, input/post_attention_layernorm, norm, lm_head)"
        ))
    };
    let rest = hf.strip_prefix("model.layers.").ok_or_else(unknown)?;
    let (n, part) = rest.split_once('.').ok_or_else(unknown)?;
    let n: usize = n.parse().map_err(|_| unknown())?;
    let (name, role) = match part {
        "self_attn.q_proj.weight" => ("attn_q", Role::Query),
        "self_attn.k_proj.weight" => ("attn_k", Role::Key),
        "self_attn.v_proj.weight" => ("attn_v", Role::Matrix),
        "self_attn.o_proj.weight" => ("attn_output", Role::Matrix),
        "mlp.gate_proj.weight" => ("ffn_gate", Role::Matrix),
        "mlp.up_proj.weight" => ("ffn_up", Role::Matrix),
        "mlp.down_proj.weight" => ("ffn_down", Role::Matrix),
        "input_layernorm.weight" => ("attn_norm", Role::Norm),
        "post_attention_layernorm.weight" => ("ffn_norm", Role::Norm),
        "self_attn.rotary_emb.inv_freq" => return Ok(None),
        _ => return Err(unknown()),
    };
    Ok(Some((format!("blk.{n}.{name}.weight"), role)))
}

/// The type a tensor of `role` and `shape` is stored as (see the module documentation).
fn storage_type(q: Quantization, role: Role, dims: &[usize], tied: bool) -> GgmlDType {
    let cols = match dims {
        [_, cols] => *cols,
        _ => return GgmlDType::F32,
    };
    if role == Role::Norm {
        return GgmlDType::F32;
    }
    let fits = |t: GgmlDType| cols.is_multiple_of(t.block_size());
    let head = role == Role::Output || (role == Role::Embed && tied);
    let wanted = if head && q == Quantization::Q4_0 {
        if fits(GgmlDType::Q6K) {
            GgmlDType::Q6K
        } else {
            GgmlDType::Q8_0
        }
    } else {
        q.ggml()
    };
    if fits(wanted) { wanted } else { GgmlDType::F16 }
}

/// llama.cpp's permutation of `attn_q`/`attn_k` rows: per head, the rows `[0, d/2)` and
/// `[d/2, d)` (Hugging Face's `rotate_half` halves) are interleaved.
fn permute(w: &Tensor, heads: usize) -> candle_core::Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    w.reshape((heads, 2, rows / heads / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// The metadata of the GGUF, in the order written.
fn metadata(plan: &Plan, q: Quantization, name: &str) -> Vec<(String, Gv)> {
    let hp = &plan.hp;
    let v = &plan.vocab;
    let u = |x: usize| Gv::U32(x as u32);
    let mut md: Vec<(String, Gv)> = vec![
        ("general.architecture".into(), Gv::String("llama".into())),
        ("general.type".into(), Gv::String("model".into())),
        ("general.name".into(), Gv::String(name.to_string())),
        ("general.file_type".into(), Gv::U32(q.file_type())),
        ("general.quantization_version".into(), Gv::U32(2)),
        ("llama.vocab_size".into(), u(hp.vocab)),
    ];
    if let Some(c) = hp.context {
        md.push(("llama.context_length".into(), u(c)));
    }
    md.extend([
        ("llama.embedding_length".into(), u(hp.embd)),
        ("llama.block_count".into(), u(hp.layers)),
        ("llama.feed_forward_length".into(), u(hp.ff)),
        ("llama.attention.head_count".into(), u(hp.heads)),
        ("llama.attention.head_count_kv".into(), u(hp.kv_heads)),
        ("llama.rope.dimension_count".into(), u(hp.embd / hp.heads)),
        ("llama.rope.freq_base".into(), Gv::F32(hp.rope_theta)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Gv::F32(hp.rms_eps),
        ),
        ("tokenizer.ggml.model".into(), Gv::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Gv::String(v.pre.into())),
        (
            "tokenizer.ggml.tokens".into(),
            Gv::Array(v.tokens.iter().cloned().map(Gv::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Gv::Array(v.types.iter().copied().map(Gv::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Gv::Array(v.merges.iter().cloned().map(Gv::String).collect()),
        ),
    ]);
    for (key, id) in [
        ("bos", v.bos),
        ("eos", v.eos),
        ("unknown", v.unk),
        ("padding", v.pad),
    ] {
        if let Some(id) = id {
            md.push((format!("tokenizer.ggml.{key}_token_id"), Gv::U32(id)));
        }
    }
    md.push(("tokenizer.ggml.add_bos_token".into(), Gv::Bool(v.add_bos)));
    md.push(("tokenizer.ggml.add_eos_token".into(), Gv::Bool(v.add_eos)));
    if v.add_space_prefix {
        md.push(("tokenizer.ggml.add_space_prefix".into(), Gv::Bool(true)));
    }
    if let Some(t) = &v.chat_template {
        md.push(("tokenizer.chat_template".into(), Gv::String(t.clone())));
    }
    md
}

/// Converts the checkpoint `weights` (safetensors files of one model) described by `plan`
/// into a GGUF at `out`, quantized as `q` says; `name` is `general.name`. Written through a
/// temporary file and renamed. Tensors are read one at a time (memory-mapped); the quantized
/// tensors are held until the file is written.
pub(crate) fn write(
    plan: &Plan,
    weights: &[PathBuf],
    q: Quantization,
    name: &str,
    out: &Path,
    observer: &dyn Observer,
) -> Result<()> {
    let first = weights.first().cloned().unwrap_or_default();
    let conv = |message: String| ImportError::Convert {
        path: first.clone(),
        message,
    };
    // SAFETY: the files are the source's checkpoint (or this importer's own conversion),
    // which nothing writes while the import reads them; candle reads them through the map.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::multi(weights) }
        .map_err(|e| conv(format!("reading the safetensors: {e}")))?;
    let hp = &plan.hp;

    // Every tensor, mapped to its GGUF name, in llama.cpp's order.
    let mut mapped: BTreeMap<(usize, String), (String, Role)> = BTreeMap::new();
    let mut total = 0u64;
    for (hf, view) in st.tensors() {
        let Some((gname, role)) = gguf_name(&hf)? else {
            continue;
        };
        if role == Role::Output && hp.tied {
            continue;
        }
        let order = match gname.as_str() {
            "token_embd.weight" => 0,
            "output_norm.weight" => usize::MAX - 1,
            "output.weight" => usize::MAX,
            _ => {
                1 + gname
                    .split('.')
                    .nth(1)
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0)
            }
        };
        total += view.data().len() as u64;
        mapped.insert((order, gname), (hf, role));
    }
    let mut want = vec!["token_embd.weight".to_string(), "output_norm.weight".into()];
    if !hp.tied {
        want.push("output.weight".into());
    }
    for n in 0..hp.layers {
        for t in [
            "attn_q",
            "attn_k",
            "attn_v",
            "attn_output",
            "ffn_gate",
            "ffn_up",
            "ffn_down",
            "attn_norm",
            "ffn_norm",
        ] {
            want.push(format!("blk.{n}.{t}.weight"));
        }
    }
    let have: std::collections::HashSet<&String> = mapped.keys().map(|(_, n)| n).collect();
    if let Some(missing) = want.iter().find(|w| !have.contains(w)) {
        return Err(conv(format!(
            "the checkpoint has no tensor for {missing} (config.json says {} layers{})",
            hp.layers,
            if hp.tied { "" } else { ", untied lm_head" }
        )));
    }
    if mapped.len() != want.len() {
        let extra: Vec<&String> = mapped
            .keys()
            .map(|(_, n)| n)
            .filter(|n| !want.contains(n))
            .collect();
        return Err(conv(format!(
            "tensors beyond config.json's {} layers: {extra:?}",
            hp.layers
        )));
    }

    observer.begin(&format!("quantizing to {q}"), Some(total));
    let head_dim = hp.embd / hp.heads;
    let expect_shape = |role: Role, gname: &str| -> Vec<usize> {
        match role {
            Role::Embed | Role::Output => vec![hp.vocab, hp.embd],
            Role::Query => vec![hp.embd, hp.embd],
            Role::Key => vec![hp.kv_heads * head_dim, hp.embd],
            Role::Norm => vec![hp.embd],
            Role::Matrix => {
                if gname.ends_with("attn_v.weight") {
                    vec![hp.kv_heads * head_dim, hp.embd]
                } else if gname.ends_with("attn_output.weight") {
                    vec![hp.embd, hp.embd]
                } else if gname.ends_with("ffn_down.weight") {
                    vec![hp.embd, hp.ff]
                } else {
                    vec![hp.ff, hp.embd]
                }
            }
        }
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(mapped.len());
    for ((_, gname), (hf, role)) in &mapped {
        let view_bytes = st.get(hf).map(|v| v.data().len() as u64).unwrap_or(0);
        let t = st
            .load(hf, &Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| conv(format!("{hf}: {e}")))?;
        let expected = expect_shape(*role, gname);
        if t.dims() != expected.as_slice() {
            return Err(conv(format!(
                "{hf}: shape {:?}, config.json implies {expected:?}",
                t.dims()
            )));
        }
        let t = match role {
            Role::Query => permute(&t, hp.heads),
            Role::Key => permute(&t, hp.kv_heads),
            _ => Ok(t),
        }
        .map_err(|e| conv(format!("{hf}: {e}")))?;
        let dtype = storage_type(q, *role, t.dims(), hp.tied);
        let qt = QTensor::quantize(&t, dtype).map_err(|e| conv(format!("{hf}: {e}")))?;
        tensors.push((gname.clone(), qt));
        observer.advance(view_bytes);
    }
    observer.end();

    let md = metadata(plan, q, name);
    let md_refs: Vec<(&str, &Gv)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    observer.begin(&format!("writing {GGUF_FILE}"), None);
    let tmp = out.with_extension(format!("gguf.tmp-{}", std::process::id()));
    let written = (|| -> Result<()> {
        let f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut w = std::io::BufWriter::new(f);
        gguf_file::write(&mut w, &md_refs, &t_refs)
            .map_err(|e| conv(format!("writing {}: {e}", tmp.display())))?;
        w.flush().map_err(io(&tmp))?;
        let f = w
            .into_inner()
            .map_err(|e| ImportError::io(&tmp, e.into_error()))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, out).map_err(io(out))
    })();
    observer.end();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_interleaves_the_rotary_halves_of_each_head() -> candle_core::Result<()> {
        // 2 heads of 4 rows: HF rows (per head) [a0 a1 b0 b1] with a = first half, b = second.
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        let w = Tensor::from_vec(rows, (8, 1), &Device::Cpu)?;
        let p: Vec<f32> = permute(&w, 2)?.flatten_all()?.to_vec1()?;
        assert_eq!(p, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
        Ok(())
    }

    #[test]
    fn storage_types_follow_llama_cpp() {
        use GgmlDType as G;
        let q4 = Quantization::Q4_0;
        let q8 = Quantization::Q8_0;
        assert_eq!(storage_type(q8, Role::Norm, &[64], false), G::F32);
        assert_eq!(storage_type(q8, Role::Matrix, &[128, 64], false), G::Q8_0);
        assert_eq!(storage_type(q8, Role::Embed, &[384, 64], true), G::Q8_0);
        assert_eq!(storage_type(q4, Role::Query, &[64, 64], false), G::Q4_0);
        // Rows of 48 values are not whole blocks of 32: F16.
        assert_eq!(storage_type(q4, Role::Matrix, &[64, 48], false), G::F16);
        assert_eq!(storage_type(q8, Role::Matrix, &[64, 48], false), G::F16);
        // The q4_0 output head: Q6_K on rows of 256k values, else Q8_0.
        assert_eq!(storage_type(q4, Role::Output, &[1000, 512], false), G::Q6K);
        assert_eq!(storage_type(q4, Role::Embed, &[1000, 512], true), G::Q6K);
        assert_eq!(storage_type(q4, Role::Embed, &[1000, 512], false), G::Q4_0);
        assert_eq!(storage_type(q4, Role::Embed, &[384, 64], true), G::Q8_0);
    }

    #[test]
    fn names_map_as_the_convert_script_does() -> Result<()> {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.k_proj.weight")?,
            Some(("blk.3.attn_k.weight".to_string(), Role::Key))
        );
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight")?,
            Some(("blk.0.ffn_norm.weight".to_string(), Role::Norm))
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq")?,
            None
        );
        assert!(gguf_name("model.layers.0.self_attn.q_proj.bias").is_err());
        assert!(gguf_name("transformer.h.0.attn.c_attn.weight").is_err());
        assert_eq!("Q8_0".parse::<Quantization>()?, Quantization::Q8_0);
        assert!("q5_k".parse::<Quantization>().is_err());
        Ok(())
    }
}
