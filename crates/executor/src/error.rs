//! [`ExecutorError`].

use alloy_primitives::U256;

/// What can go wrong executing or checking an inference.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The chain's database failed.
    #[error("chain: {0}")]
    Chain(#[from] lattice_chain::ChainError),
    /// The block store failed (a corrupt block is named with its file).
    #[error("store: {0}")]
    Store(String),
    /// Fetching from peers failed.
    #[error("fetching {what}: {reason}")]
    Fetch {
        /// What was fetched.
        what: String,
        /// Why it failed.
        reason: String,
    },
    /// A registry call reverted or returned nonsense.
    #[error("ModelRegistry.{call}: {reason}")]
    Registry {
        /// The function.
        call: &'static str,
        /// The decoded revert or error.
        reason: String,
    },
    /// No such model.
    #[error("{0}")]
    UnknownModel(String),
    /// No such request.
    #[error("no inference request {0} in the registry")]
    UnknownRequest(U256),
    /// The request cannot be run as asked (the requester's fault: rejected on chain).
    #[error("{0}")]
    BadRequest(String),
    /// Loading or running the model failed (the node's fault: not rejected).
    #[error("runtime: {0}")]
    Runtime(String),
    /// A key could not sign.
    #[error("key: {0}")]
    Key(String),
    /// A receipt is malformed or does not check out.
    #[error("receipt: {0}")]
    BadReceipt(String),
    /// The fulfilment transaction was refused by the pool.
    #[error("submitting {what}: {reason}")]
    Submit {
        /// Which transaction.
        what: &'static str,
        /// The pool's reason.
        reason: String,
    },
    /// Waited too long.
    #[error("{0}")]
    Timeout(String),
}

impl From<lattice_store::StoreError> for ExecutorError {
    fn from(e: lattice_store::StoreError) -> Self {
        Self::Store(e.to_string())
    }
}
