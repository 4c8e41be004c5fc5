//! Block execution over a real redb state DB: transfers, fees, rejections,
//! receipts and logs, roots, genesis deployments, the precompile hook.

mod common;

use alloy_consensus::{
    Receipt, ReceiptEnvelope, SignableTransaction, Signed, Transaction, TxEip1559, TxEip2930,
    TxEip7702, TxEnvelope, TxLegacy, proofs::calculate_receipt_root,
};
use alloy_primitives::{
    Address, B256, BloomInput, Bytes, Signature, TxKind, U256, address, b256, keccak256,
};
use common::*;
use lattice_evm::{
    BlockParams, DEV_ACCOUNTS, Genesis, GenesisAlloc, GenesisError, LATTICE_PRECOMPILE_FIRST,
    LatticePrecompiles, StateDb, StateError, TxRejection, execute_block, execute_block_with,
};

fn ether(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

fn balance(db: &StateDb, a: Address) -> U256 {
    db.account(a)
        .expect("read")
        .map_or(U256::ZERO, |a| a.balance)
}

fn nonce(db: &StateDb, a: Address) -> u64 {
    db.account(a).expect("read").map_or(0, |a| a.nonce)
}

#[test]
fn dev_keys_map_to_their_addresses() {
    for (i, dev) in DEV_ACCOUNTS.iter().enumerate() {
        let signer =
            alloy_signer_local::PrivateKeySigner::from_bytes(&dev.private_key).expect("valid key");
        assert_eq!(signer.address(), dev.address, "dev account {i}");
    }
}

#[test]
fn genesis_writes_block_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let genesis = Genesis::dev(CHAIN_ID);
    let db = open_with(dir.path(), &genesis);
    let head = db.latest().expect("read").expect("head");
    assert_eq!(head.number, 0);
    assert_eq!(db.chain_id().expect("chain id"), CHAIN_ID);
    for dev in DEV_ACCOUNTS {
        assert_eq!(balance(&db, dev.address), ether(10_000));
    }
    let header = db.header(0).expect("read").expect("header 0");
    assert_eq!(header.hash_slow(), head.hash);
    assert_eq!(header.state_root, head.state_root);
    assert_eq!(header.gas_limit, 30_000_000);
    assert_eq!(db.block_hash(0).expect("read"), Some(head.hash));
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        head.state_root
    );
    assert!(matches!(
        db.init_genesis(&genesis),
        Err(GenesisError::State(StateError::AlreadyInitialized))
    ));
}

/// Geth's well-known state root for one account with 1 wei is not at hand,
/// but an empty alloc must give the empty-trie root.
#[test]
fn empty_genesis_has_empty_state_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut genesis = Genesis::dev(CHAIN_ID);
    genesis.alloc.clear();
    let db = open_with(dir.path(), &genesis);
    assert_eq!(db.state_root().expect("root"), alloy_trie::EMPTY_ROOT_HASH);
}

#[test]
fn transfers_move_value_and_fees_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let [a, b, c] = [DEV_ACCOUNTS[0], DEV_ACCOUNTS[1], DEV_ACCOUNTS[2]];
    let to = Address::repeat_byte(0x42);
    let legacy = sign(
        b.private_key,
        TxLegacy {
            chain_id: Some(CHAIN_ID),
            nonce: 0,
            gas_price: 3 * GWEI,
            gas_limit: 21_000,
            to: TxKind::Call(to),
            value: U256::from(5),
            input: Bytes::new(),
        },
    );
    let eip2930 = sign(
        c.private_key,
        TxEip2930 {
            chain_id: CHAIN_ID,
            nonce: 0,
            gas_price: GWEI,
            gas_limit: 21_000,
            to: TxKind::Call(to),
            value: U256::from(7),
            access_list: Default::default(),
            input: Bytes::new(),
        },
    );
    let txs = vec![
        eip1559(a.private_key, 0, to, ether(1), Bytes::new(), 21_000),
        legacy.into(),
        eip2930.into(),
        eip1559(a.private_key, 1, to, U256::from(1), Bytes::new(), 50_000),
    ];
    let block = build(&db, txs);
    assert!(block.rejected.is_empty(), "{:?}", block.rejected);
    let base = block.header.base_fee_per_gas.expect("base fee");
    // Genesis used no gas: the base fee falls by 1/8.
    assert_eq!(base, 875_000_000);
    let base = U256::from(base);
    let gas = U256::from(21_000);
    let gwei = U256::from(GWEI);

    // EIP-1559: pays base + tip (capped by max fee), tip to coinbase, base burnt.
    let price_a = base + gwei;
    assert_eq!(
        balance(&db, a.address),
        ether(10_000) - ether(1) - U256::from(1) - gas * price_a * U256::from(2)
    );
    assert_eq!(nonce(&db, a.address), 2);
    // Legacy and 2930: pay the full gas price; the tip is price − base.
    assert_eq!(
        balance(&db, b.address),
        ether(10_000) - U256::from(5) - gas * gwei * U256::from(3)
    );
    assert_eq!(
        balance(&db, c.address),
        ether(10_000) - U256::from(7) - gas * gwei
    );
    assert_eq!(nonce(&db, b.address), 1);
    assert_eq!(balance(&db, to), ether(1) + U256::from(13));
    let tips = gas * (gwei * U256::from(2) + (gwei * U256::from(3) - base) + (gwei - base));
    assert_eq!(balance(&db, COINBASE), tips);

    assert_eq!(block.header.gas_used, 4 * 21_000);
    let cumulative: Vec<u64> = block
        .receipts
        .iter()
        .map(|r| r.cumulative_gas_used())
        .collect();
    assert_eq!(cumulative, vec![21_000, 42_000, 63_000, 84_000]);
    assert!(matches!(block.receipts[1], ReceiptEnvelope::Legacy(_)));
    assert!(matches!(block.receipts[2], ReceiptEnvelope::Eip2930(_)));
    assert!(matches!(block.receipts[0], ReceiptEnvelope::Eip1559(_)));
    assert!(block.receipts.iter().all(|r| r.status()));
    assert_eq!(
        block.senders,
        vec![a.address, b.address, c.address, a.address]
    );
    assert_eq!(
        block.header.receipts_root,
        calculate_receipt_root(&block.receipts)
    );
    assert_eq!(
        block.header.transactions_root,
        alloy_consensus::proofs::calculate_transaction_root(&block.transactions)
    );
    let head = db.latest().expect("read").expect("head");
    assert_eq!((head.number, head.hash), (1, block.hash));
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        head.state_root
    );

    // The next base fee follows the parent's gas use (84k of 30M: falls again).
    let next = build(&db, vec![]);
    assert_eq!(
        next.header.base_fee_per_gas,
        block
            .header
            .next_block_base_fee(alloy_eips::eip1559::BaseFeeParams::ethereum())
    );
}

#[test]
fn invalid_transactions_are_rejected_with_reasons_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut genesis = Genesis::dev(CHAIN_ID);
    genesis.gas_limit = 1_000_000;
    let contract = address!("0x00000000000000000000000000000000000c0de0");
    genesis.alloc.insert(
        contract,
        GenesisAlloc {
            balance: ether(1),
            code: Bytes::from_static(&COUNTER),
            ..Default::default()
        },
    );
    let db = open_with(dir.path(), &genesis);
    let key = DEV_ACCOUNTS[0].private_key;
    let to = Address::repeat_byte(0x42);
    let poor = b256!("0x0000000000000000000000000000000000000000000000000000000000000007");
    let tx1559 = |nonce: u64, gas: u64, max_fee: u128, tip: u128, chain_id: u64| TxEip1559 {
        chain_id,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
        to: TxKind::Call(to),
        value: U256::from(1),
        access_list: Default::default(),
        input: Bytes::new(),
    };
    let bad_sig: TxEnvelope = Signed::new_unhashed(
        tx1559(1, 21_000, 2 * GWEI, GWEI, CHAIN_ID),
        Signature::new(U256::from(1), U256::MAX, false), // high s: EIP-2
    )
    .into();
    let no_chain_id: TxEnvelope = sign(
        key,
        TxLegacy {
            chain_id: None,
            nonce: 1,
            gas_price: 2 * GWEI,
            gas_limit: 21_000,
            to: TxKind::Call(to),
            value: U256::ZERO,
            input: Bytes::new(),
        },
    )
    .into();
    let set_code: TxEnvelope = sign(
        key,
        TxEip7702 {
            chain_id: CHAIN_ID,
            nonce: 1,
            gas_limit: 100_000,
            max_fee_per_gas: 2 * GWEI,
            max_priority_fee_per_gas: GWEI,
            to,
            value: U256::ZERO,
            access_list: Default::default(),
            authorization_list: vec![],
            input: Bytes::new(),
        },
    )
    .into();
    let txs: Vec<TxEnvelope> = vec![
        eip1559(key, 0, to, U256::from(1), Bytes::new(), 21_000), // 0: ok
        sign(key, tx1559(1, 21_000, 2 * GWEI, GWEI, 1)).into(),   // 1: wrong chain
        eip1559(key, 0, to, U256::from(1), Bytes::new(), 21_000), // 2: nonce reused
        eip1559(key, 5, to, U256::from(1), Bytes::new(), 21_000), // 3: gap
        eip1559(poor, 0, to, U256::from(1), Bytes::new(), 21_000), // 4: no funds
        eip1559(key, 1, to, U256::from(1), Bytes::new(), 20_999), // 5: intrinsic
        sign(key, tx1559(1, 21_000, GWEI / 2, 0, CHAIN_ID)).into(), // 6: fee cap
        sign(key, tx1559(1, 21_000, GWEI, 2 * GWEI, CHAIN_ID)).into(), // 7: tip > cap
        bad_sig,                                                  // 8
        no_chain_id,                                              // 9
        set_code,                                                 // 10
        eip1559(key, 1, to, U256::from(1), Bytes::new(), 2_000_000), // 11: block gas
        eip1559(key, 1, to, U256::from(1), Bytes::new(), 21_000), // 12: ok
    ];
    let parent = db.latest_header().expect("head");
    let params = BlockParams::new(COINBASE, 12, 1_000_000);
    let block = execute_block(&db, &parent, txs, &params).expect("execute");
    let reasons: Vec<(usize, TxRejection)> = block
        .rejected
        .iter()
        .map(|r| (r.index, r.reason.clone()))
        .collect();
    let base_fee = block.header.base_fee_per_gas.expect("base fee");
    assert_eq!(reasons.len(), 11, "{reasons:#?}");
    assert_eq!(
        reasons[0],
        (
            1,
            TxRejection::WrongChainId {
                expected: CHAIN_ID,
                got: 1
            }
        )
    );
    assert_eq!(
        reasons[1],
        (2, TxRejection::NonceTooLow { tx: 0, state: 1 })
    );
    assert_eq!(
        reasons[2],
        (3, TxRejection::NonceTooHigh { tx: 5, state: 1 })
    );
    assert!(
        matches!(reasons[3], (4, TxRejection::InsufficientFunds { have, .. }) if have.is_zero()),
        "{:?}",
        reasons[3]
    );
    assert_eq!(
        reasons[4],
        (
            5,
            TxRejection::IntrinsicGasTooLow {
                intrinsic: 21_000,
                gas_limit: 20_999
            }
        )
    );
    assert_eq!(
        reasons[5],
        (
            6,
            TxRejection::FeeCapBelowBaseFee {
                max_fee: GWEI / 2,
                base_fee
            }
        )
    );
    assert_eq!(reasons[6], (7, TxRejection::PriorityFeeAboveFeeCap));
    assert_eq!(reasons[7], (8, TxRejection::BadSignature));
    assert_eq!(reasons[8], (9, TxRejection::MissingChainId));
    assert_eq!(reasons[9], (10, TxRejection::UnsupportedType(4)));
    assert!(matches!(
        reasons[10],
        (
            11,
            TxRejection::BlockGasExhausted {
                gas_limit: 2_000_000,
                ..
            }
        )
    ));
    for r in &block.rejected {
        assert!(!r.reason.to_string().is_empty());
    }
    assert_eq!(block.transactions.len(), 2);
    assert_eq!(block.receipts.len(), 2);
    assert_eq!(block.header.gas_used, 42_000);
    db.commit(&block).expect("commit");
    // Only the two valid transfers touched the sender and recipient.
    assert_eq!(nonce(&db, DEV_ACCOUNTS[0].address), 2);
    assert_eq!(balance(&db, to), U256::from(2));
    assert_eq!(
        db.account(
            alloy_signer_local::PrivateKeySigner::from_bytes(&poor)
                .expect("key")
                .address()
        )
        .expect("read"),
        None
    );

    // A contract cannot send (EIP-3607) — simulate by giving a dev account code.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut genesis = Genesis::dev(CHAIN_ID);
    if let Some(a) = genesis.alloc.get_mut(&DEV_ACCOUNTS[3].address) {
        a.code = Bytes::from_static(&COUNTER);
    }
    let db = open_with(dir2.path(), &genesis);
    let parent = db.latest_header().expect("head");
    let block = execute_block(
        &db,
        &parent,
        vec![eip1559(
            DEV_ACCOUNTS[3].private_key,
            0,
            to,
            U256::from(1),
            Bytes::new(),
            21_000,
        )],
        &BlockParams::new(COINBASE, 12, 30_000_000),
    )
    .expect("execute");
    assert_eq!(
        block.rejected[0].reason,
        TxRejection::SenderIsContract(DEV_ACCOUNTS[3].address)
    );
}

/// Runtime: MSTORE(0, 0x2a); LOG1(0, 32, topic); STOP.
fn emitter(topic: B256) -> Vec<u8> {
    let mut code = vec![0x60, 0x2a, 0x60, 0x00, 0x52, 0x7f];
    code.extend_from_slice(topic.as_slice());
    code.extend_from_slice(&[0x60, 0x20, 0x60, 0x00, 0xa1, 0x00]);
    code
}

#[test]
fn contract_logs_fill_receipts_and_bloom_and_storage_roots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let dev = DEV_ACCOUNTS[0];
    let topic = keccak256("Ping(uint256)");
    let runtime = emitter(topic);
    let block = build(
        &db,
        vec![
            create(dev.private_key, 0, deployer(&runtime)),
            create(dev.private_key, 1, deployer(&COUNTER)),
        ],
    );
    assert!(block.rejected.is_empty(), "{:?}", block.rejected);
    let emitter_addr = dev.address.create(0);
    let counter_addr = dev.address.create(1);
    assert_eq!(
        db.code_at(emitter_addr).expect("code"),
        Bytes::from(runtime.clone())
    );
    assert_eq!(
        db.code_at(counter_addr).expect("code"),
        Bytes::from_static(&COUNTER)
    );
    assert_eq!(
        db.account(emitter_addr)
            .expect("read")
            .expect("exists")
            .nonce,
        1
    );

    let block = build(
        &db,
        vec![
            eip1559(
                dev.private_key,
                2,
                emitter_addr,
                U256::ZERO,
                Bytes::new(),
                100_000,
            ),
            eip1559(
                dev.private_key,
                3,
                counter_addr,
                U256::ZERO,
                Bytes::new(),
                100_000,
            ),
            eip1559(
                dev.private_key,
                4,
                counter_addr,
                U256::ZERO,
                Bytes::new(),
                100_000,
            ),
        ],
    );
    assert!(block.rejected.is_empty(), "{:?}", block.rejected);
    let receipt: &Receipt = block.receipts[0].as_receipt().expect("receipt");
    assert!(receipt.status.coerce_status());
    assert_eq!(receipt.logs.len(), 1);
    let log = &receipt.logs[0];
    assert_eq!(log.address, emitter_addr);
    assert_eq!(log.data.topics(), &[topic]);
    assert_eq!(
        log.data.data,
        Bytes::from(U256::from(0x2a).to_be_bytes::<32>().to_vec())
    );
    let bloom = block.receipts[0].logs_bloom();
    assert!(bloom.contains_input(BloomInput::Raw(emitter_addr.as_slice())));
    assert!(bloom.contains_input(BloomInput::Raw(topic.as_slice())));
    assert!(!bloom.contains_input(BloomInput::Raw(counter_addr.as_slice())));
    assert_eq!(&block.header.logs_bloom, bloom);
    assert!(block.receipts[1].logs().is_empty());
    assert_eq!(
        block.header.receipts_root,
        calculate_receipt_root(&block.receipts)
    );

    assert_eq!(
        db.storage(counter_addr, U256::ZERO).expect("slot"),
        U256::from(2)
    );
    let account = db.account(counter_addr).expect("read").expect("exists");
    assert_ne!(account.storage_root, alloy_trie::EMPTY_ROOT_HASH);
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        db.state_root().expect("root")
    );
}

#[test]
fn roots_are_deterministic_and_survive_reopen() {
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut hashes = Vec::new();
    for dir in &dirs {
        let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
        let dev = DEV_ACCOUNTS[4];
        let mut txs: Vec<TxEnvelope> = (0..20)
            .map(|i| {
                eip1559(
                    dev.private_key,
                    i,
                    Address::repeat_byte(i as u8 + 1),
                    U256::from(i),
                    Bytes::new(),
                    21_000,
                )
            })
            .collect();
        txs.push(create(dev.private_key, 20, deployer(&COUNTER)));
        txs.push(eip1559(
            dev.private_key,
            21,
            dev.address.create(20),
            U256::ZERO,
            Bytes::new(),
            60_000,
        ));
        let block = build(&db, txs);
        assert!(block.rejected.is_empty());
        hashes.push((block.hash, block.header.state_root));
    }
    assert_eq!(hashes[0], hashes[1]);
    let db = StateDb::open(dirs[0].path().join("state.redb")).expect("reopen");
    let head = db.latest().expect("read").expect("head");
    assert_eq!((head.hash, head.state_root), hashes[0]);
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        head.state_root
    );
    assert_eq!(db.latest_header().expect("header").hash_slow(), head.hash);
    assert_eq!(
        db.storage(DEV_ACCOUNTS[4].address.create(20), U256::ZERO)
            .expect("slot"),
        U256::from(1)
    );
}

#[test]
fn commit_refuses_a_block_not_on_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let parent = db.latest_header().expect("head");
    let params = BlockParams::new(COINBASE, 12, 30_000_000);
    let a = execute_block(&db, &parent, vec![], &params).expect("execute");
    let b = execute_block(
        &db,
        &parent,
        vec![],
        &BlockParams::new(COINBASE, 13, 30_000_000),
    )
    .expect("execute");
    db.commit(&a).expect("commit");
    assert!(matches!(db.commit(&b), Err(StateError::NotOnHead { .. })));
    assert!(matches!(
        execute_block(&db, &parent, vec![], &params),
        Err(lattice_evm::BlockError::ParentNotHead { .. })
    ));
    assert_eq!(db.latest().expect("read").expect("head").hash, a.hash);
}

/// Init code: SSTORE(0, <32-byte arg>); return a runtime that returns slot 0.
fn stores_its_argument(arg: U256) -> Bytes {
    let mut code = vec![
        0x60, 0x20, 0x60, 0x24, 0x60, 0x00, 0x39, // CODECOPY(0, 36, 32): the argument
        0x60, 0x00, 0x51, 0x60, 0x00, 0x55, // SSTORE(0, MLOAD(0))
        0x60, 0x0b, 0x60, 0x19, 0x60, 0x00, 0x39, // CODECOPY(0, 25, 11): the runtime
        0x60, 0x0b, 0x60, 0x00, 0xf3, // RETURN(0, 11)
    ];
    code.extend_from_slice(&RETURNS_SLOT0);
    code.extend_from_slice(&arg.to_be_bytes::<32>());
    code.into()
}

/// Runtime: MSTORE(0, SLOAD(0)); RETURN(0, 32).
const RETURNS_SLOT0: [u8; 11] = [
    0x60, 0x00, 0x54, 0x60, 0x00, 0x52, 0x60, 0x20, 0x60, 0x00, 0xf3,
];

#[test]
fn genesis_deployment_runs_the_constructor_at_a_fixed_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = address!("0x4c00000000000000000000000000000000000001");
    let genesis =
        Genesis::dev(CHAIN_ID).with_deployment(registry, stores_its_argument(U256::from(0xbeef)));
    let db = open_with(dir.path(), &genesis);
    assert_eq!(
        db.code_at(registry).expect("code"),
        Bytes::from_static(&RETURNS_SLOT0)
    );
    assert_eq!(
        db.storage(registry, U256::ZERO).expect("slot"),
        U256::from(0xbeef)
    );
    let account = db.account(registry).expect("read").expect("exists");
    assert_eq!(account.nonce, 1);
    assert_eq!(account.code_hash, keccak256(RETURNS_SLOT0));
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        db.state_root().expect("root")
    );
    // The system caller leaves no trace.
    assert_eq!(
        db.account(revm::handler::SYSTEM_ADDRESS).expect("read"),
        None
    );

    // A transaction can call it.
    let block = build(
        &db,
        vec![eip1559(
            DEV_ACCOUNTS[0].private_key,
            0,
            registry,
            U256::ZERO,
            Bytes::new(),
            50_000,
        )],
    );
    assert!(block.receipts[0].status());

    // Same genesis, same root.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let db2 = open_with(dir2.path(), &genesis);
    assert_eq!(
        db2.latest_header().expect("h").hash_slow(),
        db.header(0).expect("h").expect("h").hash_slow()
    );

    // A reverting constructor fails genesis and writes nothing.
    let dir3 = tempfile::tempdir().expect("tempdir");
    let db3 = StateDb::open(dir3.path().join("state.redb")).expect("open");
    let bad = Genesis::dev(CHAIN_ID).with_deployment(
        registry,
        Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xfd]),
    );
    assert!(
        matches!(db3.init_genesis(&bad), Err(GenesisError::Deployment { address, .. }) if address == registry)
    );
    assert_eq!(db3.latest().expect("read"), None);
    // A deployment on an alloc address is refused.
    let dup = Genesis::dev(CHAIN_ID)
        .with_deployment(DEV_ACCOUNTS[0].address, stores_its_argument(U256::ZERO));
    assert!(matches!(
        db3.init_genesis(&dup),
        Err(GenesisError::Duplicate(_))
    ));
}

fn seven(_input: &[u8], _gas: u64) -> Result<(u64, Bytes), Bytes> {
    Ok((100, Bytes::from(U256::from(7).to_be_bytes::<32>().to_vec())))
}

#[test]
fn registered_precompile_answers_calls() {
    // Runtime: STATICCALL(gas, 0x1000, 0, 0, 0, 32); SSTORE(0, MLOAD(0)).
    let caller_code: [u8; 21] = [
        0x60, 0x20, 0x60, 0x00, 0x60, 0x00, 0x60, 0x00, 0x61, 0x10, 0x00, 0x5a, 0xfa, 0x50, 0x60,
        0x00, 0x51, 0x60, 0x00, 0x55, 0x00,
    ];
    let caller = address!("0x00000000000000000000000000000000000ca11e");
    let mut genesis = Genesis::dev(CHAIN_ID);
    genesis.alloc.insert(
        caller,
        GenesisAlloc {
            code: Bytes::from(caller_code.to_vec()),
            nonce: 1,
            ..Default::default()
        },
    );
    let run = |precompiles: &LatticePrecompiles| {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_with(dir.path(), &genesis);
        let parent = db.latest_header().expect("head");
        let tx = eip1559(
            DEV_ACCOUNTS[0].private_key,
            0,
            caller,
            U256::ZERO,
            Bytes::new(),
            100_000,
        );
        let block = execute_block_with(
            &db,
            &parent,
            vec![tx],
            &BlockParams::new(COINBASE, 12, 30_000_000),
            precompiles,
        )
        .expect("execute");
        db.commit(&block).expect("commit");
        assert!(block.receipts[0].status());
        db.storage(caller, U256::ZERO).expect("slot")
    };
    let mut with_hook = LatticePrecompiles::new();
    with_hook
        .register(LATTICE_PRECOMPILE_FIRST, seven)
        .expect("in range");
    assert_eq!(run(&with_hook), U256::from(7));
    assert_eq!(run(&LatticePrecompiles::new()), U256::ZERO);
}

#[test]
fn tx_types_round_trip_through_the_block() {
    // Transactions keep their hashes in the block (what an RPC will serve).
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let tx = eip1559(
        DEV_ACCOUNTS[0].private_key,
        0,
        Address::ZERO,
        U256::from(1),
        Bytes::new(),
        21_000,
    );
    let hash = *tx.tx_hash();
    let block = build(&db, vec![tx]);
    assert_eq!(*block.transactions[0].tx_hash(), hash);
    assert_eq!(block.transactions[0].nonce(), 0);
    let _ = TxEip1559::default().signature_hash();
}

/// The state root equals alloy-trie's reference `state_root_unhashed` over
/// the same accounts (storage roots from `storage_root_unhashed`), for a
/// genesis with balances, nonces, code and storage.
#[test]
fn state_root_matches_the_alloy_trie_reference() {
    use alloy_trie::{TrieAccount, root};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut genesis = Genesis::dev(CHAIN_ID);
    genesis.alloc.clear();
    let mut expected = Vec::new();
    for i in 1..=40u64 {
        let address = Address::from_word(keccak256(i.to_be_bytes()));
        let code = if i % 3 == 0 {
            Bytes::from_static(&COUNTER)
        } else {
            Bytes::new()
        };
        let storage: std::collections::BTreeMap<B256, B256> = (0..i % 5)
            .map(|k| {
                (
                    B256::from(U256::from(k * 7 + i)),
                    B256::from(U256::from(k + 1)),
                )
            })
            .collect();
        let alloc = GenesisAlloc {
            balance: U256::from(i * 1_000_003),
            nonce: i % 4,
            code: code.clone(),
            storage: storage.clone(),
        };
        let storage_root = root::storage_root_unhashed(
            storage.iter().map(|(k, v)| (*k, U256::from_be_bytes(v.0))),
        );
        let code_hash = if code.is_empty() {
            alloy_trie::KECCAK_EMPTY
        } else {
            keccak256(&code)
        };
        expected.push((
            address,
            TrieAccount {
                nonce: alloc.nonce,
                balance: alloc.balance,
                storage_root,
                code_hash,
            },
        ));
        genesis.alloc.insert(address, alloc);
    }
    // An empty alloc entry is part of the genesis trie (as in geth).
    let empty = Address::repeat_byte(0xee);
    genesis.alloc.insert(empty, GenesisAlloc::default());
    expected.push((empty, TrieAccount::default()));
    let db = open_with(dir.path(), &genesis);
    assert_eq!(
        db.state_root().expect("root"),
        root::state_root_unhashed(expected)
    );
    assert!(db.account(empty).expect("read").is_some());
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        db.state_root().expect("root")
    );
}

/// A contract that self-destructs in its constructor (EIP-6780: same
/// transaction) leaves no account; its value goes to the beneficiary.
#[test]
fn selfdestruct_in_constructor_leaves_no_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let dev = DEV_ACCOUNTS[0];
    let heir = Address::repeat_byte(0x77);
    let mut init = vec![0x73];
    init.extend_from_slice(heir.as_slice());
    init.push(0xff);
    let tx: TxEnvelope = sign(
        dev.private_key,
        TxEip1559 {
            chain_id: CHAIN_ID,
            nonce: 0,
            gas_limit: 200_000,
            max_fee_per_gas: 2 * GWEI,
            max_priority_fee_per_gas: GWEI,
            to: TxKind::Create,
            value: U256::from(5),
            access_list: Default::default(),
            input: init.into(),
        },
    )
    .into();
    let block = build(&db, vec![tx]);
    assert!(block.receipts[0].status());
    assert_eq!(db.account(dev.address.create(0)).expect("read"), None);
    assert_eq!(balance(&db, heir), U256::from(5));
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        db.state_root().expect("root")
    );
}
