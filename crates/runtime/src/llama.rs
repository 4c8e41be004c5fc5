//! Llama-family decoders from GGUF files: text generation on candle's quantized llama.
//!
//! Owns: reading a GGUF file (hyper-parameters and tensors through candle's
//! [`quantized_llama::ModelWeights`], the tokenizer rebuilt from the `tokenizer.ggml.*`
//! metadata, the chat template), and the generation loop (prompt in one forward pass, then one
//! token per step on the KV cache; greedy or seeded sampling; `max_tokens`, stop strings, EOS
//! and context-full stops; timings).
//!
//! Must never: panic on a file or a request (every fault is a [`RuntimeError`]), or read the
//! whole file into the heap at once (tensors are read one by one from the file).
//!
//! Main type: [`Llama`]. [`Llama::load`] keeps the weights quantized as stored (candle's
//! quantized matmul, which quantizes activations to 8 bits, so greedy output can drift from a
//! float32 implementation after some tokens); [`Llama::load_dequantized`] is the verification
//! mode: every weight is dequantized to float32 at load, which is what PyTorch/transformers
//! runs when it loads a GGUF, and greedy output matches it token for token.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_llama::{self, ModelWeights};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

use crate::error::{Result, RuntimeError};
use crate::generate::{GenerateParams, Generation, StopReason, find_stop, sample};

/// The most positions the runtime attends over: candle precomputes its rotary tables for
/// this many ([`quantized_llama::MAX_SEQ_LEN`]); `llama.context_length` is capped at it.
pub const MAX_CONTEXT: usize = quantized_llama::MAX_SEQ_LEN;

/// GGUF `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Token strings that end a turn or a document in the common llama-family vocabularies; any
/// of them that the vocabulary holds as a control token stops generation, besides
/// `tokenizer.ggml.eos_token_id`.
const END_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
];

/// A loaded llama-family decoder (GGUF): weights, tokenizer and generation settings.
pub struct Llama {
    model: ModelWeights,
    tokenizer: Tokenizer,
    eos: HashSet<u32>,
    bos: Option<u32>,
    add_bos: bool,
    device: Device,
    context_length: usize,
    weight_bytes: u64,
    chat_template: Option<String>,
    path: PathBuf,
}

impl std::fmt::Debug for Llama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llama")
            .field("path", &self.path)
            .field("context_length", &self.context_length)
            .field("weight_bytes", &self.weight_bytes)
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl Llama {
    /// Loads a GGUF file (reads tensors from the file; no copy of the whole file into the heap
    /// beyond what candle needs). Weights stay quantized as stored.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_inner(path, device, false)
    }

    /// Loads a GGUF file with every weight dequantized to float32 (the verification mode):
    /// slower and about 4–8 times the memory of [`Llama::load`], but numerically what a float32
    /// reference (PyTorch/transformers on the same GGUF) computes.
    pub fn load_dequantized(path: &Path, device: &Device) -> Result<Self> {
        Self::load_inner(path, device, true)
    }

    fn load_inner(path: &Path, device: &Device, dequantize: bool) -> Result<Self> {
        let file = File::open(path).map_err(|e| RuntimeError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| invalid(path, format!("not a readable GGUF file: {e}")))?;
        let md = &content.metadata;

        let arch = md_str(md, "general.architecture").unwrap_or("");
        if arch != "llama" {
            return Err(RuntimeError::Unsupported(format!(
                "{}: GGUF architecture {arch:?}; only \"llama\" is supported",
                path.display()
            )));
        }
        for key in [
            "llama.attention.head_count",
            "llama.attention.head_count_kv",
            "llama.block_count",
            "llama.embedding_length",
            "llama.rope.dimension_count",
        ] {
            match md.get(key).map(Value::to_u32) {
                Some(Ok(v)) if v > 0 => {}
                _ => {
                    return Err(invalid(
                        path,
                        format!("metadata {key} missing or not a positive u32"),
                    ));
                }
            }
        }
        if md
            .get("llama.attention.layer_norm_rms_epsilon")
            .map(Value::to_f32)
            .is_none_or(|v| v.is_err())
        {
            return Err(invalid(
                path,
                "metadata llama.attention.layer_norm_rms_epsilon missing".into(),
            ));
        }
        let heads = md_u32(md, "llama.attention.head_count").unwrap_or(1) as usize;
        let kv_heads = md_u32(md, "llama.attention.head_count_kv").unwrap_or(1) as usize;
        let embedding = md_u32(md, "llama.embedding_length").unwrap_or(1) as usize;
        if !heads.is_multiple_of(kv_heads) || !embedding.is_multiple_of(heads) {
            return Err(invalid(
                path,
                format!(
                    "{heads} heads, {kv_heads} kv heads and embedding {embedding} do not divide"
                ),
            ));
        }
        if let Some(Ok(n)) = md.get("llama.expert_count").map(Value::to_u32)
            && n > 1
        {
            return Err(RuntimeError::Unsupported(format!(
                "{}: mixture-of-experts llama ({n} experts)",
                path.display()
            )));
        }
        // candle precomputes rotary tables for MAX_CONTEXT positions; beyond that it cannot go.
        let context_length = md_u32(md, "llama.context_length")
            .map(|c| c as usize)
            .unwrap_or(MAX_CONTEXT)
            .clamp(1, MAX_CONTEXT);

        let gguf_tok = GgufTokenizer::from_metadata(md).map_err(|e| invalid(path, e))?;
        let chat_template = md_str(md, "tokenizer.chat_template").map(str::to_owned);

        // Bytes held: every tensor as stored (or as f32), plus the f32 copy candle makes of the
        // token embeddings (the quantized one also serves as the output head when
        // `output.weight` is absent).
        let mut weight_bytes = 0u64;
        for (name, info) in &content.tensor_infos {
            let elems = info.shape.elem_count() as u64;
            let held = held_dtype(info.ggml_dtype, dequantize, &info.shape);
            let stored = elems / held.block_size().max(1) as u64 * held.type_size() as u64;
            weight_bytes += stored;
            if name == "token_embd.weight" {
                weight_bytes += elems * 4;
            }
        }

        let model = if needs_conversion(&content, dequantize) {
            let (held, mut data) = converted_content(content, &mut reader, path, dequantize)?;
            ModelWeights::from_gguf(held, &mut data, device)
        } else {
            ModelWeights::from_gguf(content, &mut reader, device)
        }
        .map_err(|e| invalid(path, format!("loading the weights: {e}")))?;

        Ok(Self {
            model,
            tokenizer: gguf_tok.tokenizer,
            eos: gguf_tok.eos,
            bos: gguf_tok.bos,
            add_bos: gguf_tok.add_bos,
            device: device.clone(),
            context_length,
            weight_bytes,
            chat_template,
            path: path.to_path_buf(),
        })
    }

    /// Generates a continuation of `prompt` (raw text, no chat template applied). Clears the
    /// KV cache first, so calls are independent.
    ///
    /// The prompt goes through the model in one forward pass, then one token per step. The
    /// result's `tokens` are the sampled ids (an end-of-sequence token that stops generation is
    /// not included); `text` is their decoding without special tokens, cut before the earliest
    /// stop string. `tokens_per_s` counts the steps after the prompt (0 when there were none).
    pub fn generate(&mut self, prompt: &str, params: &GenerateParams) -> Result<Generation> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(RuntimeError::InvalidInput("the prompt is empty".into()));
        }
        let mut prompt_ids = self.encode(prompt)?;
        if self.add_bos
            && let Some(bos) = self.bos
            && prompt_ids.first() != Some(&bos)
        {
            prompt_ids.insert(0, bos);
        }
        if prompt_ids.is_empty() {
            return Err(RuntimeError::InvalidInput(
                "the prompt encodes to no tokens".into(),
            ));
        }
        if prompt_ids.len() > self.context_length {
            return Err(RuntimeError::InvalidInput(format!(
                "the prompt has {} tokens; the context holds {}",
                prompt_ids.len(),
                self.context_length
            )));
        }

        self.model.clear_kv_cache();
        let mut sampler = params.sampler();

        let start = Instant::now();
        let input = Tensor::new(prompt_ids.as_slice(), &self.device)?.unsqueeze(0)?;
        let mut logits = self.forward(&input, 0)?;
        let prompt_ms = start.elapsed().as_secs_f64() * 1e3;

        let decode_start = Instant::now();
        let mut steps = 0usize;
        let mut tokens: Vec<u32> = Vec::new();
        let mut stream = TextStream::default();
        let mut stop_at: Option<usize> = None;
        let stop_reason = loop {
            let next = sample(&mut sampler, &logits)?;
            if self.eos.contains(&next) {
                break StopReason::EndOfSequence;
            }
            tokens.push(next);
            if !params.stop.is_empty() {
                stream.push(&self.tokenizer, &tokens)?;
                if let Some(at) = find_stop(stream.text(), &params.stop) {
                    stop_at = Some(at);
                    break StopReason::StopString;
                }
            }
            if tokens.len() >= params.max_tokens {
                break StopReason::Length;
            }
            let pos = prompt_ids.len() + tokens.len() - 1;
            if pos >= self.context_length {
                break StopReason::ContextFull;
            }
            let input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
            logits = self.forward(&input, pos)?;
            steps += 1;
        };
        let decode_s = decode_start.elapsed().as_secs_f64();

        let mut text = match stop_at {
            Some(_) => stream.text().to_owned(),
            None => self.decode(&tokens)?,
        };
        if let Some(at) = stop_at.or_else(|| find_stop(&text, &params.stop)) {
            text.truncate(at);
        }
        let tokens_per_s = crate::generate::tokens_per_s(steps, decode_s);
        Ok(Generation {
            text,
            tokens,
            prompt_tokens: prompt_ids.len(),
            stop_reason,
            prompt_ms,
            tokens_per_s,
        })
    }

    /// Applies the model's chat template for one user message. Templates in the ChatML format
    /// (`<|im_start|>role\n…<|im_end|>\n`, e.g. SmolLM2, Qwen) are rendered, including a
    /// default system message the template inserts when the conversation has none; without a
    /// template, or with one of another format, the message is returned unchanged.
    pub fn chat_prompt(&self, user_message: &str) -> String {
        match self.chat_template.as_deref() {
            Some(t) if t.contains("<|im_start|>") => {
                let mut s = chatml_default_system(t).unwrap_or_default();
                s.push_str("<|im_start|>user\n");
                s.push_str(user_message);
                s.push_str("<|im_end|>\n<|im_start|>assistant\n");
                s
            }
            _ => user_message.to_owned(),
        }
    }

    /// The logits of the last of `tokens` (ids, no BOS added) at positions `pos..`, as
    /// `[vocab]` f32: with `pos` 0 the KV cache starts afresh; otherwise it must hold the
    /// `pos` tokens before (from earlier calls). For verification against a reference
    /// implementation.
    pub fn logits(&mut self, tokens: &[u32], pos: usize) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(RuntimeError::InvalidInput("no tokens".into()));
        }
        let vocab = self.tokenizer.get_vocab_size(true);
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(RuntimeError::InvalidInput(format!(
                "token id {t} is beyond the vocabulary ({vocab})"
            )));
        }
        if pos + tokens.len() > self.context_length {
            return Err(RuntimeError::InvalidInput(format!(
                "{} positions; the context holds {}",
                pos + tokens.len(),
                self.context_length
            )));
        }
        if pos == 0 {
            self.model.clear_kv_cache();
        }
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        Ok(self.forward(&input, pos)?.to_vec1::<f32>()?)
    }

    /// Bytes of weights held (approximate, for the LRU cache).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The context length: `llama.context_length` from the metadata, capped at the positions
    /// candle's rotary tables cover ([`quantized_llama::MAX_SEQ_LEN`], 4096).
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The tokenizer (for tests and benchmarks).
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.tokenizer
    }

    /// The ids that end generation (`tokenizer.ggml.eos_token_id` and the vocabulary's other
    /// end-of-turn control tokens).
    pub fn eos_token_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.eos.iter().copied().collect();
        v.sort_unstable();
        v
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))
    }

    /// One forward pass; the last position's logits as `[vocab]` f32.
    fn forward(&mut self, input: &Tensor, pos: usize) -> Result<Tensor> {
        let logits = self.model.forward(input, pos)?;
        Ok(logits.squeeze(0)?.to_dtype(DType::F32)?)
    }
}

/// Incremental decoding for stop strings: appends the text of new tokens once they decode to
/// whole characters (a byte-level token can end inside a UTF-8 sequence).
#[derive(Default)]
struct TextStream {
    text: String,
    /// Tokens before `prefix` are settled; `tokens[prefix..read]` decode to the tail of `text`
    /// used as context for the next piece.
    prefix: usize,
    read: usize,
}

impl TextStream {
    fn push(&mut self, tok: &Tokenizer, tokens: &[u32]) -> Result<()> {
        let dec = |ids: &[u32]| {
            tok.decode(ids, true)
                .map_err(|e| RuntimeError::Tokenizer(e.to_string()))
        };
        let before = dec(tokens.get(self.prefix..self.read).unwrap_or(&[]))?;
        let now = dec(tokens.get(self.prefix..).unwrap_or(&[]))?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            match now.strip_prefix(before.as_str()) {
                Some(new) => self.text.push_str(new),
                // The decoding of the longer run does not extend the shorter one (should not
                // happen with byte-level BPE); re-decode everything.
                None => self.text = dec(tokens)?,
            }
            self.prefix = self.read;
            self.read = tokens.len();
        }
        Ok(())
    }

    fn text(&self) -> &str {
        &self.text
    }
}

/// The tokenizer and special ids described by a GGUF file's `tokenizer.ggml.*` metadata.
struct GgufTokenizer {
    tokenizer: Tokenizer,
    eos: HashSet<u32>,
    bos: Option<u32>,
    add_bos: bool,
}

impl GgufTokenizer {
    fn from_metadata(
        md: &std::collections::HashMap<String, Value>,
    ) -> std::result::Result<Self, String> {
        let model = md_str(md, "tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(format!(
                "tokenizer.ggml.model {model:?}: only \"gpt2\" (byte-level BPE) is supported"
            ));
        }
        let tokens = md
            .get("tokenizer.ggml.tokens")
            .ok_or("metadata tokenizer.ggml.tokens missing")?
            .to_vec()
            .map_err(|e| format!("tokenizer.ggml.tokens: {e}"))?;
        let tokens: Vec<&String> = tokens
            .iter()
            .map(|v| v.to_string())
            .collect::<candle_core::Result<_>>()
            .map_err(|e| format!("tokenizer.ggml.tokens: {e}"))?;
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(format!(
                "tokenizer.ggml.tokens has {} entries",
                tokens.len()
            ));
        }
        let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(v) => v
                .to_vec()
                .and_then(|a| a.iter().map(Value::to_i32).collect())
                .map_err(|e| format!("tokenizer.ggml.token_type: {e}"))?,
        };
        if types.len() != tokens.len() {
            return Err(format!(
                "tokenizer.ggml.token_type has {} entries for {} tokens",
                types.len(),
                tokens.len()
            ));
        }
        let merges = md
            .get("tokenizer.ggml.merges")
            .ok_or("metadata tokenizer.ggml.merges missing")?
            .to_vec()
            .map_err(|e| format!("tokenizer.ggml.merges: {e}"))?;
        let merges: Vec<(String, String)> = merges
            .iter()
            .map(|v| {
                let s = v
                    .to_string()
                    .map_err(|e| format!("tokenizer.ggml.merges: {e}"))?;
                s.split_once(' ')
                    .map(|(a, b)| (a.to_owned(), b.to_owned()))
                    .ok_or_else(|| format!("tokenizer.ggml.merges: {s:?} is not two tokens"))
            })
            .collect::<std::result::Result<_, _>>()?;

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| ((*t).clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| format!("building the BPE model: {e}"))?;
        let mut tokenizer = Tokenizer::new(bpe);

        // llama.cpp's pre-tokenizers: the GPT-2 split, with some vocabularies splitting digits
        // one by one first (SmolLM, StarCoder: `\p{N}` before the GPT-2 regex).
        let pre = md_str(md, "tokenizer.ggml.pre").unwrap_or("default");
        let add_prefix_space = md
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        let byte_level = ByteLevel::new(add_prefix_space, false, true);
        let pre_tokenizer: PreTokenizerWrapper = match pre {
            "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" => Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ])
            .into(),
            "gpt2" | "gpt-2" | "default" | "phi-2" | "jina-es" | "jina-de" | "mpt" | "olmo" => {
                byte_level.into()
            }
            other => {
                tracing::warn!(
                    pre = other,
                    "unknown tokenizer.ggml.pre; using the GPT-2 split"
                );
                byte_level.into()
            }
        };
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        // Control and user-defined tokens are matched whole in the input, before the BPE.
        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == TOKEN_TYPE_CONTROL || **t == TOKEN_TYPE_USER_DEFINED)
            .map(|(s, t)| {
                AddedToken::from((*s).clone(), *t == TOKEN_TYPE_CONTROL).normalized(false)
            })
            .collect();
        tokenizer
            .add_special_tokens(added)
            .map_err(|e| format!("adding special tokens: {e}"))?;

        let id = |key: &str| -> Option<u32> {
            md.get(key)
                .and_then(|v| v.to_u32().ok())
                .filter(|&i| (i as usize) < tokens.len())
        };
        let mut eos = HashSet::new();
        if let Some(e) = id("tokenizer.ggml.eos_token_id") {
            eos.insert(e);
        }
        if let Some(e) = id("tokenizer.ggml.eot_token_id") {
            eos.insert(e);
        }
        for (i, (s, t)) in tokens.iter().zip(&types).enumerate() {
            if *t == TOKEN_TYPE_CONTROL && END_TOKENS.contains(&s.as_str()) {
                eos.insert(i as u32);
            }
        }
        let bos = id("tokenizer.ggml.bos_token_id");
        let add_bos = md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false);
        Ok(Self {
            tokenizer,
            eos,
            bos,
            add_bos,
        })
    }
}

/// The default system turn of a ChatML template (`<|im_start|>system\n…<|im_end|>\n` as a
/// literal the template emits when the first message is not a system one), if it has one.
fn chatml_default_system(template: &str) -> Option<String> {
    const OPEN: &str = "<|im_start|>system";
    const CLOSE: &str = "<|im_end|>";
    if !template.contains("!= 'system'") && !template.contains("!= \"system\"") {
        return None;
    }
    let start = template.find(OPEN)?;
    let rest = template.get(start..)?;
    let end = rest.find(CLOSE)? + CLOSE.len();
    let literal = rest.get(..end)?;
    // Jinja quotes: the turn must be one string literal, not built from variables.
    if literal.contains('\'') || literal.contains('"') || literal.contains("{{") {
        return None;
    }
    let mut s = literal.replace("\\n", "\n");
    s.push('\n');
    Some(s)
}

/// How a tensor is held after loading: as stored, or converted.
fn held_dtype(stored: GgmlDType, dequantize: bool, shape: &candle_core::Shape) -> GgmlDType {
    if dequantize {
        return GgmlDType::F32;
    }
    match stored {
        // candle 0.11 has SIMD dot products for Q4_0, Q8_0 and the K-quants but a scalar loop
        // for these; their values requantized to Q8_0 (8-bit, blocks of 32) lose next to
        // nothing and run on the AVX2 path.
        GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
            if shape
                .dims()
                .last()
                .is_some_and(|&d| d.is_multiple_of(GgmlDType::Q8_0.block_size())) =>
        {
            GgmlDType::Q8_0
        }
        other => other,
    }
}

/// Whether some tensor of `content` is held in another type than stored.
fn needs_conversion(content: &gguf_file::Content, dequantize: bool) -> bool {
    content
        .tensor_infos
        .values()
        .any(|i| held_dtype(i.ggml_dtype, dequantize, &i.shape) != i.ggml_dtype)
}

/// Reads every tensor of `content` and returns a [`gguf_file::Content`] whose tensors are held
/// as [`held_dtype`] says, with their bytes in memory.
fn converted_content(
    content: gguf_file::Content,
    reader: &mut BufReader<File>,
    path: &Path,
    dequantize: bool,
) -> Result<(gguf_file::Content, Cursor<Vec<u8>>)> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let size = |dtype: GgmlDType, elems: usize| elems / dtype.block_size() * dtype.type_size();
    let total: usize = content
        .tensor_infos
        .values()
        .map(|i| {
            size(
                held_dtype(i.ggml_dtype, dequantize, &i.shape),
                i.shape.elem_count(),
            )
        })
        .sum();
    let mut data: Vec<u8> = Vec::with_capacity(total);
    let mut infos = std::collections::HashMap::new();
    for name in names {
        let q = content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| invalid(path, format!("tensor {name}: {e}")))?;
        let target = held_dtype(q.dtype(), dequantize, q.shape());
        let offset = data.len() as u64;
        if target == GgmlDType::F32 {
            let t = q.dequantize(&Device::Cpu)?.to_dtype(DType::F32)?;
            for v in t.flatten_all()?.to_vec1::<f32>()? {
                data.extend_from_slice(&v.to_le_bytes());
            }
        } else if target == q.dtype() {
            data.extend_from_slice(&q.data()?);
        } else {
            let t = q.dequantize(&Device::Cpu)?;
            let r = candle_core::quantized::QTensor::quantize(&t, target)
                .map_err(|e| invalid(path, format!("tensor {name} to {target:?}: {e}")))?;
            data.extend_from_slice(&r.data()?);
        }
        infos.insert(
            name.clone(),
            gguf_file::TensorInfo {
                ggml_dtype: target,
                shape: q.shape().clone(),
                offset,
            },
        );
    }
    let held = gguf_file::Content {
        magic: content.magic,
        metadata: content.metadata,
        tensor_infos: infos,
        tensor_data_offset: 0,
    };
    Ok((held, Cursor::new(data)))
}

fn md_str<'a>(md: &'a std::collections::HashMap<String, Value>, key: &str) -> Option<&'a str> {
    md.get(key)
        .and_then(|v| v.to_string().ok())
        .map(String::as_str)
}

fn md_u32(md: &std::collections::HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

fn invalid(path: &Path, msg: String) -> RuntimeError {
    RuntimeError::InvalidModel(format!("{}: {msg}", path.display()))
}

// The model cache and the batcher move loaded models across threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Llama>();
};
