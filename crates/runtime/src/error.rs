//! The runtime's error type.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model. Messages name the file, tensor
/// or input at fault.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A file of the model could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The folder is not a model this runtime knows how to run.
    #[error("unsupported model: {0}")]
    Unsupported(String),
    /// The model's files are there but wrong (bad config, missing tensor, bad shape).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The request does not fit the model (empty text, undecodable image, bad parameter).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The requested device or backend is not available in this build or on this machine.
    #[error("device: {0}")]
    Device(String),
    /// ONNX Runtime could not be loaded or failed.
    #[error("onnx runtime: {0}")]
    Onnx(String),
    /// A tensor operation failed (candle).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

impl RuntimeError {
    /// An [`RuntimeError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<ort::Error> for RuntimeError {
    fn from(e: ort::Error) -> Self {
        Self::Onnx(e.to_string())
    }
}

/// Result with [`RuntimeError`].
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
