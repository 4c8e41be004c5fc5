use std::path::PathBuf;

use cid::Cid;

/// Everything that can go wrong in the store, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The index database failed.
    #[error("store database: {0}")]
    Db(#[from] redb::Error),
    /// Another process holds the store.
    #[error(
        "the store at {} is in use by another lattice process (for example `lattice ipfs serve`); stop it or talk to it over its HTTP API",
        .0.display()
    )]
    Locked(PathBuf),
    /// A block that is needed is not in the store.
    #[error("block {0} is not in the store")]
    NotFound(Cid),
    /// Stored or received bytes do not hash to their CID.
    #[error("block {0} is corrupt: its bytes do not hash to its CID")]
    Corrupt(Cid),
    /// A block or message could not be decoded.
    #[error("malformed {0}")]
    Malformed(String),
    /// Well-formed input this store does not handle.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// An argument is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A path inside a DAG does not exist.
    #[error("no link named {name:?} under {parent}")]
    NoSuchPath {
        /// Directory searched.
        parent: Cid,
        /// Missing name.
        name: String,
    },
    /// A CAR file could not be read or written.
    #[error("CAR: {0}")]
    Car(String),
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::DatabaseError
);

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
