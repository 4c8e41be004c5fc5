//! Errors, one enum per failure domain.

use alloy_primitives::{B256, U256};
use lattice_evm::{BlockError, StateError};

/// The chain database failed or holds something it should not.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// State or storage failure underneath.
    #[error(transparent)]
    State(#[from] StateError),
    /// A stored chain record does not decode.
    #[error("chain database is corrupt: {0}")]
    Corrupt(String),
    /// Executing a block failed as a whole.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The datadir holds a chain with another chain id.
    #[error("datadir holds chain id {stored}, but the genesis says {genesis}")]
    WrongChain {
        /// Chain id in the database.
        stored: u64,
        /// Chain id of the genesis given.
        genesis: u64,
    },
    /// The datadir's block 0 commits to another validator set than the genesis given.
    #[error("datadir holds a chain with another validator set than the genesis names")]
    WrongValidators,
    /// Genesis failed.
    #[error(transparent)]
    Genesis(#[from] lattice_evm::GenesisError),
}

impl From<lattice_evm::redb::Error> for ChainError {
    fn from(e: lattice_evm::redb::Error) -> Self {
        Self::State(StateError::Db(e))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for ChainError {
            fn from(e: $t) -> Self {
                Self::State(StateError::Db(e.into()))
            }
        }
    )*};
}
from_redb!(
    lattice_evm::redb::TransactionError,
    lattice_evm::redb::TableError,
    lattice_evm::redb::StorageError,
    lattice_evm::redb::CommitError
);

/// Why the pool refused a transaction. The messages are geth's, which
/// Ethereum tools recognise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The bytes are not an EIP-2718 transaction.
    #[error("rlp: {0}")]
    Decode(String),
    /// Larger than the pool accepts.
    #[error("oversized data: transaction size {size}, limit {limit}")]
    Oversized {
        /// Encoded size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Blob and set-code transactions.
    #[error("transaction type not supported")]
    UnsupportedType,
    /// Pre-EIP-155 legacy transaction.
    #[error("only replay-protected (EIP-155) transactions allowed over RPC")]
    NotReplayProtected,
    /// Signed for another chain.
    #[error("invalid chain id for signer: have {got} want {expected}")]
    WrongChainId {
        /// This chain.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The signature does not recover.
    #[error("invalid sender: bad signature")]
    InvalidSignature,
    /// The same transaction is already in the pool.
    #[error("already known")]
    AlreadyKnown,
    /// Nonce below the sender's next nonce.
    #[error("nonce too low: next nonce {state}, tx nonce {tx}")]
    NonceTooLow {
        /// Sender's next nonce.
        state: u64,
        /// Transaction nonce.
        tx: u64,
    },
    /// Nonce so far ahead that the sender's slots could never fill.
    #[error("nonce too high: next nonce {state}, tx nonce {tx}, at most {max} ahead")]
    NonceTooHigh {
        /// Sender's next nonce.
        state: u64,
        /// Transaction nonce.
        tx: u64,
        /// How far ahead a nonce may be.
        max: u64,
    },
    /// Tip below the pool's floor, or not enough to displace a pooled
    /// transaction when the pool is full.
    #[error("transaction underpriced: tip needed {needed}, tip permitted {got}")]
    Underpriced {
        /// Tip needed.
        needed: u128,
        /// Tip given.
        got: u128,
    },
    /// Fee cap below the next block's base fee.
    #[error(
        "max fee per gas less than block base fee: maxFeePerGas: {max_fee}, baseFee: {base_fee}"
    )]
    FeeCapTooLow {
        /// Fee cap.
        max_fee: u128,
        /// Next base fee.
        base_fee: u64,
    },
    /// Tip above fee cap.
    #[error("max priority fee per gas higher than max fee per gas")]
    TipAboveFeeCap,
    /// Same sender and nonce as a pooled transaction, without a 10 % bump.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// Gas limit above the block gas limit.
    #[error("exceeds block gas limit")]
    GasLimitExceeded,
    /// Gas limit below the intrinsic gas.
    #[error("intrinsic gas too low: have {have}, want {want}")]
    IntrinsicGasTooLow {
        /// Gas limit.
        have: u64,
        /// Intrinsic gas (or the EIP-7623 floor).
        want: u64,
    },
    /// Balance below `gas × fee cap + value`.
    #[error(
        "insufficient funds for gas * price + value: balance {balance}, tx cost {cost}, overshot {overshot}"
    )]
    InsufficientFunds {
        /// Sender balance.
        balance: U256,
        /// Upfront cost.
        cost: U256,
        /// Missing amount.
        overshot: U256,
    },
    /// Sender has too many pooled transactions.
    #[error("account limit exceeded: {limit} transactions pooled for this sender")]
    AccountLimit {
        /// Per-sender limit.
        limit: usize,
    },
    /// Pool full and the transaction pays less than everything in it.
    #[error("txpool is full")]
    Full,
    /// The sender is a contract (EIP-3607).
    #[error("sender not an eoa: address {0}")]
    SenderNotEoa(alloy_primitives::Address),
    /// Reading state failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StateError> for PoolError {
    fn from(e: StateError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// A block from another validator failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Re-execution disagrees with the header.
    #[error("block {number}: {field} mismatch: header has {claimed}, execution gives {computed}")]
    Mismatch {
        /// Block number.
        number: u64,
        /// Which header field.
        field: &'static str,
        /// In the proposed header.
        claimed: B256,
        /// Recomputed.
        computed: B256,
    },
    /// The block contains a transaction that may not be executed.
    #[error("block {number}: transaction {hash} is invalid: {reason}")]
    InvalidTransaction {
        /// Block number.
        number: u64,
        /// Transaction hash.
        hash: B256,
        /// Why.
        reason: lattice_evm::TxRejection,
    },
    /// The block does not extend the head.
    #[error("block {number} does not extend the head: parent {parent}, head {head}")]
    NotOnHead {
        /// Block number.
        number: u64,
        /// Its parent.
        parent: B256,
        /// The head.
        head: B256,
    },
    /// Execution failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
}
