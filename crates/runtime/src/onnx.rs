//! ONNX graphs through ONNX Runtime (`ort`, loaded dynamically): text encoders that take
//! token ids, and image classifiers that take one image tensor.
//!
//! The shared library is found, in order, at `ORT_DYLIB_PATH`; in the active virtualenv's
//! `onnxruntime` package (`$VIRTUAL_ENV/lib/python3*/site-packages/onnxruntime/capi/`); in
//! `~/.cache/lattice/test-models/onnxruntime/` (what `tests/models/fetch.sh` unpacks); in the
//! user's site-packages; then `/usr/local/lib` and `/usr/lib`. When none is there the error
//! says what to install.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};

use crate::error::{Result, RuntimeError};
use crate::text::TokenBatch;

/// The ONNX Runtime version the wheel pinned by the tests ships.
pub const ORT_VERSION: &str = "1.32.0";

fn onnx_err(e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Onnx(e.to_string())
}

/// Where the ONNX Runtime shared library is (see the module docs for the order).
pub fn library_path() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(RuntimeError::Onnx(format!(
                "ORT_DYLIB_PATH={} is not a file",
                p.display()
            )))
        };
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    let site_packages = |root: &Path, dirs: &mut Vec<PathBuf>| {
        if let Ok(entries) = std::fs::read_dir(root.join("lib")) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("python3") {
                    dirs.push(e.path().join("site-packages/onnxruntime/capi"));
                }
            }
        }
    };
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        site_packages(Path::new(&venv), &mut dirs);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        dirs.push(home.join(".cache/lattice/test-models/onnxruntime"));
        site_packages(&home.join(".local"), &mut dirs);
    }
    dirs.push("/usr/local/lib".into());
    dirs.push("/usr/lib".into());
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib"
                })
            })
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Ok(p);
        }
    }
    Err(RuntimeError::Onnx(format!(
        "the ONNX Runtime library was not found: `pip install onnxruntime=={ORT_VERSION}` and set \
         ORT_DYLIB_PATH to <site-packages>/onnxruntime/capi/libonnxruntime.so.{ORT_VERSION} \
         (or run tests/models/fetch.sh, which unpacks one into ~/.cache/lattice/test-models/onnxruntime)"
    )))
}

static ENVIRONMENT: OnceLock<std::result::Result<ort::environment::Environment, String>> =
    OnceLock::new();

fn environment() -> Result<&'static ort::environment::Environment> {
    ENVIRONMENT
        .get_or_init(|| {
            let path = library_path().map_err(|e| e.to_string())?;
            let builder =
                ort::init_from(&path).map_err(|e| format!("loading {}: {e}", path.display()))?;
            builder
                .with_name("lattice")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))
        })
        .as_ref()
        .map_err(|e| RuntimeError::Onnx(e.clone()))
}

/// How sessions are built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Intra-op threads.
    pub threads: usize,
    /// Deterministic kernels (ONNX Runtime's `deterministic_compute`).
    pub deterministic: bool,
}

fn session(path: &Path, opts: SessionOptions) -> Result<Session> {
    let env = environment()?;
    let mut builder = Session::builder(env)
        .map_err(onnx_err)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(onnx_err)?
        .with_intra_threads(opts.threads.max(1))
        .map_err(onnx_err)?
        .with_inter_threads(1)
        .map_err(onnx_err)?
        .with_deterministic_compute(opts.deterministic)
        .map_err(onnx_err)?;
    builder
        .commit_from_file(path)
        .map_err(|e| RuntimeError::Onnx(format!("{}: {e}", path.display())))
}

fn dims(ty: &ValueType) -> Option<(TensorElementType, Vec<i64>)> {
    match ty {
        ValueType::Tensor { ty, shape, .. } => Some((*ty, shape.to_vec())),
        _ => None,
    }
}

/// Which token tensors a text graph takes, in the graph's input order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TextInput {
    Ids,
    Mask,
    Types,
}

/// An ONNX text encoder: token ids in, a sentence embedding out.
pub struct OnnxText {
    session: Mutex<Session>,
    inputs: Vec<(TextInput, TensorElementType)>,
    /// Rank of the first output: 3 = token states (mean-pooled here), 2 = already pooled.
    output_rank: usize,
    bytes: u64,
}

impl OnnxText {
    /// Loads the graph and checks that it takes `input_ids` (and optionally
    /// `attention_mask`, `token_type_ids`).
    pub fn load(path: &Path, opts: SessionOptions) -> Result<Self> {
        let session = session(path, opts)?;
        let mut inputs = Vec::new();
        for i in session.inputs() {
            let kind = match i.name() {
                "input_ids" => TextInput::Ids,
                "attention_mask" => TextInput::Mask,
                "token_type_ids" => TextInput::Types,
                other => {
                    return Err(RuntimeError::Unsupported(format!(
                        "{}: text graph input {other:?} (expected input_ids, attention_mask, token_type_ids)",
                        path.display()
                    )));
                }
            };
            let (ty, _) = dims(i.dtype()).ok_or_else(|| {
                RuntimeError::Unsupported(format!(
                    "{}: input {} is not a tensor",
                    path.display(),
                    i.name()
                ))
            })?;
            if !matches!(ty, TensorElementType::Int64 | TensorElementType::Int32) {
                return Err(RuntimeError::Unsupported(format!(
                    "{}: input {} has element type {ty:?} (expected int64 or int32)",
                    path.display(),
                    i.name()
                )));
            }
            inputs.push((kind, ty));
        }
        if !inputs.iter().any(|(k, _)| *k == TextInput::Ids) {
            return Err(RuntimeError::Unsupported(format!(
                "{}: the graph takes no input_ids",
                path.display()
            )));
        }
        let out = session.outputs().first().ok_or_else(|| {
            RuntimeError::InvalidModel(format!("{}: the graph has no output", path.display()))
        })?;
        let output_rank = dims(out.dtype()).map_or(0, |(_, d)| d.len());
        if !(output_rank == 2 || output_rank == 3) {
            return Err(RuntimeError::Unsupported(format!(
                "{}: first output {} has rank {output_rank} (expected [batch, tokens, hidden] or [batch, hidden])",
                path.display(),
                out.name()
            )));
        }
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            session: Mutex::new(session),
            inputs,
            output_rank,
            bytes,
        })
    }

    /// Bytes of the graph file (weights included).
    pub fn weight_bytes(&self) -> u64 {
        self.bytes
    }

    /// Sentence embeddings: mean pooling over the mask (when the graph returns token
    /// states), then L2 normalisation.
    pub fn embed(&self, batch: &TokenBatch) -> Result<Vec<Vec<f32>>> {
        let (b, s) = (batch.batch, batch.len);
        let shape = [b, s];
        let mut values: Vec<ort::session::SessionInputValue<'_>> =
            Vec::with_capacity(self.inputs.len());
        for (kind, ty) in &self.inputs {
            let src = match kind {
                TextInput::Ids => &batch.ids,
                TextInput::Mask => &batch.mask,
                TextInput::Types => &batch.type_ids,
            };
            values.push(if *ty == TensorElementType::Int64 {
                let v: Vec<i64> = src.iter().map(|&x| i64::from(x)).collect();
                Tensor::from_array((shape, v)).map_err(onnx_err)?.into()
            } else {
                let v: Vec<i32> = src.iter().map(|&x| x as i32).collect();
                Tensor::from_array((shape, v)).map_err(onnx_err)?.into()
            });
        }
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(values.as_slice()).map_err(onnx_err)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(onnx_err)?;
        let out_shape: Vec<usize> = out_shape.iter().map(|&d| d.max(0) as usize).collect();
        let mut rows = Vec::with_capacity(b);
        if self.output_rank == 3 {
            let [ob, os, h] = out_shape[..] else {
                return Err(RuntimeError::Onnx(format!("output shape {out_shape:?}")));
            };
            if ob != b || os != s {
                return Err(RuntimeError::Onnx(format!(
                    "output shape {out_shape:?} for input [{b}, {s}]"
                )));
            }
            for i in 0..b {
                let mut acc = vec![0f32; h];
                let mut n = 0f32;
                for t in 0..s {
                    if batch.mask[i * s + t] == 0 {
                        continue;
                    }
                    n += 1.0;
                    let row = &data[(i * s + t) * h..(i * s + t + 1) * h];
                    for (a, x) in acc.iter_mut().zip(row) {
                        *a += x;
                    }
                }
                let n = n.max(1e-9);
                acc.iter_mut().for_each(|a| *a /= n);
                rows.push(normalize(acc));
            }
        } else {
            let [ob, h] = out_shape[..] else {
                return Err(RuntimeError::Onnx(format!("output shape {out_shape:?}")));
            };
            if ob != b {
                return Err(RuntimeError::Onnx(format!(
                    "output shape {out_shape:?} for batch {b}"
                )));
            }
            for i in 0..b {
                rows.push(normalize(data[i * h..(i + 1) * h].to_vec()));
            }
        }
        Ok(rows)
    }
}

fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Memory layout of an image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[batch, height, width, channels]`.
    Nhwc,
    /// `[batch, channels, height, width]`.
    Nchw,
}

/// An ONNX image classifier: one float image tensor in, class scores out.
pub struct OnnxImage {
    session: Mutex<Session>,
    /// Layout and (height, width) the graph takes.
    pub layout: Layout,
    /// Input height and width.
    pub size: (usize, usize),
    bytes: u64,
}

impl OnnxImage {
    /// Loads the graph and reads its input layout (`[N,H,W,3]` or `[N,3,H,W]`, float32).
    pub fn load(path: &Path, opts: SessionOptions) -> Result<Self> {
        let session = session(path, opts)?;
        let [input] = session.inputs() else {
            return Err(RuntimeError::Unsupported(format!(
                "{}: an image classifier takes exactly one input, this graph takes {}",
                path.display(),
                session.inputs().len()
            )));
        };
        let (ty, d) = dims(input.dtype()).ok_or_else(|| {
            RuntimeError::Unsupported(format!("{}: input is not a tensor", path.display()))
        })?;
        if ty != TensorElementType::Float32 || d.len() != 4 {
            return Err(RuntimeError::Unsupported(format!(
                "{}: image input {} is {ty:?} {d:?} (expected float32 of rank 4)",
                path.display(),
                input.name()
            )));
        }
        let (layout, h, w) = if d[3] == 3 {
            (Layout::Nhwc, d[1], d[2])
        } else if d[1] == 3 {
            (Layout::Nchw, d[2], d[3])
        } else {
            return Err(RuntimeError::Unsupported(format!(
                "{}: image input shape {d:?} has no 3-channel axis",
                path.display()
            )));
        };
        if h <= 0 || w <= 0 {
            return Err(RuntimeError::Unsupported(format!(
                "{}: image input shape {d:?} has no fixed size",
                path.display()
            )));
        }
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Ok(Self {
            session: Mutex::new(session),
            layout,
            size: (h as usize, w as usize),
            bytes,
        })
    }

    /// Bytes of the graph file.
    pub fn weight_bytes(&self) -> u64 {
        self.bytes
    }

    /// Class probabilities for `n` preprocessed images laid out as [`OnnxImage::layout`]
    /// (a softmax is applied unless the graph already returns probabilities).
    pub fn classify(&self, pixels: &[f32], n: usize) -> Result<Vec<Vec<f32>>> {
        let (h, w) = self.size;
        if n == 0 || pixels.len() != n * h * w * 3 {
            return Err(RuntimeError::InvalidInput(format!(
                "{} floats for {n} images of {h}x{w}x3",
                pixels.len()
            )));
        }
        let shape = match self.layout {
            Layout::Nhwc => [n, h, w, 3],
            Layout::Nchw => [n, 3, h, w],
        };
        let input = TensorRef::from_array_view((shape, pixels)).map_err(onnx_err)?;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = session.run(ort::inputs![input]).map_err(onnx_err)?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(onnx_err)?;
        let [ob, classes] = out_shape[..] else {
            return Err(RuntimeError::Onnx(format!(
                "output shape {:?}",
                &out_shape[..]
            )));
        };
        if ob as usize != n || classes <= 0 {
            return Err(RuntimeError::Onnx(format!(
                "output shape {:?} for {n} images",
                &out_shape[..]
            )));
        }
        Ok(data
            .chunks(classes as usize)
            .map(|row| {
                let sum: f32 = row.iter().sum();
                let probabilities =
                    row.iter().all(|&x| (0.0..=1.0).contains(&x)) && (sum - 1.0).abs() < 1e-3;
                if probabilities {
                    row.to_vec()
                } else {
                    softmax(row)
                }
            })
            .collect())
    }
}

/// Softmax of one row.
pub fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}
