//! The inference side of a Lattice node: paid requests watched on chain, run on verified
//! models, answered with signed receipts.
//!
//! **Owns** the executor ([`Executor`]): it watches `ModelRegistry`'s `InferenceRequested`
//! events in every new block (and, at start, the pending requests of recent blocks), reads the
//! request document the `inputHash` commits to (one raw block: from the store, else from the
//! peers), resolves the model's version at the request's block to its root CID, fetches
//! missing or corrupt blocks from the peers (gateways or Kubo RPC, each block checked), lays
//! the folder out with every block checked ([`folder::model_dir`]), loads it through the
//! runtime's byte-bounded LRU in deterministic mode, runs each input, and posts
//! `fulfillInference` with the outputs document (inline as an identity CID when small, else a
//! raw block in the store) and an EIP-712 signed [`SignedReceipt`]; a request the model cannot
//! run (malformed document, wrong input kind) is turned down with `rejectInference` (full
//! refund, reason on chain). Also owns the receipt format ([`receipt`]), how requests and
//! outputs are addressed ([`content`]), and the `lattice_*` JSON-RPC namespace ([`rpc`]).
//!
//! **Never** loads a byte that was not checked against its CID, signs a receipt for outputs
//! it did not compute, rejects a request for its own trouble (a model or request document it cannot fetch, a model it cannot load
//! leaves the request pending for another executor or the requester's refund), or keeps
//! state of its own that the chain already has: request status, outputs' hashes and receipts
//! are read back from the registry and its logs.
//!
//! Main types: [`Executor`], [`ExecutorConfig`], [`Reader`] (what any node, executor or
//! not, reads back for `lattice_*` callers), [`Answer`], [`SignedReceipt`],
//! [`InferenceReceipt`], [`ExecutorError`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod content;
mod error;
mod executor;
pub mod folder;
mod reader;
pub mod receipt;
pub mod registry;
pub mod rpc;

pub use error::ExecutorError;
pub use executor::{Answer, Executed, Executor, ExecutorConfig, root_cid, runtime_name};
pub use reader::Reader;
pub use receipt::{InferenceReceipt, SignedReceipt};
