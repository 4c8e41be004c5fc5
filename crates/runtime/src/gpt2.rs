//! GPT-2 decoders on candle (candle-transformers has none): `GPT2LMHeadModel` safetensors
//! and `tokenizer.json`, greedy or sampled generation with a KV cache.

use std::time::Instant;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::encoder::LayerNorm;
use crate::error::{Result, RuntimeError};
use crate::generate::{GenerateParams, Generation, StopReason, find_stop, sample, tokens_per_s};
use crate::spec::{ModelSpec, config_usize};

/// GPT-2's `Conv1D`: `y = x·W + b` with `W` stored `[in, out]`.
struct Conv1D {
    weight: Tensor,
    bias: Tensor,
}

impl Conv1D {
    fn load(vb: VarBuilder, inp: usize, out: usize) -> Result<Self> {
        Ok(Self {
            weight: vb.get((inp, out), "weight")?,
            bias: vb.get(out, "bias")?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight)?.broadcast_add(&self.bias)?)
    }
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    c_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

/// A loaded GPT-2.
pub struct Gpt2 {
    n_embd: usize,
    n_head: usize,
    n_positions: usize,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    tokenizer: Tokenizer,
    eos: Option<u32>,
    /// Keys and values of the positions seen so far, per layer: `[heads, len, head_dim]`.
    cache: Vec<Option<(Tensor, Tensor)>>,
    bytes: u64,
}

impl Gpt2 {
    /// Loads `spec` (a `GPT2LMHeadModel` folder: config.json, model.safetensors,
    /// tokenizer.json).
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self> {
        let c = &spec.config;
        let n_embd = config_usize(c, "n_embd")?;
        let n_head = config_usize(c, "n_head")?;
        let n_layer = config_usize(c, "n_layer")?;
        let n_positions = config_usize(c, "n_positions")?;
        let vocab = config_usize(c, "vocab_size")?;
        let eps = c
            .get("layer_norm_epsilon")
            .and_then(Value::as_f64)
            .unwrap_or(1e-5);
        let act = c
            .get("activation_function")
            .and_then(Value::as_str)
            .unwrap_or("gelu_new");
        if act != "gelu_new" {
            return Err(RuntimeError::Unsupported(format!(
                "GPT-2 activation_function {act:?}"
            )));
        }
        if !n_embd.is_multiple_of(n_head) {
            return Err(RuntimeError::InvalidModel(format!(
                "config.json: n_embd {n_embd} is not a multiple of n_head {n_head}"
            )));
        }
        // SAFETY: mapped read-only; model files are immutable once verified by the store.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&spec.weights], DType::F32, device)? };
        let vb = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let wte = vb.get((vocab, n_embd), "wte.weight")?;
        let wpe = vb.get((n_positions, n_embd), "wpe.weight")?;
        let blocks = (0..n_layer)
            .map(|i| {
                let b = vb.pp("h").pp(i);
                Ok(Block {
                    ln_1: LayerNorm::load(b.pp("ln_1"), n_embd, eps)?,
                    c_attn: Conv1D::load(b.pp("attn").pp("c_attn"), n_embd, 3 * n_embd)?,
                    c_proj: Conv1D::load(b.pp("attn").pp("c_proj"), n_embd, n_embd)?,
                    ln_2: LayerNorm::load(b.pp("ln_2"), n_embd, eps)?,
                    c_fc: Conv1D::load(b.pp("mlp").pp("c_fc"), n_embd, 4 * n_embd)?,
                    mlp_proj: Conv1D::load(b.pp("mlp").pp("c_proj"), 4 * n_embd, n_embd)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::load(vb.pp("ln_f"), n_embd, eps)?;
        let tok_path = spec
            .tokenizer
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidModel("GPT-2 needs tokenizer.json".into()))?;
        let tokenizer = Tokenizer::from_file(tok_path)
            .map_err(|e| RuntimeError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        let eos = c
            .get("eos_token_id")
            .and_then(Value::as_u64)
            .map(|v| v as u32)
            .or_else(|| tokenizer.token_to_id("<|endoftext|>"));
        let per_layer = 12 * n_embd * n_embd;
        let bytes = ((vocab + n_positions) * n_embd + n_layer * per_layer) as u64 * 4;
        Ok(Self {
            n_embd,
            n_head,
            n_positions,
            wte,
            wpe,
            cache: vec![None; blocks.len()],
            blocks,
            ln_f,
            tokenizer,
            eos,
            bytes,
        })
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> u64 {
        self.bytes
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Forgets the cached keys and values.
    pub fn clear_cache(&mut self) {
        self.cache.iter_mut().for_each(|c| *c = None);
    }

    /// Runs `tokens` at positions `pos..`, extending the cache; returns the logits of the
    /// last position, `[vocab]`.
    pub fn forward(&mut self, tokens: &[u32], pos: usize) -> Result<Tensor> {
        let s = tokens.len();
        if s == 0 || pos + s > self.n_positions {
            return Err(RuntimeError::InvalidInput(format!(
                "{} tokens at position {pos}: the model takes {} positions",
                s, self.n_positions
            )));
        }
        let dev = self.wte.device().clone();
        let (e, h) = (self.n_embd, self.n_head);
        let d = e / h;
        let ids = Tensor::from_slice(tokens, s, &dev)?;
        let mut x = self
            .wte
            .index_select(&ids, 0)?
            .add(&self.wpe.narrow(0, pos, s)?)?;
        let total = pos + s;
        let mask = if s > 1 {
            let m: Vec<f32> = (0..s)
                .flat_map(|i| {
                    (0..total).map(move |j| if j > pos + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(m, (s, total), &dev)?)
        } else {
            None
        };
        let scale = 1.0 / (d as f64).sqrt();
        for (block, cache) in self.blocks.iter().zip(self.cache.iter_mut()) {
            let qkv = block.c_attn.forward(&block.ln_1.forward(&x)?)?;
            let heads = |t: Tensor| -> Result<Tensor> {
                Ok(t.reshape((s, h, d))?.transpose(0, 1)?.contiguous()?)
            };
            let q = heads(qkv.narrow(1, 0, e)?)?;
            let mut k = heads(qkv.narrow(1, e, e)?)?;
            let mut v = heads(qkv.narrow(1, 2 * e, e)?)?;
            if let Some((pk, pv)) = cache.as_ref() {
                k = Tensor::cat(&[pk, &k], 1)?;
                v = Tensor::cat(&[pv, &v], 1)?;
            }
            *cache = Some((k.clone(), v.clone()));
            let mut att = (q.matmul(&k.t()?)? * scale)?;
            if let Some(m) = &mask {
                att = att.broadcast_add(m)?;
            }
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let y = att
                .matmul(&v)?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((s, e))?;
            x = (x + block.c_proj.forward(&y)?)?;
            let m = block.c_fc.forward(&block.ln_2.forward(&x)?)?.gelu()?;
            x = (x + block.mlp_proj.forward(&m)?)?;
        }
        let last = self.ln_f.forward(&x.narrow(0, s - 1, 1)?)?;
        Ok(last.matmul(&self.wte.t()?)?.squeeze(0)?)
    }

    /// Generates a continuation of `prompt` (the cache is cleared first).
    pub fn generate(&mut self, prompt: &str, params: &GenerateParams) -> Result<Generation> {
        params.validate()?;
        if prompt.is_empty() {
            return Err(RuntimeError::InvalidInput("empty prompt".into()));
        }
        let enc = self
            .tokenizer
            .encode(prompt, false)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        let prompt_ids = enc.get_ids().to_vec();
        if prompt_ids.len() >= self.n_positions {
            return Err(RuntimeError::InvalidInput(format!(
                "the prompt is {} tokens; the model takes {}",
                prompt_ids.len(),
                self.n_positions
            )));
        }
        self.clear_cache();
        let mut sampler = params.sampler();
        let t0 = Instant::now();
        let mut logits = self.forward(&prompt_ids, 0)?;
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let mut tokens = Vec::new();
        let mut text = String::new();
        let stop_reason = loop {
            let next = sample(&mut sampler, &logits)?;
            if Some(next) == self.eos {
                break StopReason::EndOfSequence;
            }
            tokens.push(next);
            text = self
                .tokenizer
                .decode(&tokens, true)
                .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
            if let Some(cut) = find_stop(&text, &params.stop) {
                text.truncate(cut);
                break StopReason::StopString;
            }
            if tokens.len() >= params.max_tokens {
                break StopReason::Length;
            }
            let pos = prompt_ids.len() + tokens.len() - 1;
            if pos + 1 >= self.n_positions {
                break StopReason::ContextFull;
            }
            logits = self.forward(&[next], pos)?;
        };
        let decode_s = t1.elapsed().as_secs_f64();
        let steps = tokens.len().saturating_sub(1);
        Ok(Generation {
            text,
            tokens,
            prompt_tokens: prompt_ids.len(),
            stop_reason,
            prompt_ms,
            tokens_per_s: tokens_per_s(steps, decode_s),
        })
    }

    /// Index of the largest logit (for tests).
    pub fn argmax(logits: &Tensor) -> Result<u32> {
        Ok(logits.argmax(D::Minus1)?.to_scalar::<u32>()?)
    }
}
