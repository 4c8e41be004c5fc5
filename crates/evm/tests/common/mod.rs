//! Helpers shared by the integration tests: signing and small block builders.
#![allow(dead_code, unreachable_pub)]

use alloy_consensus::{SignableTransaction, Signed, TxEip1559, TxEnvelope};
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use lattice_evm::{BlockParams, ExecutedBlock, Genesis, StateDb, execute_block};

pub const CHAIN_ID: u64 = 1337;
pub const GWEI: u128 = 1_000_000_000;
pub const COINBASE: Address = Address::repeat_byte(0xc0);

/// Signs `tx` with `key` (secp256k1 via alloy-consensus).
pub fn sign<T: SignableTransaction<Signature>>(key: B256, tx: T) -> Signed<T> {
    let sig = alloy_consensus::crypto::secp256k1::sign_message(key, tx.signature_hash())
        .expect("valid key");
    tx.into_signed(sig)
}

/// A signed EIP-1559 transfer (or call with `input`).
pub fn eip1559(
    key: B256,
    nonce: u64,
    to: Address,
    value: U256,
    input: Bytes,
    gas: u64,
) -> TxEnvelope {
    sign(
        key,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: 2 * GWEI,
            max_priority_fee_per_gas: GWEI,
            to: TxKind::Call(to),
            value,
            access_list: Default::default(),
            input,
        },
    )
    .into()
}

/// A signed EIP-1559 contract creation.
pub fn create(key: B256, nonce: u64, init_code: Bytes) -> TxEnvelope {
    sign(
        key,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 500_000,
            max_fee_per_gas: 2 * GWEI,
            max_priority_fee_per_gas: GWEI,
            to: TxKind::Create,
            value: U256::ZERO,
            access_list: Default::default(),
            input: init_code,
        },
    )
    .into()
}

/// Opens a fresh state DB in `dir` with `genesis`.
pub fn open_with(dir: &std::path::Path, genesis: &Genesis) -> StateDb {
    let db = StateDb::open(dir.join("state.redb")).expect("open");
    db.init_genesis(genesis).expect("genesis");
    db
}

/// Executes `txs` on the head and commits.
pub fn build(db: &StateDb, txs: Vec<TxEnvelope>) -> ExecutedBlock {
    let parent = db.latest_header().expect("head");
    let params = BlockParams::new(COINBASE, parent.timestamp + 12, 30_000_000);
    let block = execute_block(db, &parent, txs, &params).expect("execute");
    db.commit(&block).expect("commit");
    block
}

/// Init code that deploys `runtime` unchanged.
pub fn deployer(runtime: &[u8]) -> Bytes {
    let len = u8::try_from(runtime.len()).expect("short runtime");
    let mut code = vec![
        0x60, len, 0x60, 0x0c, 0x60, 0x00, 0x39, 0x60, len, 0x60, 0x00, 0xf3,
    ];
    code.extend_from_slice(runtime);
    code.into()
}

/// Runtime: slot 0 += 1.
pub const COUNTER: [u8; 10] = [0x60, 0x00, 0x54, 0x60, 0x01, 0x01, 0x60, 0x00, 0x55, 0x00];

/// A dev genesis with the real `ModelRegistry` and `IPFSIncentives` at their
/// fixed addresses, administered by dev account 0.
pub fn system_genesis() -> Genesis {
    use alloy_sol_types::SolConstructor;
    use lattice_contracts::{IPFSIncentives, ModelRegistry};
    use lattice_evm::{DEV_ACCOUNTS, IPFS_INCENTIVES_ADDRESS, MODEL_REGISTRY_ADDRESS};
    let admin = DEV_ACCOUNTS[0].address;
    let mut registry = ModelRegistry::BYTECODE.to_vec();
    registry.extend(
        ModelRegistry::constructorCall {
            admin,
            pinningPool_: IPFS_INCENTIVES_ADDRESS,
            treasury_: admin,
        }
        .abi_encode(),
    );
    let mut incentives = IPFSIncentives::BYTECODE.to_vec();
    incentives.extend(
        IPFSIncentives::constructorCall {
            admin,
            publisher: admin,
        }
        .abi_encode(),
    );
    Genesis::dev(CHAIN_ID)
        .with_deployment(MODEL_REGISTRY_ADDRESS, registry.into())
        .with_deployment(IPFS_INCENTIVES_ADDRESS, incentives.into())
}
