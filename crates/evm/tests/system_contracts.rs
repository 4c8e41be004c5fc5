//! The real `ModelRegistry` and `IPFSIncentives` (from `lattice-contracts`)
//! deployed at genesis at their fixed addresses, then called by a signed
//! transaction.

mod common;

use alloy_primitives::{Bytes, U256};
use alloy_sol_types::{SolCall, SolEvent};
use common::*;
use lattice_contracts::{IPFSIncentives, ModelRegistry, model_id};
use lattice_evm::{DEV_ACCOUNTS, IPFS_INCENTIVES_ADDRESS, MODEL_REGISTRY_ADDRESS};

#[test]
fn system_contracts_are_deployed_at_genesis_and_callable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &system_genesis());
    assert_eq!(
        db.code_at(MODEL_REGISTRY_ADDRESS).expect("code"),
        ModelRegistry::DEPLOYED_BYTECODE
    );
    assert_eq!(
        db.code_at(IPFS_INCENTIVES_ADDRESS).expect("code"),
        IPFSIncentives::DEPLOYED_BYTECODE
    );
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        db.state_root().expect("root")
    );

    let root_cid = Bytes::from_static(b"\x01\x70\x12\x20model-root");
    let call = ModelRegistry::registerModelCall {
        rootCid: root_cid.clone(),
        manifestCid: Bytes::from_static(b"manifest"),
        name: "tiny".into(),
        format: "safetensors".into(),
        architecture: "bert".into(),
        price: U256::from(1000),
        isPrivate: false,
    };
    let owner = DEV_ACCOUNTS[1];
    let block = build(
        &db,
        vec![eip1559(
            owner.private_key,
            0,
            MODEL_REGISTRY_ADDRESS,
            U256::ZERO,
            call.abi_encode().into(),
            1_000_000,
        )],
    );
    assert!(block.rejected.is_empty(), "{:?}", block.rejected);
    let receipt = block.receipts[0].as_receipt().expect("receipt");
    assert!(receipt.status.coerce_status(), "registerModel reverted");
    let registered = receipt
        .logs
        .iter()
        .find_map(|log| ModelRegistry::ModelRegistered::decode_log(log).ok())
        .expect("ModelRegistered emitted");
    assert_eq!(registered.address, MODEL_REGISTRY_ADDRESS);
    assert_eq!(registered.data.modelId, model_id(&root_cid));
    assert_eq!(registered.data.owner, owner.address);
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        db.state_root().expect("root")
    );
}
