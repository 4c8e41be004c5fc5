//! Hugging Face `CLIPModel` (`model_type` `"clip"`) on candle: normalised text and image
//! embeddings in a shared space, and their scaled cosines for zero-shot classification.
//!
//! The encoders are candle-transformers' CLIP transformers (their tensor names and maths are
//! Hugging Face's: pre-LayerNorm on the patch embeddings, class-token pooling through
//! `post_layernorm`, causal text attention, quick-GELU). Two things are done here instead:
//! the configs are read from `config.json`'s `text_config`/`vision_config` (anything else
//! than quick-GELU or a LayerNorm epsilon of 1e-5 is refused, candle's layers fix both),
//! and the text is pooled as transformers 5 pools it: at the first `eos_token_id` of each
//! row, or, for old configs whose `eos_token_id` is 2, at the largest token id.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::clip::text_model::{
    Activation, ClipTextConfig, ClipTextTransformer,
};
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use serde::Deserialize;

use crate::error::{Result, RuntimeError};
use crate::spec::ModelSpec;
use crate::text::TokenBatch;

/// `config.json`'s `text_config` (Hugging Face's defaults).
#[derive(Clone, Debug, Deserialize)]
struct TextConfig {
    #[serde(default = "d_vocab")]
    vocab_size: usize,
    #[serde(default = "d_512")]
    hidden_size: usize,
    #[serde(default = "d_2048")]
    intermediate_size: usize,
    #[serde(default = "d_12")]
    num_hidden_layers: usize,
    #[serde(default = "d_8")]
    num_attention_heads: usize,
    #[serde(default = "d_77")]
    max_position_embeddings: usize,
    #[serde(default = "d_act")]
    hidden_act: String,
    #[serde(default = "d_eps")]
    layer_norm_eps: f64,
    #[serde(default = "d_eos")]
    eos_token_id: u32,
}

/// `config.json`'s `vision_config` (Hugging Face's defaults).
#[derive(Clone, Debug, Deserialize)]
struct VisionConfig {
    #[serde(default = "d_768")]
    hidden_size: usize,
    #[serde(default = "d_3072")]
    intermediate_size: usize,
    #[serde(default = "d_12")]
    num_hidden_layers: usize,
    #[serde(default = "d_12")]
    num_attention_heads: usize,
    #[serde(default = "d_3")]
    num_channels: usize,
    #[serde(default = "d_224")]
    image_size: usize,
    #[serde(default = "d_32")]
    patch_size: usize,
    #[serde(default = "d_act")]
    hidden_act: String,
    #[serde(default = "d_eps")]
    layer_norm_eps: f64,
}

#[derive(Clone, Debug, Deserialize)]
struct Config {
    text_config: TextConfig,
    vision_config: VisionConfig,
    #[serde(default = "d_512")]
    projection_dim: usize,
}

fn d_vocab() -> usize {
    49408
}
fn d_3() -> usize {
    3
}
fn d_8() -> usize {
    8
}
fn d_12() -> usize {
    12
}
fn d_32() -> usize {
    32
}
fn d_77() -> usize {
    77
}
fn d_224() -> usize {
    224
}
fn d_512() -> usize {
    512
}
fn d_768() -> usize {
    768
}
fn d_2048() -> usize {
    2048
}
fn d_3072() -> usize {
    3072
}
fn d_act() -> String {
    "quick_gelu".into()
}
fn d_eps() -> f64 {
    1e-5
}
fn d_eos() -> u32 {
    49407
}

fn check_layer(dir: &std::path::Path, which: &str, act: &str, eps: f64) -> Result<()> {
    if act != "quick_gelu" {
        return Err(RuntimeError::Unsupported(format!(
            "{}: CLIP {which} hidden_act {act:?} (only quick_gelu is)",
            dir.display()
        )));
    }
    if (eps - 1e-5).abs() > 1e-12 {
        return Err(RuntimeError::Unsupported(format!(
            "{}: CLIP {which} layer_norm_eps {eps} (only 1e-5 is)",
            dir.display()
        )));
    }
    Ok(())
}

/// A loaded `CLIPModel`.
pub struct Clip {
    text: ClipTextTransformer,
    vision: ClipVisionTransformer,
    text_projection: Linear,
    visual_projection: Linear,
    logit_scale: f32,
    eos_token_id: u32,
    image_size: usize,
    num_channels: usize,
    max_positions: usize,
    device: Device,
    weight_bytes: u64,
}

impl Clip {
    /// Loads the model in `spec` (safetensors, `config.json`) onto `device`.
    pub fn load(spec: &ModelSpec, device: &Device) -> Result<Self> {
        let cfg: Config = serde_json::from_value(spec.config.clone()).map_err(|e| {
            RuntimeError::InvalidModel(format!("{}: config.json: {e}", spec.dir.display()))
        })?;
        let (t, v) = (&cfg.text_config, &cfg.vision_config);
        check_layer(&spec.dir, "text_config", &t.hidden_act, t.layer_norm_eps)?;
        check_layer(&spec.dir, "vision_config", &v.hidden_act, v.layer_norm_eps)?;
        if v.patch_size == 0
            || !v.image_size.is_multiple_of(v.patch_size)
            || t.num_attention_heads == 0
            || v.num_attention_heads == 0
            || !t.hidden_size.is_multiple_of(t.num_attention_heads)
            || !v.hidden_size.is_multiple_of(v.num_attention_heads)
        {
            return Err(RuntimeError::InvalidModel(format!(
                "{}: config.json: inconsistent CLIP sizes (image {} / patch {}, hidden sizes {} and {} over {} and {} heads)",
                spec.dir.display(),
                v.image_size,
                v.patch_size,
                t.hidden_size,
                v.hidden_size,
                t.num_attention_heads,
                v.num_attention_heads
            )));
        }
        let text_cfg = ClipTextConfig {
            vocab_size: t.vocab_size,
            embed_dim: t.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: t.intermediate_size,
            max_position_embeddings: t.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: t.num_hidden_layers,
            num_attention_heads: t.num_attention_heads,
            projection_dim: cfg.projection_dim,
        };
        let vision_cfg = ClipVisionConfig {
            embed_dim: v.hidden_size,
            activation: Activation::QuickGelu,
            intermediate_size: v.intermediate_size,
            num_hidden_layers: v.num_hidden_layers,
            num_attention_heads: v.num_attention_heads,
            projection_dim: cfg.projection_dim,
            num_channels: v.num_channels,
            image_size: v.image_size,
            patch_size: v.patch_size,
        };
        // SAFETY: mapped read-only; model files are immutable once verified.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&spec.weights], DType::F32, device)? };
        if !vb.contains_tensor("vision_model.embeddings.class_embedding") {
            // candle would make up a random one.
            return Err(RuntimeError::InvalidModel(format!(
                "{}: no vision_model.embeddings.class_embedding",
                spec.weights.display()
            )));
        }
        let text = ClipTextTransformer::new(vb.pp("text_model"), &text_cfg)?;
        let vision = ClipVisionTransformer::new(vb.pp("vision_model"), &vision_cfg)?;
        let text_projection =
            candle_nn::linear_no_bias(t.hidden_size, cfg.projection_dim, vb.pp("text_projection"))?;
        let visual_projection = candle_nn::linear_no_bias(
            v.hidden_size,
            cfg.projection_dim,
            vb.pp("visual_projection"),
        )?;
        let logit_scale = vb
            .get((), "logit_scale")?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?
            .exp();
        let weight_bytes = std::fs::metadata(&spec.weights).map_or(0, |m| m.len());
        Ok(Self {
            text,
            vision,
            text_projection,
            visual_projection,
            logit_scale,
            eos_token_id: t.eos_token_id,
            image_size: v.image_size,
            num_channels: v.num_channels,
            max_positions: t.max_position_embeddings,
            device: device.clone(),
            weight_bytes,
        })
    }

    /// The square image side the vision model takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Most text tokens (position embeddings).
    pub fn max_len(&self) -> usize {
        self.max_positions
    }

    /// `exp(logit_scale)`: what cosines are multiplied by before the softmax.
    pub fn logit_scale(&self) -> f32 {
        self.logit_scale
    }

    /// Bytes of weights held (the safetensors file).
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// The position each row is pooled at (see the module doc).
    fn pool_positions(&self, batch: &TokenBatch) -> Vec<u32> {
        batch
            .ids
            .chunks(batch.len.max(1))
            .map(|row| {
                let pos = if self.eos_token_id == 2 {
                    // torch.argmax: the first of the largest.
                    row.iter()
                        .enumerate()
                        .fold(
                            (0, 0),
                            |(bi, bv), (i, &v)| {
                                if v > bv || i == 0 { (i, v) } else { (bi, bv) }
                            },
                        )
                        .0
                } else {
                    row.iter()
                        .position(|&id| id == self.eos_token_id)
                        .unwrap_or(0)
                };
                pos as u32
            })
            .collect()
    }

    /// Unit-length text embeddings, one per row of `batch`.
    pub fn embed_texts(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        if batch.batch == 0 || batch.len == 0 {
            return Err(RuntimeError::InvalidInput("no text to embed".into()));
        }
        if batch.len > self.max_positions {
            return Err(RuntimeError::InvalidInput(format!(
                "{} tokens; the model takes at most {}",
                batch.len, self.max_positions
            )));
        }
        let ids = Tensor::from_slice(&batch.ids, (batch.batch, batch.len), &self.device)?;
        let hidden = self.text.forward_with_mask(&ids, usize::MAX)?;
        let d = hidden.dim(2)?;
        let rows: Vec<u32> = self
            .pool_positions(batch)
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i * batch.len) as u32 + p)
            .collect();
        let idx = Tensor::from_vec(rows, batch.batch, &self.device)?;
        let pooled = hidden
            .reshape((batch.batch * batch.len, d))?
            .index_select(&idx, 0)?;
        normalised(&self.text_projection.forward(&pooled)?)
    }

    /// Unit-length image embeddings for `n` images given as NCHW floats at the model's size.
    pub fn embed_images(&self, pixels: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        let s = self.image_size;
        if n == 0 || pixels.len() != n * self.num_channels * s * s {
            return Err(RuntimeError::InvalidInput(format!(
                "{} pixel values for {n} images of {}x{s}x{s}",
                pixels.len(),
                self.num_channels
            )));
        }
        let x = Tensor::from_slice(pixels, (n, self.num_channels, s, s), &self.device)?;
        let pooled = self.vision.forward(&x)?;
        normalised(&self.visual_projection.forward(&pooled)?)
    }

    /// `logit_scale.exp() * cos` of one image embedding against each text embedding (both
    /// unit length).
    pub fn scaled_cosines(&self, image: &[f32], texts: &[Vec<f32>]) -> Vec<f32> {
        texts
            .iter()
            .map(|t| self.logit_scale * t.iter().zip(image).map(|(a, b)| a * b).sum::<f32>())
            .collect()
    }
}

/// Rows of `x` `[n, d]` divided by their L2 norms, as vectors.
fn normalised(x: &Tensor) -> Result<Vec<Vec<f32>>> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?;
    Ok(x.broadcast_div(&norms)?.to_vec2()?)
}
