use cid::Cid;
use lattice_store::StoreError;

/// One source's last answer for a block it could not supply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFailure {
    /// The source, in [`crate::Source`]'s string form.
    pub source: String,
    /// What went wrong the last time it was asked.
    pub reason: String,
}

/// Everything that can stop a fetch, in the user's terms.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A source string could not be understood.
    #[error(
        "invalid source {input:?}: {reason} (use http(s)://host:port for a gateway, kubo+http(s)://host:port for a Kubo RPC API)"
    )]
    InvalidSource {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },
    /// A block is missing and [`crate::fetch`] was given no sources.
    #[error("block {cid} is not in the store and no sources were given")]
    NoSources {
        /// The first missing block found.
        cid: Cid,
    },
    /// No source supplied a block that hashes to its CID.
    #[error("block {cid}: every source failed: {}", join(failures))]
    Block {
        /// The block.
        cid: Cid,
        /// Each source's last failure, in the order the sources were given.
        failures: Vec<SourceFailure>,
    },
    /// The CID uses a hash or codec this fetcher cannot check or walk.
    #[error("block {cid}: {reason}")]
    Unsupported {
        /// The block.
        cid: Cid,
        /// What is unsupported.
        reason: String,
    },
    /// A block hashed correctly but is not valid dag-pb, so its links are
    /// unknown and the DAG cannot be completed.
    #[error("block {cid} matches its CID but is not valid dag-pb: {reason}")]
    Malformed {
        /// The block.
        cid: Cid,
        /// The decoder's complaint.
        reason: String,
    },
    /// The local store failed.
    #[error("local store: {0}")]
    Store(Box<StoreError>),
    /// The DAG was fetched and verified but could not be pinned or laid out.
    #[error("fetched every block under {root}, but {what} failed: {source}")]
    Finish {
        /// The root fetched.
        root: Cid,
        /// `pinning` or `laying files out contiguously`.
        what: &'static str,
        /// The store's error.
        source: Box<StoreError>,
    },
    /// The HTTP client could not be set up.
    #[error("setting up the HTTP client: {0}")]
    Client(String),
    /// A background task died (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for FetchError {
    fn from(e: StoreError) -> Self {
        FetchError::Store(Box::new(e))
    }
}

fn join(failures: &[SourceFailure]) -> String {
    if failures.is_empty() {
        return "no sources".into();
    }
    failures
        .iter()
        .map(|f| format!("{}: {}", f.source, f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}
