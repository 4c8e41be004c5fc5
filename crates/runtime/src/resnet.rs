//! Hugging Face `ResNetForImageClassification` (`model_type` `"resnet"`: microsoft/resnet-50
//! and the like) on candle, in eval mode: every BatchNorm is folded into the convolution
//! before it when the weights are loaded, so a layer is one convolution with a bias.
//!
//! Tensor names are Hugging Face's (`resnet.embedder.embedder.convolution.weight`,
//! `resnet.encoder.stages.N.layers.M.{shortcut,layer.K}.{convolution,normalization}.*`,
//! `classifier.1.{weight,bias}`); `config.json` gives `embedding_size`, `hidden_sizes`,
//! `depths`, `layer_type` (`basic` or `bottleneck`), `downsample_in_first_stage`,
//! `downsample_in_bottleneck` and `hidden_act`.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Conv2d, Conv2dConfig, Linear, VarBuilder};
use serde::Deserialize;

use crate::error::{Result, RuntimeError};
use crate::spec::ModelSpec;

/// PyTorch's `BatchNorm2d` default epsilon (Hugging Face's ResNet does not change it).
const BN_EPS: f64 = 1e-5;

/// The `config.json` fields ResNet needs (Hugging Face's defaults are resnet-50's).
#[derive(Clone, Debug, Deserialize)]
pub struct ResNetConfig {
    /// Input channels.
    #[serde(default = "three")]
    pub num_channels: usize,
    /// Channels out of the 7x7 stem.
    #[serde(default = "sixty_four")]
    pub embedding_size: usize,
    /// Channels out of each stage.
    #[serde(default = "resnet50_sizes")]
    pub hidden_sizes: Vec<usize>,
    /// Layers per stage.
    #[serde(default = "resnet50_depths")]
    pub depths: Vec<usize>,
    /// `"basic"` (two 3x3 convolutions) or `"bottleneck"` (1x1, 3x3, 1x1).
    #[serde(default = "bottleneck")]
    pub layer_type: String,
    /// The activation (`relu`, `gelu`, `silu`).
    #[serde(default = "relu")]
    pub hidden_act: String,
    /// Whether the first stage downsamples (stride 2).
    #[serde(default)]
    pub downsample_in_first_stage: bool,
    /// Whether a bottleneck downsamples in its first 1x1 convolution instead of the 3x3.
    #[serde(default)]
    pub downsample_in_bottleneck: bool,
}

fn three() -> usize {
    3
}
fn sixty_four() -> usize {
    64
}
fn resnet50_sizes() -> Vec<usize> {
    vec![256, 512, 1024, 2048]
}
fn resnet50_depths() -> Vec<usize> {
    vec![3, 4, 6, 3]
}
fn bottleneck() -> String {
    "bottleneck".into()
}
fn relu() -> String {
    "relu".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Relu,
    Gelu,
    Silu,
}

impl Act {
    fn parse(name: &str) -> Result<Self> {
        match name {
            "relu" => Ok(Act::Relu),
            "gelu" => Ok(Act::Gelu),
            "silu" | "swish" => Ok(Act::Silu),
            other => Err(RuntimeError::Unsupported(format!(
                "ResNet hidden_act {other:?} (relu, gelu and silu are)"
            ))),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Act::Relu => x.relu()?,
            Act::Gelu => x.gelu_erf()?,
            Act::Silu => x.silu()?,
        })
    }
}

/// A convolution with its BatchNorm folded in, and the activation after it (if any).
struct ConvBn {
    conv: Conv2d,
    act: Option<Act>,
}

impl ConvBn {
    /// Loads `{prefix}.convolution.weight` and `{prefix}.normalization.*` and folds them:
    /// `w' = w * g / sqrt(var + eps)`, `b' = beta - mean * g / sqrt(var + eps)`.
    fn load(
        vb: &VarBuilder,
        (cin, cout, k): (usize, usize, usize),
        stride: usize,
        act: Option<Act>,
    ) -> Result<Self> {
        let w = vb.get((cout, cin, k, k), "convolution.weight")?;
        let bn = vb.pp("normalization");
        let gamma = bn.get(cout, "weight")?;
        let beta = bn.get(cout, "bias")?;
        let mean = bn.get(cout, "running_mean")?;
        let var = bn.get(cout, "running_var")?;
        let scale = gamma.broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        let w = w.broadcast_mul(&scale.reshape((cout, 1, 1, 1))?)?;
        let b = (beta - mean.mul(&scale)?)?;
        let config = Conv2dConfig {
            padding: k / 2,
            stride,
            dilation: 1,
            groups: 1,
            cudnn_fwd_algo: None,
        };
        Ok(Self {
            conv: Conv2d::new(w, Some(b), config),
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        match self.act {
            Some(a) => a.apply(&y),
            None => Ok(y),
        }
    }

    fn elements(&self) -> usize {
        self.conv.weight().elem_count() + self.conv.bias().map_or(0, Tensor::elem_count)
    }
}

/// One residual layer: `act(layers(x) + shortcut(x))`.
struct Block {
    shortcut: Option<ConvBn>,
    layers: Vec<ConvBn>,
    act: Act,
}

impl Block {
    fn load(
        vb: &VarBuilder,
        cfg: &ResNetConfig,
        (cin, cout): (usize, usize),
        stride: usize,
        act: Act,
    ) -> Result<Self> {
        let shortcut = if cin != cout || stride != 1 {
            Some(ConvBn::load(
                &vb.pp("shortcut"),
                (cin, cout, 1),
                stride,
                None,
            )?)
        } else {
            None
        };
        let l = vb.pp("layer");
        // Inner convolutions use ReLU whatever hidden_act says (Hugging Face's ResNetConvLayer
        // default); hidden_act is the stem's and the residual's activation.
        let layers = match cfg.layer_type.as_str() {
            "basic" => vec![
                ConvBn::load(&l.pp("0"), (cin, cout, 3), stride, Some(Act::Relu))?,
                ConvBn::load(&l.pp("1"), (cout, cout, 3), 1, None)?,
            ],
            "bottleneck" => {
                let mid = cout / 4;
                let (s1, s2) = if cfg.downsample_in_bottleneck {
                    (stride, 1)
                } else {
                    (1, stride)
                };
                vec![
                    ConvBn::load(&l.pp("0"), (cin, mid, 1), s1, Some(Act::Relu))?,
                    ConvBn::load(&l.pp("1"), (mid, mid, 3), s2, Some(Act::Relu))?,
                    ConvBn::load(&l.pp("2"), (mid, cout, 1), 1, None)?,
                ]
            }
            other => {
                return Err(RuntimeError::Unsupported(format!(
                    "ResNet layer_type {other:?} (basic and bottleneck are)"
                )));
            }
        };
        Ok(Self {
            shortcut,
            layers,
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.clone();
        for l in &self.layers {
            h = l.forward(&h)?;
        }
        let residual = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        self.act.apply(&(h + residual)?)
    }

    fn elements(&self) -> usize {
        self.layers.iter().map(ConvBn::elements).sum::<usize>()
            + self.shortcut.as_ref().map_or(0, ConvBn::elements)
    }
}

/// A loaded `ResNetForImageClassification`.
pub struct ResNet {
    stem: ConvBn,
    blocks: Vec<Block>,
    classifier: Linear,
    num_channels: usize,
    device: Device,
    elements: usize,
}

impl ResNet {
    /// Loads the model in `spec` (safetensors, `config.json`) onto `device`; `labels` is the
    /// classifier's width.
    pub fn load(spec: &ModelSpec, labels: usize, device: &Device) -> Result<Self> {
        let cfg: ResNetConfig = serde_json::from_value(spec.config.clone()).map_err(|e| {
            RuntimeError::InvalidModel(format!("{}: config.json: {e}", spec.dir.display()))
        })?;
        if cfg.hidden_sizes.is_empty() || cfg.hidden_sizes.len() != cfg.depths.len() {
            return Err(RuntimeError::InvalidModel(format!(
                "{}: config.json: {} hidden_sizes for {} depths",
                spec.dir.display(),
                cfg.hidden_sizes.len(),
                cfg.depths.len()
            )));
        }
        let act = Act::parse(&cfg.hidden_act)?;
        // SAFETY: mapped read-only; model files are immutable once verified.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[&spec.weights], DType::F32, device)? };
        let stem = ConvBn::load(
            &vb.pp("resnet.embedder.embedder"),
            (cfg.num_channels, cfg.embedding_size, 7),
            2,
            Some(act),
        )?;
        let stages = vb.pp("resnet.encoder.stages");
        let mut blocks = Vec::new();
        let mut cin = cfg.embedding_size;
        for (s, (&cout, &depth)) in cfg.hidden_sizes.iter().zip(&cfg.depths).enumerate() {
            let stride = if s > 0 || cfg.downsample_in_first_stage {
                2
            } else {
                1
            };
            let stage = stages.pp(s.to_string()).pp("layers");
            for m in 0..depth {
                let (i, st) = if m == 0 { (cin, stride) } else { (cout, 1) };
                blocks.push(Block::load(
                    &stage.pp(m.to_string()),
                    &cfg,
                    (i, cout),
                    st,
                    act,
                )?);
            }
            cin = cout;
        }
        let classifier = candle_nn::linear(cin, labels, vb.pp("classifier.1"))?;
        let elements = stem.elements()
            + blocks.iter().map(Block::elements).sum::<usize>()
            + classifier.weight().elem_count()
            + classifier.bias().map_or(0, Tensor::elem_count);
        Ok(Self {
            stem,
            blocks,
            classifier,
            num_channels: cfg.num_channels,
            device: device.clone(),
            elements,
        })
    }

    /// Bytes of (folded) weights held.
    pub fn weight_bytes(&self) -> u64 {
        self.elements as u64 * 4
    }

    /// Logits for `n` images given as NCHW floats of `height` x `width`.
    pub fn classify(
        &self,
        pixels: &[f32],
        n: usize,
        (width, height): (usize, usize),
    ) -> Result<Vec<Vec<f32>>> {
        let x = Tensor::from_slice(pixels, (n, self.num_channels, height, width), &self.device)?;
        Ok(self.forward(&x)?.to_vec2()?)
    }

    /// Logits `[n, labels]` for pixel values `[n, channels, height, width]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.stem.forward(x)?;
        // MaxPool2d(3, stride 2, padding 1): padding with copies of the edge is the same as
        // padding with -inf, since every window that covers a pad covers the edge it copies.
        let h = h
            .pad_with_same(2, 1, 1)?
            .pad_with_same(3, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        let mut h = h;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        let pooled = h.mean((2, 3))?;
        Ok(self.classifier.forward(&pooled)?)
    }
}
