//! One error enum per failure domain.

use alloy_primitives::{Address, B256, U256};

/// The state database failed or holds something it should not.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// redb reported an I/O or storage error.
    #[error("state database: {0}")]
    Db(#[from] redb::Error),
    /// A stored record does not decode; the file is damaged or not a state DB.
    #[error("state database is corrupt: {0}")]
    Corrupt(String),
    /// The database has no genesis block yet.
    #[error("state database has no genesis block (run init_genesis first)")]
    NotInitialized,
    /// `init_genesis` was called on a database that already has blocks.
    #[error("state database already has a genesis block")]
    AlreadyInitialized,
    /// State was asked for at a block after the head.
    #[error("block {number} is not known (head is {head})")]
    UnknownBlock {
        /// Block asked for.
        number: u64,
        /// The head.
        head: u64,
    },
    /// The block to commit does not extend the current head.
    #[error("block {number} has parent {parent}, but the head is {head}")]
    NotOnHead {
        /// Number of the block being committed.
        number: u64,
        /// Its parent hash.
        parent: B256,
        /// Hash of the current head.
        head: B256,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StateError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
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

impl revm::database_interface::DBErrorMarker for StateError {}

/// Why a transaction was left out of a block. It was not executed and the
/// state is as if it had never been submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxRejection {
    /// EIP-4844 blob and EIP-7702 set-code transactions are not accepted.
    #[error("transaction type {0} is not supported")]
    UnsupportedType(u8),
    /// The signature does not recover to a public key (or has a high `s`).
    #[error("bad signature")]
    BadSignature,
    /// A legacy transaction without EIP-155 replay protection.
    #[error("transaction has no chain id (pre-EIP-155 legacy)")]
    MissingChainId,
    /// Signed for another chain.
    #[error("wrong chain id {got}, this chain is {expected}")]
    WrongChainId {
        /// This chain's id.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The nonce was already used.
    #[error("nonce too low: transaction has {tx}, sender is at {state}")]
    NonceTooLow {
        /// Transaction nonce.
        tx: u64,
        /// Sender's next nonce.
        state: u64,
    },
    /// The nonce leaves a gap.
    #[error("nonce too high: transaction has {tx}, sender is at {state}")]
    NonceTooHigh {
        /// Transaction nonce.
        tx: u64,
        /// Sender's next nonce.
        state: u64,
    },
    /// The sender cannot pay `gas_limit × max fee + value`.
    #[error("insufficient funds: need {need}, have {have}")]
    InsufficientFunds {
        /// Upfront cost.
        need: U256,
        /// Sender balance.
        have: U256,
    },
    /// The gas limit does not cover the intrinsic gas (or the EIP-7623 floor).
    #[error("intrinsic gas too low: need {intrinsic}, gas limit {gas_limit}")]
    IntrinsicGasTooLow {
        /// Intrinsic (or floor) gas of the transaction.
        intrinsic: u64,
        /// Its gas limit.
        gas_limit: u64,
    },
    /// The fee cap (or legacy gas price) is below the block's base fee.
    #[error("fee cap {max_fee} below base fee {base_fee}")]
    FeeCapBelowBaseFee {
        /// `max_fee_per_gas` or `gas_price`.
        max_fee: u128,
        /// The block's base fee.
        base_fee: u64,
    },
    /// `max_priority_fee_per_gas > max_fee_per_gas`.
    #[error("priority fee above fee cap")]
    PriorityFeeAboveFeeCap,
    /// The transaction's gas limit does not fit in what is left of the block.
    #[error("block gas exhausted: transaction needs {gas_limit}, {available} left")]
    BlockGasExhausted {
        /// Transaction gas limit.
        gas_limit: u64,
        /// Gas left in the block.
        available: u64,
    },
    /// EIP-3607: the sender has deployed code.
    #[error("sender {0} is a contract")]
    SenderIsContract(Address),
    /// Any other validation failure reported by the EVM.
    #[error("invalid transaction: {0}")]
    Invalid(String),
}

/// Executing a block failed as a whole (nothing to commit).
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// Reading state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The parent header is not the committed head of the database.
    #[error("parent {parent} is not the head {head}")]
    ParentNotHead {
        /// Hash of the given parent.
        parent: B256,
        /// Hash of the committed head.
        head: B256,
    },
    /// The EVM failed for a reason that is not the transaction's fault.
    #[error("evm: {0}")]
    Evm(String),
}

/// A simulated call (`eth_call`, `eth_estimateGas`) could not produce a
/// result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Reading state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The message is invalid (e.g. the caller cannot pay the value).
    #[error("{0}")]
    Invalid(String),
    /// It reverted even with all the gas allowed.
    #[error("execution reverted{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Reverted {
        /// The decoded `Error(string)` reason, if any.
        reason: Option<String>,
        /// Raw revert data.
        data: alloy_primitives::Bytes,
    },
    /// It halted even with all the gas allowed.
    #[error("{0}")]
    Halted(String),
    /// The EVM failed for a reason that is not the message's fault.
    #[error("evm: {0}")]
    Evm(String),
}

/// The genesis file or one of its deployments is invalid.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The JSON does not parse as a genesis file.
    #[error("genesis JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A system contract's constructor reverted or halted.
    #[error("deployment at {address} failed: {reason}")]
    Deployment {
        /// Target address.
        address: Address,
        /// What the EVM said.
        reason: String,
    },
    /// Two deployments or an alloc entry and a deployment share an address.
    #[error("address {0} is allocated twice")]
    Duplicate(Address),
    /// Writing the genesis state failed.
    #[error(transparent)]
    State(#[from] StateError),
}
