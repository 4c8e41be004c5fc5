//! Whisper speech-to-text on candle: `WhisperForConditionalGeneration` safetensors,
//! `tokenizer.json`, `generation_config.json`, and greedy decoding with a KV cache as
//! transformers' `WhisperForConditionalGeneration.generate` does for short-form audio.
//!
//! The decoder prompt is built as transformers builds it: `decoder_start_token_id`
//! (`<|startoftranscript|>`), then the language (the generation config's `language`, else —
//! for multilingual models, which have `lang_to_id` — the language token the model scores
//! highest after `<|startoftranscript|>` alone, as `detect_language` does), then the task
//! (`task`, else the `forced_decoder_ids` of the config, else `<|transcribe|>` when a
//! language is set), then `<|notimestamps|>`. `suppress_tokens` are masked at every step and
//! `begin_suppress_tokens` at the first generated one; decoding stops at `<|endoftext|>` (not
//! returned) or after `max_new_tokens` (the generation config's, else 224), capped where the
//! decoder's `max_target_positions` end.
//!
//! Audio longer than 30 s is cut into consecutive 30 s windows, each transcribed on its own
//! (no timestamps, no conditioning on the previous window); the tokens are concatenated and
//! the text is their decoding. transformers' long-form mode instead seeks by predicted
//! timestamps, so transcripts of long audio may differ from it near window edges.
//!
//! candle-transformers' own Whisper is not used: it has no self-attention KV cache, uses
//! the tanh approximation of GELU (Whisper uses the exact one) and recomputes the encoder's
//! position table instead of loading it.

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::audio::{CHUNK_FRAMES, CHUNK_SAMPLES, MelExtractor};
use crate::encoder::LayerNorm;
use crate::error::{Result, RuntimeError};
use crate::generate::tokens_per_s;
use crate::kernels::{Dense, Gelu};
use crate::spec::{ModelSpec, config_usize};

/// Default `max_new_tokens` when the generation config sets none.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 224;

/// What transcribing produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transcription {
    /// The text (special tokens skipped).
    pub text: String,
    /// Generated token ids of every window, concatenated (without the prompts and
    /// `<|endoftext|>`).
    pub tokens: Vec<u32>,
    /// The decoder prompt of the first window.
    pub prompt: Vec<u32>,
    /// 30 s windows transcribed.
    pub windows: usize,
    /// Feature extraction and encoder time, milliseconds.
    pub encode_ms: f64,
    /// Decoding time, milliseconds.
    pub decode_ms: f64,
    /// Tokens per second while decoding.
    pub tokens_per_s: f64,
}

/// A linear layer on [`Dense`] (packed once at load; the decoder runs it on one token at a
/// time, where a general GEMM would repack the weight on every call), for inputs of any rank.
struct Lin(Dense);

impl Lin {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut dims = x.dims().to_vec();
        let k = dims.last().copied().unwrap_or(1);
        let m = x.elem_count() / k.max(1);
        let y = self.0.forward(&x.contiguous()?.reshape((m, k))?)?;
        if let Some(last) = dims.last_mut() {
            *last = y.dim(1)?;
        }
        Ok(y.reshape(dims)?)
    }
}

struct Attention {
    q: Lin,
    k: Lin,
    v: Lin,
    out: Lin,
    heads: usize,
}

fn linear(vb: VarBuilder, inp: usize, out: usize, bias: bool) -> Result<Lin> {
    let w = vb.get((out, inp), "weight")?;
    let b = if bias {
        Some(vb.get(out, "bias")?)
    } else {
        None
    };
    Ok(Lin(Dense::new(Linear::new(w, b))?))
}

impl Attention {
    fn load(vb: VarBuilder, d: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            q: linear(vb.pp("q_proj"), d, d, true)?,
            k: linear(vb.pp("k_proj"), d, d, false)?,
            v: linear(vb.pp("v_proj"), d, d, true)?,
            out: linear(vb.pp("out_proj"), d, d, true)?,
            heads,
        })
    }

    /// `[b, s, d]` → `[b, heads, s, d/heads]`.
    fn split(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        Ok(x.reshape((b, s, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()?)
    }

    /// Keys and values of `x`, split into heads: `[b, heads, t, hd]`.
    fn kv(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.split(&self.k.forward(x)?)?,
            self.split(&self.v.forward(x)?)?,
        ))
    }

    /// Attention of the queries of `x` over transposed keys `kt` (`[b, heads, hd, t]`) and
    /// values `v` (`[b, heads, t, hd]`), with an optional additive mask `[s, t]`.
    fn attend(&self, x: &Tensor, kt: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let scale = ((d / self.heads) as f64).powf(-0.5);
        let q = self.split(&(self.q.forward(x)? * scale)?)?;
        let mut att = q.matmul(kt)?;
        if let Some(m) = mask {
            att = att.broadcast_add(m)?;
        }
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att
            .matmul(v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, d))?;
        self.out.forward(&y)
    }
}

struct Mlp {
    fc1: Lin,
    fc2: Lin,
    ln: LayerNorm,
}

impl Mlp {
    fn load(vb: VarBuilder, d: usize, ffn: usize) -> Result<Self> {
        Ok(Self {
            fc1: linear(vb.pp("fc1"), d, ffn, true)?,
            fc2: linear(vb.pp("fc2"), ffn, d, true)?,
            ln: LayerNorm::load(vb.pp("final_layer_norm"), d, 1e-5)?,
        })
    }

    /// `x + fc2(gelu(fc1(ln(x))))`.
    fn residual(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(&self.ln.forward(x)?)?;
        let h = self.fc2.forward(&Gelu::forward(&h)?)?;
        Ok((x + h)?)
    }
}

struct EncoderLayer {
    attn: Attention,
    ln: LayerNorm,
    mlp: Mlp,
}

struct DecoderLayer {
    attn: Attention,
    ln: LayerNorm,
    cross: Attention,
    cross_ln: LayerNorm,
    mlp: Mlp,
}

/// The decoder's per-layer state for one audio window: self-attention keys/values so far
/// and the cross-attention keys (transposed, contiguous) and values of the encoder output.
#[derive(Clone)]
struct Cache {
    own: Vec<Option<(Tensor, Tensor)>>,
    cross: Vec<(Tensor, Tensor)>,
}

/// How the decoder prompt is built (from `generation_config.json`, else `config.json`).
#[derive(Clone, Debug, Default, PartialEq)]
struct PromptConfig {
    start: u32,
    lang_to_id: BTreeMap<String, u32>,
    task_to_id: BTreeMap<String, u32>,
    language: Option<String>,
    task: Option<String>,
    /// `forced_decoder_ids` positions 1.. (None = to be filled, e.g. the detected language).
    forced: Vec<Option<u32>>,
    no_timestamps: Option<u32>,
}

/// A loaded Whisper.
pub struct Whisper {
    d_model: usize,
    n_mels: usize,
    source_positions: usize,
    target_positions: usize,
    conv1: (Tensor, Tensor),
    conv2: (Tensor, Tensor),
    enc_pos: Tensor,
    enc_layers: Vec<EncoderLayer>,
    enc_ln: LayerNorm,
    embed: Tensor,
    dec_pos: Tensor,
    dec_layers: Vec<DecoderLayer>,
    dec_ln: LayerNorm,
    proj: Lin,
    mel: MelExtractor,
    tokenizer: Tokenizer,
    prompt: PromptConfig,
    eos: u32,
    suppress: Vec<u32>,
    begin_suppress: Vec<u32>,
    max_new_tokens: usize,
    bytes: u64,
}

fn id_of(v: &Value) -> Option<u32> {
    match v {
        Value::Array(a) => a.first().and_then(id_of),
        v => v.as_u64().and_then(|x| u32::try_from(x).ok()),
    }
}

fn ids_of(v: Option<&Value>) -> Vec<u32> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(id_of).collect())
        .unwrap_or_default()
}

fn id_map(v: Option<&Value>) -> BTreeMap<String, u32> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), id_of(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

impl Whisper {
    /// Loads `spec` (a `WhisperForConditionalGeneration` folder: config.json,
    /// model.safetensors, tokenizer.json, optionally generation_config.json).
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self> {
        let c = &spec.config;
        let d = config_usize(c, "d_model")?;
        let n_mels = config_usize(c, "num_mel_bins")?;
        let vocab = config_usize(c, "vocab_size")?;
        let enc_layers = config_usize(c, "encoder_layers")?;
        let dec_layers = config_usize(c, "decoder_layers")?;
        let enc_heads = config_usize(c, "encoder_attention_heads")?;
        let dec_heads = config_usize(c, "decoder_attention_heads")?;
        let enc_ffn = config_usize(c, "encoder_ffn_dim")?;
        let dec_ffn = config_usize(c, "decoder_ffn_dim")?;
        let source_positions = config_usize(c, "max_source_positions")?;
        let target_positions = config_usize(c, "max_target_positions")?;
        let act = c
            .get("activation_function")
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        if act != "gelu" {
            return Err(RuntimeError::Unsupported(format!(
                "Whisper activation_function {act:?}"
            )));
        }
        for (k, h) in [
            ("encoder_attention_heads", enc_heads),
            ("decoder_attention_heads", dec_heads),
        ] {
            if !d.is_multiple_of(h) {
                return Err(RuntimeError::InvalidModel(format!(
                    "config.json: d_model {d} is not a multiple of {k} {h}"
                )));
            }
        }
        if source_positions * 2 != CHUNK_FRAMES {
            return Err(RuntimeError::Unsupported(format!(
                "config.json: max_source_positions {source_positions}; Whisper takes 30 s windows \
                 of {CHUNK_FRAMES} frames, so it must be {}",
                CHUNK_FRAMES / 2
            )));
        }
        // SAFETY: mapped read-only; model files are immutable once verified by the store.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&spec.weights], DType::F32, device)? };
        let proj_out = vb.contains_tensor("proj_out.weight");
        let m = vb.pp("model");
        let e = m.pp("encoder");
        let conv = |vb: VarBuilder, inp: usize| -> Result<(Tensor, Tensor)> {
            Ok((vb.get((d, inp, 3), "weight")?, vb.get(d, "bias")?))
        };
        let conv1 = conv(e.pp("conv1"), n_mels)?;
        let conv2 = conv(e.pp("conv2"), d)?;
        let enc_pos = e.get((source_positions, d), "embed_positions.weight")?;
        let enc_layers = (0..enc_layers)
            .map(|i| {
                let l = e.pp("layers").pp(i);
                Ok(EncoderLayer {
                    attn: Attention::load(l.pp("self_attn"), d, enc_heads)?,
                    ln: LayerNorm::load(l.pp("self_attn_layer_norm"), d, 1e-5)?,
                    mlp: Mlp::load(l.clone(), d, enc_ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let enc_ln = LayerNorm::load(e.pp("layer_norm"), d, 1e-5)?;
        let dm = m.pp("decoder");
        let embed = dm.get((vocab, d), "embed_tokens.weight")?;
        let dec_pos = dm.get((target_positions, d), "embed_positions.weight")?;
        let dec_layers = (0..dec_layers)
            .map(|i| {
                let l = dm.pp("layers").pp(i);
                Ok(DecoderLayer {
                    attn: Attention::load(l.pp("self_attn"), d, dec_heads)?,
                    ln: LayerNorm::load(l.pp("self_attn_layer_norm"), d, 1e-5)?,
                    cross: Attention::load(l.pp("encoder_attn"), d, dec_heads)?,
                    cross_ln: LayerNorm::load(l.pp("encoder_attn_layer_norm"), d, 1e-5)?,
                    mlp: Mlp::load(l.clone(), d, dec_ffn)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let dec_ln = LayerNorm::load(dm.pp("layer_norm"), d, 1e-5)?;
        let proj = if proj_out {
            vb.get((vocab, d), "proj_out.weight")?
        } else {
            embed.clone()
        };
        let proj = Lin(Dense::new(Linear::new(proj, None))?);

        let tok_path = spec
            .tokenizer
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidModel("Whisper needs tokenizer.json".into()))?;
        let tokenizer = Tokenizer::from_file(tok_path)
            .map_err(|e| RuntimeError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
        let gen_path = spec.dir.join("generation_config.json");
        let gen_cfg: Value = if gen_path.is_file() {
            let bytes = std::fs::read(&gen_path).map_err(|e| RuntimeError::io(&gen_path, e))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| RuntimeError::InvalidModel(format!("{}: {e}", gen_path.display())))?
        } else {
            c.clone()
        };
        let g = |k: &str| gen_cfg.get(k).filter(|v| !v.is_null());
        let token = |name: &str| tokenizer.token_to_id(name);
        let start = g("decoder_start_token_id")
            .and_then(id_of)
            .or_else(|| c.get("decoder_start_token_id").and_then(id_of))
            .or_else(|| token("<|startoftranscript|>"))
            .ok_or_else(|| {
                RuntimeError::InvalidModel(
                    "no decoder_start_token_id or <|startoftranscript|>".into(),
                )
            })?;
        let eos = g("eos_token_id")
            .and_then(id_of)
            .or_else(|| c.get("eos_token_id").and_then(id_of))
            .or_else(|| token("<|endoftext|>"))
            .ok_or_else(|| RuntimeError::InvalidModel("no eos_token_id or <|endoftext|>".into()))?;
        let forced = match g("forced_decoder_ids").or_else(|| c.get("forced_decoder_ids")) {
            Some(Value::Array(pairs)) => {
                let mut out = Vec::new();
                for (i, p) in pairs.iter().enumerate() {
                    let pos = p.get(0).and_then(Value::as_u64);
                    if pos != Some(i as u64 + 1) {
                        return Err(RuntimeError::InvalidModel(format!(
                            "forced_decoder_ids {p} is not at position {}",
                            i + 1
                        )));
                    }
                    out.push(p.get(1).and_then(id_of));
                }
                out
            }
            _ => Vec::new(),
        };
        let prompt = PromptConfig {
            start,
            lang_to_id: id_map(g("lang_to_id")),
            task_to_id: id_map(g("task_to_id")),
            language: g("language").and_then(Value::as_str).map(str::to_string),
            task: g("task").and_then(Value::as_str).map(str::to_string),
            forced,
            no_timestamps: g("no_timestamps_token_id")
                .and_then(id_of)
                .or_else(|| token("<|notimestamps|>")),
        };
        let suppress = ids_of(g("suppress_tokens").or_else(|| c.get("suppress_tokens")));
        let begin_suppress =
            ids_of(g("begin_suppress_tokens").or_else(|| c.get("begin_suppress_tokens")));
        let prompt_ids = [Some(start), Some(eos), prompt.no_timestamps]
            .into_iter()
            .chain(prompt.forced.iter().copied())
            .flatten()
            .chain(prompt.lang_to_id.values().copied())
            .chain(prompt.task_to_id.values().copied());
        if let Some(bad) = prompt_ids.into_iter().find(|&t| t as usize >= vocab) {
            return Err(RuntimeError::InvalidModel(format!(
                "generation config: token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let max_new_tokens = g("max_new_tokens")
            .and_then(Value::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v > 0)
            .unwrap_or(DEFAULT_MAX_NEW_TOKENS);
        let per_enc = 4 * d * d + 2 * d * enc_ffn;
        let per_dec = 8 * d * d + 2 * d * dec_ffn;
        let bytes = (3 * d * (n_mels + d)
            + (source_positions + target_positions + 2 * vocab) * d
            + enc_layers.len() * per_enc
            + dec_layers.len() * per_dec) as u64
            * 4;
        Ok(Self {
            d_model: d,
            n_mels,
            source_positions,
            target_positions,
            conv1,
            conv2,
            enc_pos,
            enc_layers,
            enc_ln,
            embed,
            dec_pos,
            dec_layers,
            dec_ln,
            proj,
            mel: MelExtractor::new(n_mels)?,
            tokenizer,
            prompt,
            eos,
            suppress,
            begin_suppress,
            max_new_tokens,
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

    /// Mel bins the model takes.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// The log-mel features of one 30 s window of 16 kHz samples, `[n_mels, 3000]`.
    pub fn features(&self, samples: &[f32]) -> Vec<f32> {
        self.mel.features(samples)
    }

    /// Runs the encoder on features `[n_mels, 3000]`; returns `[1, 1500, d_model]`.
    pub fn encode(&self, features: &[f32]) -> Result<Tensor> {
        let dev = self.embed.device();
        if features.len() != self.n_mels * CHUNK_FRAMES {
            return Err(RuntimeError::InvalidInput(format!(
                "{} feature values; the model takes {} mel bins × {CHUNK_FRAMES} frames",
                features.len(),
                self.n_mels
            )));
        }
        let x = Tensor::from_slice(features, (1, self.n_mels, CHUNK_FRAMES), dev)?;
        let conv = |x: &Tensor, (w, b): &(Tensor, Tensor), stride: usize| -> Result<Tensor> {
            let y = x.conv1d(w, 1, stride, 1, 1)?;
            Gelu::forward(&y.broadcast_add(&b.reshape((1, (), 1))?)?)
        };
        let x = conv(&x, &self.conv1, 1)?;
        let x = conv(&x, &self.conv2, 2)?;
        let mut x = x.transpose(1, 2)?.contiguous()?;
        if x.dim(1)? != self.source_positions {
            return Err(RuntimeError::InvalidModel(format!(
                "the encoder made {} positions, the table has {}",
                x.dim(1)?,
                self.source_positions
            )));
        }
        x = x.broadcast_add(&self.enc_pos)?;
        for l in &self.enc_layers {
            let h = l.ln.forward(&x)?;
            let (k, v) = l.attn.kv(&h)?;
            x = (&x + l.attn.attend(&h, &k.t()?, &v, None)?)?;
            x = l.mlp.residual(&x)?;
        }
        self.enc_ln.forward(&x)
    }

    fn cache(&self, encoded: &Tensor) -> Result<Cache> {
        Ok(Cache {
            own: vec![None; self.dec_layers.len()],
            cross: self
                .dec_layers
                .iter()
                .map(|l| {
                    let (k, v) = l.cross.kv(encoded)?;
                    Ok((k.t()?.contiguous()?, v))
                })
                .collect::<Result<_>>()?,
        })
    }

    /// Runs `tokens` at positions `pos..`, extending `cache`; the logits of the last one.
    fn decode(&self, tokens: &[u32], pos: usize, cache: &mut Cache) -> Result<Vec<f32>> {
        let s = tokens.len();
        if s == 0 || pos + s > self.target_positions {
            return Err(RuntimeError::InvalidInput(format!(
                "{s} tokens at position {pos}: the decoder takes {} positions",
                self.target_positions
            )));
        }
        let dev = self.embed.device().clone();
        let ids = Tensor::from_slice(tokens, s, &dev)?;
        let mut x = self
            .embed
            .index_select(&ids, 0)?
            .add(&self.dec_pos.narrow(0, pos, s)?)?
            .unsqueeze(0)?;
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
        for ((l, own), (ck, cv)) in self
            .dec_layers
            .iter()
            .zip(cache.own.iter_mut())
            .zip(&cache.cross)
        {
            let h = l.ln.forward(&x)?;
            let (mut k, mut v) = l.attn.kv(&h)?;
            if let Some((pk, pv)) = own.as_ref() {
                k = Tensor::cat(&[pk, &k], 2)?;
                v = Tensor::cat(&[pv, &v], 2)?;
            }
            *own = Some((k.clone(), v.clone()));
            x = (&x + l.attn.attend(&h, &k.t()?, &v, mask.as_ref())?)?;
            let h = l.cross_ln.forward(&x)?;
            x = (&x + l.cross.attend(&h, ck, cv, None)?)?;
            x = l.mlp.residual(&x)?;
        }
        let last = self.dec_ln.forward(&x.narrow(1, s - 1, 1)?)?;
        let logits = self.proj.forward(&last.reshape((1, self.d_model))?)?;
        Ok(logits.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// The decoder prompt for one window (see the module docs); detects the language with
    /// one decoder step when the model is multilingual and none is configured.
    pub fn prompt(&self, encoded: &Tensor) -> Result<Vec<u32>> {
        self.prompt_for(&self.cache(encoded)?)
    }

    /// [`Whisper::prompt`] with the cross-attention state of the window already computed
    /// (`cache` holds no decoded positions).
    fn prompt_for(&self, cache: &Cache) -> Result<Vec<u32>> {
        let p = &self.prompt;
        let mut init: Vec<Option<u32>> = vec![Some(p.start)];
        if p.task.is_none() && p.language.is_none() {
            init.extend(p.forced.iter().copied());
        }
        let lang_undefined = init.len() <= 1 || init[1].is_none();
        let lang = if let Some(l) = &p.language {
            Some(self.language_id(l)?)
        } else if !p.lang_to_id.is_empty() && lang_undefined {
            Some(self.detect_language(cache)?)
        } else {
            None
        };
        if let Some(l) = lang {
            if init.len() > 1 {
                init[1] = Some(l);
            } else {
                init.push(Some(l));
            }
        }
        let task_ids: Vec<u32> = p.task_to_id.values().copied().collect();
        if let Some(task) = &p.task {
            let id = *p.task_to_id.get(task).ok_or_else(|| {
                RuntimeError::InvalidModel(format!(
                    "generation_config: task {task:?} not in task_to_id"
                ))
            })?;
            if init
                .iter()
                .any(|t| t.is_some_and(|t| task_ids.contains(&t)))
            {
                for t in init.iter_mut() {
                    if t.is_some_and(|t| task_ids.contains(&t)) {
                        *t = Some(id);
                    }
                }
            } else {
                init.push(Some(id));
            }
        } else if p.language.is_some()
            && !task_ids.is_empty()
            && !init
                .iter()
                .any(|t| t.is_some_and(|t| task_ids.contains(&t)))
            && let Some(&id) = p.task_to_id.get("transcribe")
        {
            init.push(Some(id));
        }
        if let Some(nt) = p.no_timestamps
            && init.last() != Some(&Some(nt))
        {
            init.push(Some(nt));
        }
        Ok(init.into_iter().flatten().collect())
    }

    fn language_id(&self, language: &str) -> Result<u32> {
        let l = language.to_lowercase();
        let key = if l.starts_with("<|") {
            l
        } else {
            format!("<|{l}|>")
        };
        self.prompt.lang_to_id.get(&key).copied().ok_or_else(|| {
            RuntimeError::InvalidModel(format!(
                "generation_config: language {language:?} is not in lang_to_id"
            ))
        })
    }

    /// The language token scored highest after `<|startoftranscript|>` alone.
    fn detect_language(&self, cache: &Cache) -> Result<u32> {
        let mut cache = cache.clone();
        let logits = self.decode(&[self.prompt.start], 0, &mut cache)?;
        let mut ids: Vec<u32> = self.prompt.lang_to_id.values().copied().collect();
        ids.sort_unstable();
        let mut best: Option<(u32, f32)> = None;
        for id in ids {
            let Some(&v) = logits.get(id as usize) else {
                continue;
            };
            if best.is_none_or(|(_, b)| v > b) {
                best = Some((id, v));
            }
        }
        best.map(|(id, _)| id).ok_or_else(|| {
            RuntimeError::InvalidModel("lang_to_id holds no token of the vocabulary".into())
        })
    }

    /// Greedy decoding of one encoded window: the prompt and the new tokens (without
    /// `<|endoftext|>`).
    pub fn generate(
        &self,
        encoded: &Tensor,
        max_new_tokens: usize,
    ) -> Result<(Vec<u32>, Vec<u32>)> {
        let mut cache = self.cache(encoded)?;
        let prompt = self.prompt_for(&cache)?;
        if prompt.len() >= self.target_positions {
            return Err(RuntimeError::InvalidModel(format!(
                "the decoder prompt has {} tokens; the decoder takes {}",
                prompt.len(),
                self.target_positions
            )));
        }
        let max_new = max_new_tokens.min(self.target_positions - prompt.len());
        let mut logits = self.decode(&prompt, 0, &mut cache)?;
        let mut tokens = Vec::new();
        while tokens.len() < max_new {
            for &t in &self.suppress {
                if let Some(v) = logits.get_mut(t as usize) {
                    *v = f32::NEG_INFINITY;
                }
            }
            if tokens.is_empty() {
                for &t in &self.begin_suppress {
                    if let Some(v) = logits.get_mut(t as usize) {
                        *v = f32::NEG_INFINITY;
                    }
                }
            }
            let next = argmax(&logits);
            if next == self.eos {
                break;
            }
            tokens.push(next);
            if tokens.len() >= max_new {
                break;
            }
            logits = self.decode(&[next], prompt.len() + tokens.len() - 1, &mut cache)?;
        }
        Ok((prompt, tokens))
    }

    /// Transcribes 16 kHz mono samples (30 s windows, see the module docs); `max_new_tokens`
    /// per window, `None` = the generation config's.
    pub fn transcribe(
        &self,
        samples: &[f32],
        max_new_tokens: Option<usize>,
    ) -> Result<Transcription> {
        if samples.is_empty() {
            return Err(RuntimeError::InvalidInput("audio: no samples".into()));
        }
        let max_new = max_new_tokens.unwrap_or(self.max_new_tokens);
        if max_new == 0 {
            return Err(RuntimeError::InvalidInput(
                "max_new_tokens must be at least 1".into(),
            ));
        }
        let (mut encode_ms, mut decode_ms) = (0.0, 0.0);
        let mut tokens = Vec::new();
        let mut first_prompt = Vec::new();
        let mut windows = 0;
        for window in samples.chunks(CHUNK_SAMPLES) {
            let t0 = Instant::now();
            let feats = self.features(window);
            let encoded = self.encode(&feats)?;
            encode_ms += t0.elapsed().as_secs_f64() * 1e3;
            let t1 = Instant::now();
            let (prompt, new) = self.generate(&encoded, max_new)?;
            decode_ms += t1.elapsed().as_secs_f64() * 1e3;
            if windows == 0 {
                first_prompt = prompt;
            }
            tokens.extend(new);
            windows += 1;
        }
        let text = self
            .tokenizer
            .decode(&tokens, true)
            .map_err(|e| RuntimeError::Tokenizer(e.to_string()))?;
        tracing::debug!(
            windows,
            tokens = tokens.len(),
            encode_ms,
            decode_ms,
            "whisper transcribed"
        );
        Ok(Transcription {
            text,
            tokens_per_s: tokens_per_s(tokens.len(), decode_ms / 1e3),
            tokens,
            prompt: first_prompt,
            windows,
            encode_ms,
            decode_ms,
        })
    }

    /// Transcribes a WAV file (decoded, downmixed, resampled to 16 kHz).
    pub fn transcribe_wav(
        &self,
        bytes: &[u8],
        max_new_tokens: Option<usize>,
    ) -> Result<Transcription> {
        let samples = crate::audio::wav_to_16k_mono(bytes)?;
        self.transcribe(&samples, max_new_tokens)
    }
}

/// Index of the first largest value (as `torch.argmax`).
fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(super::argmax(&[1.0, 3.0, 3.0, f32::NEG_INFINITY]), 1);
        assert_eq!(super::argmax(&[f32::NEG_INFINITY, 0.5]), 1);
    }
}
