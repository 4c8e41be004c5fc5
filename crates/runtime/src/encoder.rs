//! BERT-family text encoders on candle: sentence embeddings (mean pooling + L2
//! normalisation, as sentence-transformers) and sequence classification (pooler + classifier,
//! labels from `config.json`).
//!
//! Written for speed on CPU rather than taken from candle-transformers: the three attention
//! projections are one matmul, the attention scale is folded into the query weights at load,
//! activations stay two-dimensional `[tokens, hidden]` between layers, layer norm and
//! softmax use candle's fused kernels, and an unpadded batch skips the mask.

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use serde_json::Value;

use crate::error::{Result, RuntimeError};
use crate::kernels::{Attention, Dense, Gelu};
use crate::spec::{ModelSpec, Task, config_usize};
use crate::text::TokenBatch;

/// The activation between the feed-forward layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU (`gelu` in `config.json`).
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// ReLU.
    Relu,
}

/// The parts of `config.json` an encoder needs.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden size.
    pub hidden_size: usize,
    /// Transformer layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Feed-forward activation.
    pub hidden_act: Activation,
    /// Layer norm epsilon.
    pub layer_norm_eps: f64,
    /// Longest input (positions).
    pub max_position_embeddings: usize,
    /// Segment types.
    pub type_vocab_size: usize,
    /// Which checkpoint layout the weights use.
    pub kind: EncoderKind,
}

/// The weight layouts read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    /// `BertModel` (`embeddings.*`, `encoder.layer.N.attention.self.query`, …; pooler head).
    Bert,
    /// `DistilBertModel` (`transformer.layer.N.attention.q_lin`, …; no token types;
    /// pre-classifier head).
    DistilBert,
    /// `RobertaModel` (and XLM-RoBERTa, CamemBERT): BERT's layers, position ids that start
    /// after the padding index and skip padding, a dense + tanh classification head on `<s>`
    /// (`classifier.dense`, `classifier.out_proj`) and no pooler.
    Roberta {
        /// `pad_token_id`: padding tokens get this position, real tokens count from it + 1.
        padding_idx: u32,
    },
}

impl EncoderConfig {
    /// Reads a BERT, DistilBERT or RoBERTa-style `config.json`.
    pub fn from_json(v: &Value) -> Result<Self> {
        if let Some("roberta" | "xlm-roberta" | "camembert") =
            v.get("model_type").and_then(Value::as_str)
        {
            let padding_idx = v
                .get("pad_token_id")
                .and_then(Value::as_u64)
                .and_then(|x| u32::try_from(x).ok())
                .unwrap_or(1);
            let mut m = v.clone();
            if let Some(o) = m.as_object_mut() {
                o.insert("model_type".into(), "bert".into());
            }
            let mut c = Self::from_json(&m)?;
            if padding_idx as usize + 1 >= c.max_position_embeddings {
                return Err(RuntimeError::InvalidModel(format!(
                    "config.json: pad_token_id {padding_idx} leaves no positions (max_position_embeddings {})",
                    c.max_position_embeddings
                )));
            }
            c.kind = EncoderKind::Roberta { padding_idx };
            return Ok(c);
        }
        if v.get("model_type").and_then(Value::as_str) == Some("distilbert") {
            let mut m = v.clone();
            if let Some(o) = m.as_object_mut() {
                for (from, to) in [
                    ("dim", "hidden_size"),
                    ("n_layers", "num_hidden_layers"),
                    ("n_heads", "num_attention_heads"),
                    ("hidden_dim", "intermediate_size"),
                    ("activation", "hidden_act"),
                ] {
                    if let Some(x) = o.get(from).cloned() {
                        o.insert(to.to_string(), x);
                    }
                }
                o.insert("model_type".into(), "bert".into());
                o.insert("layer_norm_eps".into(), 1e-12.into());
            }
            let mut c = Self::from_json(&m)?;
            c.kind = EncoderKind::DistilBert;
            c.type_vocab_size = 0;
            return Ok(c);
        }
        let n = |k: &str| config_usize(v, k);
        let hidden_act = match v
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("gelu")
        {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "config.json: hidden_act {other:?}"
                )));
            }
        };
        let c = Self {
            vocab_size: n("vocab_size")?,
            hidden_size: n("hidden_size")?,
            num_hidden_layers: n("num_hidden_layers")?,
            num_attention_heads: n("num_attention_heads")?,
            intermediate_size: n("intermediate_size")?,
            hidden_act,
            layer_norm_eps: v
                .get("layer_norm_eps")
                .and_then(Value::as_f64)
                .unwrap_or(1e-12),
            max_position_embeddings: n("max_position_embeddings")?,
            type_vocab_size: v
                .get("type_vocab_size")
                .and_then(Value::as_u64)
                .unwrap_or(2) as usize,
            kind: EncoderKind::Bert,
        };
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            return Err(RuntimeError::InvalidModel(format!(
                "config.json: hidden_size {} is not a multiple of num_attention_heads {}",
                c.hidden_size, c.num_attention_heads
            )));
        }
        if let Some(kind) = v.get("position_embedding_type").and_then(Value::as_str)
            && kind != "absolute"
        {
            return Err(RuntimeError::Unsupported(format!(
                "config.json: position_embedding_type {kind:?} (only absolute)"
            )));
        }
        Ok(c)
    }
}

/// Layer norm with weight and bias (candle's fused kernel); GPT-2 uses it too.
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f32,
}

impl LayerNorm {
    pub(crate) fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps: eps as f32,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::layer_norm(
            x,
            &self.weight,
            &self.bias,
            self.eps,
        )?)
    }
}

fn linear(vb: VarBuilder, inp: usize, out: usize) -> Result<Linear> {
    Ok(Linear::new(
        vb.get((out, inp), "weight")?,
        Some(vb.get(out, "bias")?),
    ))
}

struct Layer {
    qkv: Dense,
    out: Dense,
    ln_attn: LayerNorm,
    ff_in: Dense,
    ff_out: Dense,
    ln_ff: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder, c: &EncoderConfig) -> Result<Self> {
        let h = c.hidden_size;
        let att = vb.pp("attention");
        // (query, key, value, attention output, attention norm, ffn in, ffn out, ffn norm)
        let names = match c.kind {
            EncoderKind::Bert | EncoderKind::Roberta { .. } => [
                att.pp("self").pp("query"),
                att.pp("self").pp("key"),
                att.pp("self").pp("value"),
                att.pp("output").pp("dense"),
                att.pp("output").pp("LayerNorm"),
                vb.pp("intermediate").pp("dense"),
                vb.pp("output").pp("dense"),
                vb.pp("output").pp("LayerNorm"),
            ],
            EncoderKind::DistilBert => [
                att.pp("q_lin"),
                att.pp("k_lin"),
                att.pp("v_lin"),
                att.pp("out_lin"),
                vb.pp("sa_layer_norm"),
                vb.pp("ffn").pp("lin1"),
                vb.pp("ffn").pp("lin2"),
                vb.pp("output_layer_norm"),
            ],
        };
        let [
            q_vb,
            k_vb,
            v_vb,
            out_vb,
            ln_attn_vb,
            ff_in_vb,
            ff_out_vb,
            ln_ff_vb,
        ] = names;
        let q = linear(q_vb, h, h)?;
        let k = linear(k_vb, h, h)?;
        let v = linear(v_vb, h, h)?;
        // softmax(q·kᵀ/√d): the 1/√d goes into the query projection once, at load.
        let scale = 1.0 / ((h / c.num_attention_heads) as f64).sqrt();
        let bias = |l: &Linear| -> Result<Tensor> {
            l.bias().cloned().ok_or_else(|| {
                RuntimeError::InvalidModel("attention projection without bias".into())
            })
        };
        let w = Tensor::cat(&[&(q.weight() * scale)?, k.weight(), v.weight()], 0)?;
        let b = Tensor::cat(&[&(bias(&q)? * scale)?, &bias(&k)?, &bias(&v)?], 0)?;
        Ok(Self {
            qkv: Dense::new(Linear::new(w, Some(b)))?,
            out: Dense::new(linear(out_vb, h, h)?)?,
            ln_attn: LayerNorm::load(ln_attn_vb, h, c.layer_norm_eps)?,
            ff_in: Dense::new(linear(ff_in_vb, h, c.intermediate_size)?)?,
            ff_out: Dense::new(linear(ff_out_vb, c.intermediate_size, h)?)?,
            ln_ff: LayerNorm::load(ln_ff_vb, h, c.layer_norm_eps)?,
        })
    }

    /// `x`: `[b·s, h]`; `mask_bias`: `[b, 1, 1, s]` or none for an unpadded batch.
    fn forward(
        &self,
        x: &Tensor,
        b: usize,
        s: usize,
        c: &EncoderConfig,
        mask_bias: Option<&Tensor>,
        mask: Option<&[u32]>,
    ) -> Result<Tensor> {
        let h = c.hidden_size;
        let nh = c.num_attention_heads;
        let d = h / nh;
        let qkv = self.qkv.forward(x)?;
        let ctx = if qkv.device().is_cpu() {
            Attention {
                batch: b,
                seq: s,
                heads: nh,
                mask,
            }
            .forward(&qkv)?
        } else {
            let qkv = qkv
                .reshape((b, s, 3, nh, d))?
                .permute((2, 0, 3, 1, 4))?
                .contiguous()?;
            let q = qkv.get(0)?;
            let k = qkv.get(1)?;
            let v = qkv.get(2)?;
            let mut scores = q.matmul(&k.t()?)?;
            if let Some(m) = mask_bias {
                scores = scores.broadcast_add(m)?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * s, h))?
        };
        let x = self.ln_attn.forward(&(self.out.forward(&ctx)? + x)?)?;
        let ff = self.ff_in.forward(&x)?;
        let ff = match c.hidden_act {
            Activation::Gelu => Gelu::forward(&ff)?,
            Activation::GeluTanh => ff.gelu()?,
            Activation::Relu => ff.relu()?,
        };
        self.ln_ff.forward(&(self.ff_out.forward(&ff)? + x)?)
    }
}

/// A classification head on the first token.
enum Head {
    /// BERT: pooler (dense + tanh), then the classifier; RoBERTa's head has the same shape
    /// (`classifier.dense` + tanh, `classifier.out_proj`).
    Pooler(Linear, Linear),
    /// DistilBERT: pre-classifier (dense + ReLU), then the classifier.
    PreClassifier(Linear, Linear),
}

/// A loaded BERT-family encoder.
pub struct Encoder {
    config: EncoderConfig,
    word: Tensor,
    position: Tensor,
    /// Segment embeddings (none in DistilBERT).
    token_type: Option<Tensor>,
    ln_emb: LayerNorm,
    layers: Vec<Layer>,
    /// Pooler (dense + tanh on the first token) and classifier, for [`Task::Classify`].
    head: Option<Head>,
    device: Device,
    bytes: u64,
}

impl Encoder {
    /// Loads the weights of `spec` (memory-mapped safetensors; tensors are converted to f32).
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self> {
        let config = EncoderConfig::from_json(&spec.config)?;
        // SAFETY: the file is mapped read-only; the store never rewrites a file that a
        // model was loaded from (its blocks are content-addressed and immutable).
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&spec.weights], DType::F32, device)? };
        let root = vb.clone();
        let prefix = match config.kind {
            EncoderKind::Bert => "bert",
            EncoderKind::DistilBert => "distilbert",
            EncoderKind::Roberta { .. } => "roberta",
        };
        let vb = if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
            vb.pp(prefix)
        } else {
            vb
        };
        let c = &config;
        let h = c.hidden_size;
        let emb = vb.pp("embeddings");
        let word = emb.get((c.vocab_size, h), "word_embeddings.weight")?;
        let position = emb.get((c.max_position_embeddings, h), "position_embeddings.weight")?;
        let token_type = if c.type_vocab_size > 0 {
            Some(emb.get((c.type_vocab_size, h), "token_type_embeddings.weight")?)
        } else {
            None
        };
        let ln_emb = LayerNorm::load(emb.pp("LayerNorm"), h, c.layer_norm_eps)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let layers = match c.kind {
                    EncoderKind::Bert | EncoderKind::Roberta { .. } => vb.pp("encoder").pp("layer"),
                    EncoderKind::DistilBert => vb.pp("transformer").pp("layer"),
                };
                Layer::load(layers.pp(i), c)
            })
            .collect::<Result<Vec<_>>>()?;
        let head = if spec.task == Task::Classify {
            let n = spec.labels.len().max(
                spec.config
                    .get("num_labels")
                    .and_then(Value::as_u64)
                    .unwrap_or(0) as usize,
            );
            if n == 0 {
                return Err(RuntimeError::InvalidModel(
                    "a classifier needs id2label (or num_labels) in config.json".into(),
                ));
            }
            // The heads sit beside `bert.`/`distilbert.`/`roberta.` in
            // *ForSequenceClassification checkpoints.
            Some(match c.kind {
                EncoderKind::Bert => Head::Pooler(
                    linear(vb.pp("pooler").pp("dense"), h, h)?,
                    linear(root.pp("classifier"), h, n)?,
                ),
                EncoderKind::DistilBert => Head::PreClassifier(
                    linear(root.pp("pre_classifier"), h, h)?,
                    linear(root.pp("classifier"), h, n)?,
                ),
                EncoderKind::Roberta { .. } => Head::Pooler(
                    linear(root.pp("classifier").pp("dense"), h, h)?,
                    linear(root.pp("classifier").pp("out_proj"), h, n)?,
                ),
            })
        } else {
            None
        };
        let mut bytes = 0u64;
        let mut count = |t: &Tensor| bytes += (t.elem_count() * 4) as u64;
        count(&word);
        count(&position);
        if let Some(t) = &token_type {
            count(t);
        }
        for l in &layers {
            for d in [&l.qkv, &l.out, &l.ff_in, &l.ff_out] {
                bytes += d.bytes();
            }
        }
        Ok(Self {
            config,
            word,
            position,
            token_type,
            ln_emb,
            layers,
            head,
            device: device.clone(),
            bytes,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Bytes of weights held.
    pub fn weight_bytes(&self) -> u64 {
        self.bytes
    }

    /// Most tokens per input.
    pub fn max_len(&self) -> usize {
        match self.config.kind {
            // Positions padding_idx + 1 ..= max_position_embeddings - 1.
            EncoderKind::Roberta { padding_idx } => {
                self.config.max_position_embeddings - padding_idx as usize - 1
            }
            _ => self.config.max_position_embeddings,
        }
    }

    /// The last hidden state, `[batch, len, hidden]`.
    pub fn hidden_states(&self, batch: &TokenBatch) -> Result<Tensor> {
        let (b, s) = (batch.batch, batch.len);
        let c = &self.config;
        if s == 0 || s > self.max_len() {
            return Err(RuntimeError::InvalidInput(format!(
                "{s} tokens; the model takes 1 to {}",
                self.max_len()
            )));
        }
        if let Some(&bad) = batch.ids.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(RuntimeError::InvalidInput(format!(
                "token id {bad} is outside the vocabulary ({})",
                c.vocab_size
            )));
        }
        if let Some(&bad) = batch
            .type_ids
            .iter()
            .find(|&&t| t as usize >= c.type_vocab_size.max(1))
        {
            return Err(RuntimeError::InvalidInput(format!(
                "token type {bad} out of range"
            )));
        }
        let dev = &self.device;
        let ids = Tensor::from_slice(&batch.ids, b * s, dev)?;
        let types = Tensor::from_slice(&batch.type_ids, b * s, dev)?;
        let x = self
            .word
            .index_select(&ids, 0)?
            .reshape((b, s, c.hidden_size))?;
        let x = match c.kind {
            EncoderKind::Roberta { padding_idx } => {
                // As transformers: padding keeps `padding_idx`, every other token is
                // padding_idx + (its count of non-padding tokens so far).
                let mut positions = Vec::with_capacity(b * s);
                for row in batch.ids.chunks(s) {
                    let mut n = padding_idx;
                    positions.extend(row.iter().map(|&t| {
                        if t == padding_idx {
                            padding_idx
                        } else {
                            n += 1;
                            n
                        }
                    }));
                }
                let positions = Tensor::from_vec(positions, b * s, dev)?;
                (x.reshape((b * s, c.hidden_size))? + self.position.index_select(&positions, 0)?)?
            }
            _ => x
                .broadcast_add(&self.position.narrow(0, 0, s)?)?
                .reshape((b * s, c.hidden_size))?,
        };
        let x = match &self.token_type {
            Some(t) => (x + t.index_select(&types, 0)?)?,
            None => x,
        };
        let mut x = self.ln_emb.forward(&x)?;
        let mask = (!batch.unpadded()).then_some(&batch.mask[..]);
        // The CPU attention kernel skips padding keys itself; other devices add this bias.
        let mask_bias = if mask.is_none() || dev.is_cpu() {
            None
        } else {
            // 0 for tokens, the most negative f32 for padding (what transformers adds).
            let bias: Vec<f32> = batch
                .mask
                .iter()
                .map(|&m| if m == 0 { f32::MIN } else { 0.0 })
                .collect();
            Some(Tensor::from_vec(bias, (b, 1, 1, s), dev)?)
        };
        for layer in &self.layers {
            x = layer.forward(&x, b, s, c, mask_bias.as_ref(), mask)?;
        }
        Ok(x.reshape((b, s, c.hidden_size))?)
    }

    /// Sentence embeddings: mean of the token states over the mask, L2-normalised.
    pub fn embed(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        let hidden = self.hidden_states(batch)?;
        let pooled = if batch.unpadded() {
            hidden.mean(1)?
        } else {
            let mask: Vec<f32> = batch.mask.iter().map(|&m| m as f32).collect();
            let mask = Tensor::from_vec(mask, (batch.batch, batch.len, 1), &self.device)?;
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
            sum.broadcast_div(&count)?
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        Ok(pooled.broadcast_div(&norm)?.to_vec2()?)
    }

    /// Classification logits, `[batch][labels]`.
    pub fn classify(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        let Some(head) = &self.head else {
            return Err(RuntimeError::Unsupported(
                "this encoder was loaded for embeddings, not classification".into(),
            ));
        };
        let hidden = self.hidden_states(batch)?;
        let first = hidden.narrow(1, 0, 1)?.squeeze(1)?;
        let (pooled, classifier) = match head {
            Head::Pooler(pooler, classifier) => (pooler.forward(&first)?.tanh()?, classifier),
            Head::PreClassifier(pre, classifier) => (pre.forward(&first)?.relu()?, classifier),
        };
        Ok(classifier.forward(&pooled)?.to_vec2()?)
    }
}
