//! The inference runtime: real model families on candle and ONNX Runtime.
//!
//! Owns: finding out what a model folder is ([`spec`]), choosing a backend and device
//! ([`device`]), tokenization ([`text`]), the model implementations (BERT-family encoders on
//! candle in [`encoder`], GPT-2 in [`gpt2`], GGUF llama decoders in [`llama`], ONNX graphs in [`onnx`]), image
//! preprocessing ([`vision`]), Whisper speech-to-text ([`whisper`], audio in [`audio`]), the byte-bounded cache of loaded models ([`cache`]) and dynamic
//! batching ([`batch`]), joined in [`serve::Runtime`]; the wire form of a request and the
//! canonical bytes of its outputs ([`request`]).
//!
//! Vision families on candle besides ViT: ResNet in [`resnet`], CLIP in [`clip`].
//!
//! Must never: fetch anything from a network, trust bytes it has not been handed by the
//! store (callers verify CIDs before a folder reaches [`Model::load`]), or copy a weights file
//! into the heap when the format can be memory-mapped.
//!
//! Main types: [`Model`] (a loaded model: `run`), [`ModelSpec`] (what a folder holds),
//! [`Input`]/[`Output`], [`GenerateParams`], [`Generation`], [`cache::ModelCache`],
//! [`batch::Batcher`], [`Runtime`].

pub mod audio;
pub mod batch;
pub mod cache;
pub mod clip;
pub mod device;
pub mod encoder;
mod error;
pub mod generate;
pub mod gpt2;
pub mod kernels;
pub mod llama;
pub mod model;
pub mod onnx;
pub mod request;
pub mod resnet;
pub mod serve;
pub mod spec;
pub mod text;
pub mod vision;
pub mod whisper;

pub use device::{Backend, DeviceChoice};
pub use error::{Result, RuntimeError};
pub use generate::{GenerateParams, Generation, StopReason};
pub use model::{Input, Label, LoadOptions, Model, Output};
pub use request::{Request, outputs_document, parse_outputs};
pub use serve::{Runtime, RuntimeConfig};
pub use spec::{Family, Format, ModelSpec, Task};
