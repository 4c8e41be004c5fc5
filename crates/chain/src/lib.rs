//! The Lattice chain around the execution core: block storage and indexes,
//! the transaction pool, and block production as the application side of a
//! consensus engine.
//!
//! **Owns** the chain tables (bodies, senders, receipts, block-by-hash,
//! transaction lookup, a log index by address and topic) kept in the state
//! database's redb file and written in the same transaction as each block's
//! state; the transaction pool; [`Node::propose`] / [`Node::verify`] /
//! [`Node::finalize`]; the single-validator dev sealer ([`dev::run`]).
//!
//! **Never** speaks a wire protocol (JSON-RPC is `lattice-rpc`'s job,
//! consensus a later crate's), never announces a block before it is durably
//! committed, and never pools a transaction that failed a check it could
//! make on arrival (decode, size, type, chain id, signature, fees, intrinsic
//! gas, nonce, balance).
//!
//! # Flow
//! ```text
//! submit_raw(bytes) ─ decode, recover, check ─► Pool (pending | queued)
//! propose(ts) ─ Pool::best ─► execute on head ─► ExecutedBlock
//! verify(header, txs) ─ re-execute, compare roots ─► ExecutedBlock
//! finalize(block) ─ one redb txn: state + chain tables ─► pool update ─► NewBlock broadcast
//! ```
//!
//! Main types: [`Node`], [`NodeConfig`], [`Pool`], [`PoolConfig`],
//! [`BlockRecord`], [`TxRecord`], [`ReceiptRecord`], [`LogRecord`],
//! [`LogFilter`], [`NewBlock`], [`PoolError`], [`ChainError`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod dev;
mod error;
mod genesis;
mod node;
mod pool;
mod store;

pub use error::{ChainError, PoolError, VerifyError};
pub use genesis::{
    DEV_CHAIN_ID, DEV_EXECUTOR, Roles, dev_genesis, incentives_init_code, registry_init_code,
    with_system_contracts,
};
pub use node::{NewBlock, Node, NodeConfig, PendingTx, SyncStatus};
pub use pool::{Inserted, Pool, PoolConfig, PoolStatus, PooledTx, intrinsic_gas};
pub use store::{BlockRecord, LogFilter, LogRecord, ReceiptRecord, TxRecord};
