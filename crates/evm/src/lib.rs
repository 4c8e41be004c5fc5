//! EVM execution of Ethereum-typed blocks over a persistent state database.
//!
//! **Owns** the chain state of a Lattice node: accounts, contract code,
//! storage and block hashes in one redb file; executing a list of signed
//! transactions (legacy, EIP-2930, EIP-1559) as a block with revm; the
//! block's receipts, bloom, transactions/receipts/state roots and header; the
//! genesis state (geth-style `alloc`, system contracts deployed by running
//! their constructors, dev accounts); the reserved range of Lattice
//! precompiles.
//!
//! **Never** does networking or consensus (which block to build on, who
//! proposes, finality are the caller's business), never executes a
//! transaction that failed validation (it is skipped and reported with a
//! [`TxRejection`]), and never commits a partially executed block: a block's
//! whole state diff and header are written in one redb write transaction.
//!
//! # Flow
//! ```text
//! StateDb::open(path) ── init_genesis(&Genesis) ──► block 0
//! execute_block(&db, &parent, txs, &BlockParams) ──► ExecutedBlock (header, receipts,
//!                                                      diff, rejected txs)
//!   (senders recovered in parallel; execute_recovered takes them pre-recovered)
//! db.commit(&executed) ──► new head, atomically
//! ```
//!
//! # System contracts
//! Genesis runs constructors at fixed addresses ([`Genesis::with_deployment`]):
//! `ModelRegistry` at [`MODEL_REGISTRY_ADDRESS`] (`0x4c61…0001`) and
//! `IPFSIncentives` at [`IPFS_INCENTIVES_ADDRESS`] (`0x4c61…0002`); the node
//! passes their creation code (from `lattice-contracts`) with constructor
//! arguments. Lattice precompiles live at `0x…1000`–`0x…10ff`
//! ([`LatticePrecompiles`]).
//!
//! # On-disk layout
//! One redb file (`StateDb::open(path)`). Keys are hashed the way the state
//! trie hashes them, so a table scan is already in trie order:
//! - `accounts`: `keccak(address)` → `nonce u64 BE ‖ balance U256 BE ‖
//!   code_hash ‖ storage_root` (104 bytes). Empty accounts are not stored.
//! - `storage`: `keccak(address) ‖ keccak(slot)` → value (U256 BE, 32 bytes).
//!   Zero values are not stored.
//! - `code`: code hash → bytecode.
//! - `block_hashes`: block number → block hash.
//! - `headers`: block number → RLP of the [`Header`].
//! - `meta`: `"head"` → `number u64 BE ‖ hash ‖ state_root` of the last
//!   committed block; `"chain_id"` → `u64 BE`.
//!
//! The state root in `meta` always equals the MPT root recomputed from the
//! `accounts` and `storage` tables ([`StateDb::recompute_state_root`]): both
//! change in the same transaction.
//!
//! # Limits
//! The state root is recomputed per block from a scan of `accounts` merged
//! with the block's diff (storage roots only for accounts whose storage
//! changed); there is no stored intermediate trie yet, so root cost grows with
//! the number of accounts.
//!
//! Blocks follow Prague EVM rules ([`SPEC`]) without the beacon-chain system
//! calls (EIP-4788 beacon roots, EIP-2935 history contract, EIP-7685
//! requests): there is no consensus layer to feed them. Blob (EIP-4844) and
//! set-code (EIP-7702) transactions are rejected. Header validity beyond the
//! parent link (timestamps, gas-limit bounds) is the consensus layer's job.
//!
//! Main types: [`StateDb`], [`Genesis`], [`BlockParams`], [`ExecutedBlock`],
//! [`StateDiff`], [`TxRejection`], [`LatticePrecompiles`], [`DEV_ACCOUNTS`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

mod call;
mod db;
mod dev;
mod error;
mod execute;
mod genesis;
mod pending;
mod precompile;
mod trie;

pub use alloy_consensus::{Header, ReceiptEnvelope, TxEnvelope};
pub use call::{
    AccountOverride, CallOutcome, CallRequest, StateOverrides, call, call_at, decode_revert_reason,
    estimate_gas, estimate_gas_at,
};
pub use db::{Account, Head, StateDb};
pub use dev::{DEV_ACCOUNTS, DevAccount};
pub use error::{BlockError, CallError, GenesisError, StateError, TxRejection};
pub use execute::{
    AccountChange, BlockParams, ExecutedBlock, Rejected, SPEC, StateDiff, execute_block,
    execute_block_on, execute_block_with, execute_known_on, execute_recovered,
    execute_recovered_on,
};
pub use genesis::{
    ChainConfig, Deployment, Genesis, GenesisAlloc, GenesisCall, IPFS_INCENTIVES_ADDRESS,
    MODEL_REGISTRY_ADDRESS, validators_commitment,
};
pub use pending::PendingState;
pub use precompile::{
    LATTICE_PRECOMPILE_FIRST, LATTICE_PRECOMPILE_LAST, LatticePrecompileFn, LatticePrecompiles,
    PrecompileRangeError,
};
pub use redb;
