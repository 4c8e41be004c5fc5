//! Lattice's Solidity contracts, compiled, with typed bindings.
//!
//! **Owns** the compiled `ModelRegistry` and `IPFSIncentives` contracts (and the test-only
//! `ReentrantWithdrawer`): their ABIs as [`alloy_sol_types::sol!`] bindings (`…Call`,
//! events, errors and structs) and their creation and runtime bytecode as
//! [`alloy_primitives::Bytes`]. Everything is generated at compile time from the artifacts
//! committed in `contracts/artifacts/*.json`, which `contracts/build` produces from
//! `contracts/src` with the pinned solc-js and OpenZeppelin (CI checks they are up to date).
//!
//! **Never** needs node or solc to build: it only reads the committed JSON artifacts. It
//! executes nothing; the EVM (`lattice-evm`) deploys and runs this code.
//!
//! Main items: [`ModelRegistry`], [`IPFSIncentives`], [`ReentrantWithdrawer`] (each with
//! `BYTECODE` (creation code, constructor arguments to be appended ABI-encoded) and
//! `DEPLOYED_BYTECODE`), [`Artifact`]/[`ARTIFACTS`] for the raw artifact files, and the
//! hashing rules the contracts use: [`model_id`], [`reward_leaf`], [`hash_pair`].
//!
//! # Constructors (for genesis)
//! - `ModelRegistry(address admin, address pinningPool, address treasury)`: `admin` gets
//!   `DEFAULT_ADMIN_ROLE`; fee split defaults to executor 1000 bps, pinning pool 500 bps,
//!   protocol 250 bps (the model owner gets the rest), refund timeout 3600 s.
//!   Executors need `EXECUTOR_ROLE`, granted by the admin.
//! - `IPFSIncentives(address admin, address publisher)`: `admin` gets `DEFAULT_ADMIN_ROLE`,
//!   `publisher` (unless zero) `PUBLISHER_ROLE`.
//!
//! Neither contract has immutables, so the runtime code a constructor returns is the same at
//! any address and equals `DEPLOYED_BYTECODE`; the constructor's storage writes must be kept.
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use alloy_primitives::{Address, B256, U256, keccak256};

// Bindings generated from the committed artifacts. The macro reads the JSON at compile time
// (and tracks it, so a rebuilt artifact recompiles this crate).
#[allow(missing_docs, unreachable_pub, clippy::too_many_arguments)]
mod bindings {
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        ModelRegistry,
        "../../contracts/artifacts/ModelRegistry.json"
    );
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        IPFSIncentives,
        "../../contracts/artifacts/IPFSIncentives.json"
    );
    alloy_sol_types::sol!(
        #[sol(all_derives)]
        ReentrantWithdrawer,
        "../../contracts/artifacts/ReentrantWithdrawer.json"
    );
}

/// `ModelRegistry`: content-addressed model registry with paid, split inference fees.
///
/// Generated from `contracts/artifacts/ModelRegistry.json`; holds `…Call` types, events,
/// errors (`ModelRegistryErrors`), structs, `BYTECODE` and `DEPLOYED_BYTECODE`.
pub use bindings::ModelRegistry;

/// `IPFSIncentives`: epoch Merkle-root pinning rewards in the native token.
///
/// Generated from `contracts/artifacts/IPFSIncentives.json`.
pub use bindings::IPFSIncentives;

/// Test-only helper: a model owner whose `receive` re-enters `ModelRegistry.withdraw`.
///
/// Generated from `contracts/artifacts/ReentrantWithdrawer.json`; never deploy it on a chain.
pub use bindings::ReentrantWithdrawer;

/// One committed artifact file, as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Artifact {
    /// Contract name, e.g. `"ModelRegistry"`.
    pub name: &'static str,
    /// The artifact JSON (`abi`, `bytecode`, `deployedBytecode`, `compiler`, `settings`, …).
    pub json: &'static str,
}

/// The artifact files of every compiled contract, as committed.
pub const ARTIFACTS: [Artifact; 3] = [
    Artifact {
        name: "ModelRegistry",
        json: include_str!("../../../contracts/artifacts/ModelRegistry.json"),
    },
    Artifact {
        name: "IPFSIncentives",
        json: include_str!("../../../contracts/artifacts/IPFSIncentives.json"),
    },
    Artifact {
        name: "ReentrantWithdrawer",
        json: include_str!("../../../contracts/artifacts/ReentrantWithdrawer.json"),
    },
];

/// `ModelRegistry.EXECUTOR_ROLE`: `keccak256("EXECUTOR_ROLE")`, held by accounts that may
/// fulfil or reject inference requests.
pub const EXECUTOR_ROLE: B256 =
    alloy_primitives::b256!("0xd8aa0f3194971a2a116679f7c2090f6939c8d4e01a2a8d7e41d55e5351469e63");

/// A model's id in `ModelRegistry`: `keccak256` of its (first version's) root CID bytes.
pub fn model_id(root_cid: &[u8]) -> B256 {
    keccak256(root_cid)
}

/// The `IPFSIncentives` Merkle leaf of one reward, as the contract computes it
/// (OpenZeppelin `StandardMerkleTree` encoding, double-hashed):
/// `keccak256(keccak256(abi.encode(uint256 epoch, address pinner, uint256 amount)))`.
pub fn reward_leaf(epoch: U256, pinner: Address, amount: U256) -> B256 {
    use alloy_sol_types::SolValue;
    keccak256(keccak256((epoch, pinner, amount).abi_encode()))
}

/// Hash of two Merkle nodes in sorted order, as OpenZeppelin's `MerkleProof` combines them.
pub fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executor_role_is_the_hash_of_its_name() {
        assert_eq!(EXECUTOR_ROLE, keccak256("EXECUTOR_ROLE"));
    }
}
