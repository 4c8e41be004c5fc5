//! The chain on real redb files: pool rules, propose/verify/finalize across
//! two nodes, persistence across reopen, receipts and the log index.

use alloy_consensus::{
    SignableTransaction, Signed, TxEip1559, TxEnvelope, TxLegacy, transaction::SignerRecoverable,
};
use alloy_eips::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent};
use lattice_chain::{
    DEV_CHAIN_ID, LogFilter, Node, NodeConfig, PoolConfig, PoolError, VerifyError, dev, dev_genesis,
};
use lattice_contracts::{ModelRegistry, model_id};
use lattice_evm::{DEV_ACCOUNTS, MODEL_REGISTRY_ADDRESS};

const GWEI: u128 = 1_000_000_000;

fn sign<T: SignableTransaction<Signature>>(key: B256, tx: T) -> Signed<T> {
    let sig = alloy_consensus::crypto::secp256k1::sign_message(key, tx.signature_hash())
        .expect("valid key");
    tx.into_signed(sig)
}

struct Tx {
    key: B256,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas: u64,
    max_fee: u128,
    tip: u128,
    chain_id: u64,
}

impl Tx {
    fn transfer(key: B256, nonce: u64) -> Self {
        Self {
            key,
            nonce,
            to: TxKind::Call(Address::repeat_byte(0x77)),
            value: U256::from(1_000u64),
            input: Bytes::new(),
            gas: 21_000,
            max_fee: 10 * GWEI,
            tip: GWEI,
            chain_id: DEV_CHAIN_ID,
        }
    }

    fn envelope(&self) -> TxEnvelope {
        sign(
            self.key,
            TxEip1559 {
                chain_id: self.chain_id,
                nonce: self.nonce,
                gas_limit: self.gas,
                max_fee_per_gas: self.max_fee,
                max_priority_fee_per_gas: self.tip,
                to: self.to,
                value: self.value,
                access_list: Default::default(),
                input: self.input.clone(),
            },
        )
        .into()
    }

    fn raw(&self) -> Vec<u8> {
        self.envelope().encoded_2718()
    }
}

fn key(i: usize) -> B256 {
    DEV_ACCOUNTS[i].private_key
}

fn open(dir: &std::path::Path, config: NodeConfig) -> Node {
    Node::open(
        &dir.join("chain.redb"),
        &dev_genesis(DEV_CHAIN_ID, config.gas_limit),
        config,
    )
    .expect("open node")
}

fn register_call(root: &[u8], name: &str) -> Bytes {
    ModelRegistry::registerModelCall {
        rootCid: Bytes::copy_from_slice(root),
        manifestCid: Bytes::from_static(b"manifest"),
        name: name.into(),
        format: "safetensors".into(),
        architecture: "bert".into(),
        price: U256::from(1000),
        isPrivate: false,
    }
    .abi_encode()
    .into()
}

fn registry_tx(key: B256, nonce: u64, root: &[u8]) -> Tx {
    Tx {
        to: TxKind::Call(MODEL_REGISTRY_ADDRESS),
        value: U256::ZERO,
        input: register_call(root, "m"),
        gas: 1_000_000,
        ..Tx::transfer(key, nonce)
    }
}

#[test]
fn nonce_gaps_queue_until_filled_and_blocks_keep_nonce_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), NodeConfig::dev());
    node.submit_raw(&Tx::transfer(key(1), 1).raw())
        .expect("future nonce is queued");
    let s = node.pool_status();
    assert_eq!((s.pending, s.queued), (0, 1));
    assert!(!node.has_pending());
    assert_eq!(node.pending_nonce(DEV_ACCOUNTS[1].address).expect("n"), 0);

    node.submit_raw(&Tx::transfer(key(1), 0).raw())
        .expect("gap filled");
    let s = node.pool_status();
    assert_eq!((s.pending, s.queued), (2, 0));
    assert_eq!(node.pending_nonce(DEV_ACCOUNTS[1].address).expect("n"), 2);

    // A richer tip from another sender goes first; each sender keeps order.
    node.submit_raw(
        &Tx {
            tip: 3 * GWEI,
            ..Tx::transfer(key(2), 0)
        }
        .raw(),
    )
    .expect("other sender");
    let (number, count) = dev::seal_block(&node).expect("seal");
    assert_eq!((number, count), (1, 3));
    let block = node.block_by_number(1).expect("read").expect("block 1");
    let order: Vec<(Address, u64)> = block
        .transactions
        .iter()
        .zip(&block.senders)
        .map(|(t, s)| (*s, alloy_consensus::Transaction::nonce(t)))
        .collect();
    assert_eq!(
        order,
        vec![
            (DEV_ACCOUNTS[2].address, 0),
            (DEV_ACCOUNTS[1].address, 0),
            (DEV_ACCOUNTS[1].address, 1)
        ]
    );
    assert!(node.pool_status() == Default::default(), "pool drained");
    assert_eq!(
        node.account(DEV_ACCOUNTS[1].address).expect("acct").nonce,
        2
    );
}

#[test]
fn replacement_needs_a_ten_percent_bump_on_fee_cap_and_tip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), NodeConfig::dev());
    let first = node
        .submit_raw(&Tx::transfer(key(1), 0).raw())
        .expect("first");
    let small_bump = Tx {
        max_fee: 10 * GWEI * 109 / 100,
        tip: GWEI * 109 / 100,
        value: U256::from(2u64),
        ..Tx::transfer(key(1), 0)
    };
    assert_eq!(
        node.submit_raw(&small_bump.raw()),
        Err(PoolError::ReplacementUnderpriced)
    );
    // Fee cap bumped but tip not: still refused.
    let tip_not_bumped = Tx {
        max_fee: 20 * GWEI,
        value: U256::from(3u64),
        ..Tx::transfer(key(1), 0)
    };
    assert_eq!(
        node.submit_raw(&tip_not_bumped.raw()),
        Err(PoolError::ReplacementUnderpriced)
    );
    let bumped = Tx {
        max_fee: 11 * GWEI,
        tip: GWEI * 11 / 10,
        value: U256::from(4u64),
        ..Tx::transfer(key(1), 0)
    };
    let second = node.submit_raw(&bumped.raw()).expect("10 % bump replaces");
    assert!(node.pending_transaction(first).is_none());
    assert!(node.pending_transaction(second).is_some());
    assert_eq!(node.submit_raw(&bumped.raw()), Err(PoolError::AlreadyKnown));
    dev::seal_block(&node).expect("seal");
    assert!(node.transaction(first).expect("read").is_none());
    let included = node.transaction(second).expect("read").expect("included");
    assert_eq!(
        alloy_consensus::Transaction::value(&included.tx),
        U256::from(4u64)
    );
}

#[test]
fn bad_transactions_are_refused_with_geth_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), NodeConfig::dev());
    let err = |raw: &[u8]| node.submit_raw(raw).expect_err("must be refused");

    assert!(matches!(err(b"\x02\xc0garbage"), PoolError::Decode(_)));
    assert_eq!(
        err(&Tx {
            chain_id: 1,
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::WrongChainId {
            expected: DEV_CHAIN_ID,
            got: 1
        }
    );
    let unprotected: TxEnvelope = sign(
        key(1),
        TxLegacy {
            chain_id: None,
            nonce: 0,
            gas_price: 10 * GWEI,
            gas_limit: 21_000,
            to: TxKind::Call(Address::ZERO),
            value: U256::ZERO,
            input: Bytes::new(),
        },
    )
    .into();
    let e = err(&unprotected.encoded_2718());
    assert_eq!(e, PoolError::NotReplayProtected);
    assert_eq!(
        e.to_string(),
        "only replay-protected (EIP-155) transactions allowed over RPC"
    );
    assert_eq!(
        err(&Tx {
            gas: 20_000,
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::IntrinsicGasTooLow {
            have: 20_000,
            want: 21_000
        }
    );
    assert_eq!(
        err(&Tx {
            gas: 400_000_000,
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::GasLimitExceeded
    );
    assert!(matches!(
        err(&Tx {
            input: vec![1u8; 200 * 1024].into(),
            gas: 10_000_000,
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::Oversized { .. }
    ));
    assert_eq!(
        err(&Tx {
            max_fee: 1,
            tip: 1,
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::FeeCapTooLow {
            max_fee: 1,
            base_fee: node.next_base_fee().expect("base fee")
        }
    );
    assert_eq!(
        err(&Tx {
            tip: 11 * GWEI,
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::TipAboveFeeCap
    );
    let poor = B256::repeat_byte(0x42);
    let e = err(&Tx::transfer(poor, 0).raw());
    assert!(matches!(e, PoolError::InsufficientFunds { .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with("insufficient funds for gas * price + value: balance 0"),
        "{e}"
    );

    // A signature that recovers to nobody.
    let good = Tx::transfer(key(1), 0).envelope();
    let TxEnvelope::Eip1559(signed) = good else {
        panic!("built an EIP-1559 transaction")
    };
    let broken = Signed::new_unhashed(
        signed.tx().clone(),
        Signature::new(U256::ZERO, U256::from(1u64), false),
    );
    let broken: TxEnvelope = broken.into();
    assert!(broken.recover_signer().is_err());
    assert_eq!(err(&broken.encoded_2718()), PoolError::InvalidSignature);

    // Nonce too low once a block used it.
    node.submit_raw(&Tx::transfer(key(1), 0).raw())
        .expect("valid");
    dev::seal_block(&node).expect("seal");
    assert_eq!(
        err(&Tx {
            value: U256::from(9u64),
            ..Tx::transfer(key(1), 0)
        }
        .raw()),
        PoolError::NonceTooLow { state: 1, tx: 0 }
    );
    assert_eq!(
        node.pool_status(),
        Default::default(),
        "nothing refused was pooled"
    );
}

#[test]
fn pool_limits_evict_the_cheapest_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = NodeConfig {
        pool: PoolConfig {
            max_per_sender: 3,
            max_total: 4,
            ..PoolConfig::dev()
        },
        ..NodeConfig::dev()
    };
    let node = open(dir.path(), config);
    for n in 0..3 {
        node.submit_raw(&Tx::transfer(key(1), n).raw())
            .expect("within limit");
    }
    assert_eq!(
        node.submit_raw(&Tx::transfer(key(1), 3).raw()),
        Err(PoolError::AccountLimit { limit: 3 })
    );
    let cheap = node
        .submit_raw(
            &Tx {
                tip: GWEI / 2,
                ..Tx::transfer(key(2), 0)
            }
            .raw(),
        )
        .expect("fills the pool");
    assert_eq!(
        node.submit_raw(
            &Tx {
                tip: GWEI / 4,
                ..Tx::transfer(key(3), 0)
            }
            .raw()
        ),
        Err(PoolError::Full),
        "pays less than everything pooled"
    );
    node.submit_raw(
        &Tx {
            tip: 2 * GWEI,
            ..Tx::transfer(key(3), 0)
        }
        .raw(),
    )
    .expect("displaces the cheapest");
    assert!(
        node.pending_transaction(cheap).is_none(),
        "cheapest was evicted"
    );
    assert_eq!(node.pool_status().pending, 4);
}

#[test]
fn a_second_node_verifies_and_finalizes_the_same_block_and_rejects_tampering() {
    let a_dir = tempfile::tempdir().expect("tempdir");
    let b_dir = tempfile::tempdir().expect("tempdir");
    let a = open(a_dir.path(), NodeConfig::dev());
    let b = open(b_dir.path(), NodeConfig::dev());
    assert_eq!(
        a.head().expect("a").hash,
        b.head().expect("b").hash,
        "same genesis"
    );

    for n in 0..5 {
        a.submit_raw(&Tx::transfer(key(1), n).raw())
            .expect("submit");
    }
    a.submit_raw(&registry_tx(key(2), 0, b"root-1").raw())
        .expect("submit");
    let block = a.propose(1_000).expect("propose");
    assert_eq!(block.transactions.len(), 6);

    // Tampered copies are refused, naming what differs.
    let mut bad_root = block.header.clone();
    bad_root.state_root = B256::repeat_byte(1);
    match b.verify(&bad_root, block.transactions.clone()) {
        Err(VerifyError::Mismatch { field, .. }) => assert_eq!(field, "state root"),
        other => panic!("expected a state root mismatch, got {other:?}"),
    }
    // Reversed: one sender's nonce 4 comes before its nonce 0.
    let mut swapped = block.transactions.clone();
    swapped.reverse();
    let swapped = b.verify(&block.header, swapped);
    assert!(
        matches!(swapped, Err(VerifyError::InvalidTransaction { .. })),
        "nonce 4 before nonce 0 is invalid: {swapped:?}"
    );
    let mut dropped = block.transactions.clone();
    dropped.pop();
    match b.verify(&block.header, dropped) {
        Err(VerifyError::Mismatch { field, .. }) => assert_eq!(field, "transactions root"),
        other => panic!("expected a transactions root mismatch, got {other:?}"),
    }
    let mut later = block.header.clone();
    later.number += 1;
    assert!(matches!(
        b.verify(&later, block.transactions.clone()),
        Err(VerifyError::NotOnHead { .. })
    ));
    assert_eq!(
        b.head().expect("b").number,
        0,
        "failed verifications wrote nothing"
    );

    let verified = b
        .verify(&block.header, block.transactions.clone())
        .expect("honest block verifies");
    let head_b = b.finalize(verified).expect("finalize on b");
    let head_a = a.finalize(block).expect("finalize on a");
    assert_eq!(head_a, head_b, "same hash and state root on both nodes");
    assert_eq!(
        a.state().recompute_state_root().expect("recompute"),
        head_b.state_root
    );
    let count = ModelRegistry::modelCountCall {}.abi_encode();
    let req = lattice_evm::CallRequest {
        to: Some(MODEL_REGISTRY_ADDRESS),
        input: count.into(),
        ..Default::default()
    };
    for node in [&a, &b] {
        match node.call_at(None, &req, &Default::default()).expect("call") {
            lattice_evm::CallOutcome::Success { output, .. } => {
                assert_eq!(U256::from_be_slice(&output), U256::from(1u64))
            }
            other => panic!("modelCount failed: {other:?}"),
        }
    }
}

#[test]
fn blocks_receipts_and_logs_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut hashes = Vec::new();
    let mut block_hashes = Vec::new();
    {
        let node = open(dir.path(), NodeConfig::dev());
        for i in 0..3u64 {
            let root = format!("root-{i}");
            hashes.push(
                node.submit_raw(&registry_tx(key(1 + i as usize), 0, root.as_bytes()).raw())
                    .expect("submit"),
            );
            hashes.push(
                node.submit_raw(&Tx::transfer(key(5), i).raw())
                    .expect("transfer"),
            );
            dev::seal_block(&node).expect("seal");
            block_hashes.push(node.head().expect("head").hash);
        }
        // An empty block in between.
        dev::seal_block(&node).expect("seal empty");
    }
    let node = open(dir.path(), NodeConfig::dev());
    let head = node.head().expect("head");
    assert_eq!(head.number, 4);
    assert_eq!(
        node.state().recompute_state_root().expect("root"),
        head.state_root
    );

    for (i, h) in block_hashes.iter().enumerate() {
        let b = node
            .block_by_hash(*h)
            .expect("read")
            .expect("block by hash");
        assert_eq!(b.header.number, i as u64 + 1);
        assert_eq!(b.hash, *h);
    }
    let genesis = node.block_by_number(0).expect("read").expect("genesis");
    assert_eq!(
        node.block_by_hash(genesis.hash)
            .expect("read")
            .map(|b| b.header.number),
        Some(0)
    );

    // Receipts: gas used per tx adds up to the block's, logs are decoded.
    let r = node.receipt(hashes[0]).expect("read").expect("receipt");
    assert!(r.receipt.status());
    assert_eq!(r.tx.sender, DEV_ACCOUNTS[1].address);
    assert_eq!(r.tx.block_number, 1);
    let block_receipts = node.block_receipts(1).expect("read").expect("receipts");
    let total: u64 = block_receipts.iter().map(|r| r.gas_used).sum();
    assert_eq!(total, node.header(1).expect("read").expect("h").gas_used);
    let transfer = node.receipt(hashes[1]).expect("read").expect("receipt");
    assert_eq!(transfer.gas_used, 21_000);
    assert_eq!(transfer.receipt.logs().len(), 0);
    let event = ModelRegistry::ModelRegistered::decode_log_data(&r.receipt.logs()[0].data)
        .expect("ModelRegistered");
    assert_eq!(event.modelId, model_id(b"root-0"));

    // The log index: by address, by topic, by both, over ranges.
    let all = LogFilter {
        from: 0,
        to: 4,
        addresses: vec![MODEL_REGISTRY_ADDRESS],
        ..Default::default()
    };
    let logs = node.logs(&all, 100).expect("logs").expect("under limit");
    let registered: Vec<_> = logs
        .iter()
        .filter(|l| l.log.topics()[0] == ModelRegistry::ModelRegistered::SIGNATURE_HASH)
        .collect();
    assert_eq!(registered.len(), 3);
    assert_eq!(
        registered
            .iter()
            .map(|l| l.block_number)
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let by_model = LogFilter {
        from: 0,
        to: 4,
        topics: [
            Some(vec![ModelRegistry::ModelRegistered::SIGNATURE_HASH]),
            Some(vec![model_id(b"root-1")]),
            None,
            None,
        ],
        ..Default::default()
    };
    let one = node
        .logs(&by_model, 100)
        .expect("logs")
        .expect("under limit");
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].block_number, 2);
    assert_eq!(one[0].tx_hash, hashes[2]);
    let range = LogFilter {
        from: 3,
        to: 4,
        ..all.clone()
    };
    assert!(
        node.logs(&range, 100)
            .expect("logs")
            .expect("under limit")
            .iter()
            .all(|l| l.block_number == 3)
    );
    let unfiltered = LogFilter {
        from: 0,
        to: 4,
        ..Default::default()
    };
    assert_eq!(
        node.logs(&unfiltered, 100)
            .expect("logs")
            .expect("ok")
            .len(),
        logs.len()
    );
    assert_eq!(node.logs(&all, 1).expect("logs"), Err(1), "limit reported");
    let nobody = LogFilter {
        addresses: vec![Address::repeat_byte(9)],
        ..all
    };
    assert!(
        node.logs(&nobody, 100)
            .expect("logs")
            .expect("ok")
            .is_empty()
    );
}

#[test]
fn submissions_racing_block_production_are_all_included_in_nonce_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = std::sync::Arc::new(open(dir.path(), NodeConfig::dev()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sealer = {
        let node = std::sync::Arc::clone(&node);
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                dev::seal_block(&node).expect("seal");
            }
        })
    };
    let senders: Vec<_> = (1..3)
        .map(|i| {
            let node = std::sync::Arc::clone(&node);
            std::thread::spawn(move || {
                let mut last = 0;
                for _ in 0..300 {
                    let n = node.pending_nonce(DEV_ACCOUNTS[i].address).expect("nonce");
                    assert!(n >= last, "pending nonce went back from {last} to {n}");
                    node.submit_raw(&Tx::transfer(key(i), n).raw())
                        .expect("submit at the pending nonce");
                    last = n + 1;
                }
            })
        })
        .collect();
    for s in senders {
        s.join().expect("sender thread");
    }
    // Everything submitted gets included.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while node.pool_status() != Default::default() {
        assert!(
            std::time::Instant::now() < deadline,
            "pool never drained: {:?}",
            node.pool_status()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sealer.join().expect("sealer");
    for a in &DEV_ACCOUNTS[1..3] {
        assert_eq!(node.account(a.address).expect("acct").nonce, 300);
    }
}

#[test]
fn an_unaffordable_transaction_leaves_the_pool_and_its_successors_wait_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), NodeConfig::dev());
    let poor_key = B256::repeat_byte(0x31);
    let poor = alloy_signer_local::PrivateKeySigner::from_bytes(&poor_key)
        .expect("key")
        .address();
    // Funded for 1.1 transfers' upfront cost (gas × fee cap + value).
    let upfront = U256::from(21_000u64 * 10 * GWEI as u64 + 1_000);
    let fund = Tx {
        to: TxKind::Call(poor),
        value: upfront * U256::from(11u64) / U256::from(10u64),
        ..Tx::transfer(key(1), 0)
    };
    node.submit_raw(&fund.raw()).expect("fund");
    dev::seal_block(&node).expect("seal");
    // Each is affordable alone, so the pool takes all three.
    let hashes: Vec<B256> = (0..3)
        .map(|n| {
            node.submit_raw(&Tx::transfer(poor_key, n).raw())
                .expect("admitted")
        })
        .collect();
    let (_, included) = dev::seal_block(&node).expect("seal");
    assert_eq!(included, 1, "only the first is affordable");
    assert!(node.receipt(hashes[0]).expect("read").is_some());
    assert!(node.transaction(hashes[1]).expect("read").is_none());
    assert!(
        node.pending_transaction(hashes[1]).is_none(),
        "the unaffordable one left the pool"
    );
    assert!(
        node.pending_transaction(hashes[2]).is_some(),
        "its successor waits, queued behind the gap"
    );
    let s = node.pool_status();
    assert_eq!((s.pending, s.queued), (0, 1));
}

#[test]
fn dev_genesis_makes_the_dev_executor_an_executor_and_nobody_else() {
    use alloy_sol_types::SolCall;
    use lattice_chain::DEV_EXECUTOR;
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir.path(), NodeConfig::dev());
    let has_role = |account| {
        let req = lattice_evm::CallRequest {
            to: Some(lattice_evm::MODEL_REGISTRY_ADDRESS),
            input: ModelRegistry::hasRoleCall {
                role: lattice_contracts::EXECUTOR_ROLE,
                account,
            }
            .abi_encode()
            .into(),
            ..Default::default()
        };
        match node.call_at(None, &req, &Default::default()).expect("call") {
            lattice_evm::CallOutcome::Success { output, .. } => {
                ModelRegistry::hasRoleCall::abi_decode_returns(&output).expect("bool")
            }
            other => panic!("hasRole failed: {other:?}"),
        }
    };
    for (i, a) in DEV_ACCOUNTS.iter().enumerate() {
        assert_eq!(has_role(a.address), i == DEV_EXECUTOR, "dev account {i}");
    }
}
