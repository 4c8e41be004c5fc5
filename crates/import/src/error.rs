//! Errors of an import.

use std::path::PathBuf;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The source is neither a folder nor a repository id, or names nothing.
    #[error("{0}")]
    Source(String),
    /// The model is not one the runtime can run (the message lists what it can).
    #[error("{0}")]
    Unsupported(String),
    /// A file on disk could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The hub answered with an error or something that is not what it should be.
    #[error("{0}")]
    Hub(String),
    /// A downloaded file's sha256 is not the one the hub announced.
    #[error(
        "{file}: downloaded content has sha256 {got}, the hub announced {want}; the download was removed"
    )]
    Corrupt {
        /// The file in the repository.
        file: String,
        /// The sha256 the hub announced (its ETag).
        want: String,
        /// The sha256 of what arrived.
        got: String,
    },
    /// A PyTorch checkpoint could not be converted.
    #[error("converting {}: {message}", path.display())]
    Convert {
        /// The checkpoint.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The store refused the import.
    #[error(transparent)]
    Store(#[from] lattice_store::StoreError),
}

impl ImportError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImportError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ImportError> = std::result::Result<T, E>;

/// `map_err` helper: an I/O error on `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
    move |e| ImportError::io(path, e)
}
