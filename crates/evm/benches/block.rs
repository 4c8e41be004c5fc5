//! Execute + commit one block of 10,000 signed ETH transfers into a fresh
//! redb state (signature recovery included); reported as transfers/s.
//!
//! A second case takes the senders as already recovered (what a transaction
//! pool does on arrival), isolating execution + roots + commit.
//!
//! Signing, genesis (100 funded senders) and the temp database are set up
//! outside the timed region. A third case times a block of 1,000
//! `registerModel` calls to the real `ModelRegistry` deployed at genesis.

use std::time::{Duration, Instant};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy_sol_types::{SolCall, SolConstructor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lattice_contracts::ModelRegistry;
use lattice_evm::{
    BlockParams, ExecutedBlock, Genesis, GenesisAlloc, Header, LatticePrecompiles,
    MODEL_REGISTRY_ADDRESS, StateDb, execute_block, execute_recovered,
};

const SENDERS: u64 = 100;
const TRANSFERS: u64 = 10_000;
const CHAIN_ID: u64 = 1337;

fn key(i: u64) -> B256 {
    keccak256(i.to_be_bytes())
}

fn sign(secret: B256, tx: TxEip1559) -> TxEnvelope {
    let sig = alloy_consensus::crypto::secp256k1::sign_message(secret, tx.signature_hash())
        .expect("valid key");
    tx.into_signed(sig).into()
}

/// Funds the sender of every `per_sender`-th transaction (each sender's first).
fn fund_senders(genesis: &mut Genesis, txs: &[TxEnvelope], per_sender: usize) {
    for tx in txs.iter().step_by(per_sender) {
        let sender = alloy_consensus::transaction::SignerRecoverable::recover_signer(tx)
            .expect("recoverable");
        genesis.alloc.insert(
            sender,
            GenesisAlloc {
                balance: U256::from(10u64).pow(U256::from(21)),
                ..Default::default()
            },
        );
    }
}

/// Times `run` (execute) plus the commit of its block, each iteration on a
/// fresh state opened from `genesis`; set-up is outside the timed region.
fn time_blocks(
    iters: u64,
    genesis: &Genesis,
    gas_limit: u64,
    run: impl Fn(&StateDb, &Header, &BlockParams) -> ExecutedBlock,
    check: impl Fn(&ExecutedBlock),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = StateDb::open(dir.path().join("state.redb")).expect("open");
        db.init_genesis(genesis).expect("genesis");
        let parent = db.latest_header().expect("head");
        let params = BlockParams::new(Address::repeat_byte(0xc0), 12, gas_limit);
        let start = Instant::now();
        let block = run(&db, &parent, &params);
        db.commit(&block).expect("commit");
        total += start.elapsed();
        check(&block);
    }
    total
}

fn signed_transfers() -> (Genesis, Vec<TxEnvelope>) {
    let mut genesis = Genesis::dev(CHAIN_ID);
    genesis.gas_limit = 300_000_000;
    let mut txs = Vec::with_capacity(TRANSFERS as usize);
    let per_sender = TRANSFERS / SENDERS;
    for s in 0..SENDERS {
        let secret = key(s);
        for n in 0..per_sender {
            let tx = TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: n,
                gas_limit: 21_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(Address::from_word(keccak256(
                    (s * per_sender + n).to_le_bytes(),
                ))),
                value: U256::from(1),
                access_list: Default::default(),
                input: Bytes::new(),
            };
            txs.push(sign(secret, tx));
        }
    }
    fund_senders(&mut genesis, &txs, per_sender as usize);
    (genesis, txs)
}

fn execute_and_commit(c: &mut Criterion) {
    let (genesis, txs) = signed_transfers();
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(TRANSFERS));
    group.sample_size(10);
    group.bench_function("10k_transfers_execute_commit", |b| {
        b.iter_custom(|iters| {
            time_blocks(
                iters,
                &genesis,
                300_000_000,
                |db, parent, params| {
                    execute_block(db, parent, txs.clone(), params).expect("execute")
                },
                |block| {
                    assert_eq!(
                        block.transactions.len(),
                        TRANSFERS as usize,
                        "{:?}",
                        block.rejected.first()
                    )
                },
            )
        });
    });
    // The same block with senders recovered beforehand, as a transaction pool
    // does on arrival: execution, roots and commit only.
    let recovered: Vec<_> = txs
        .iter()
        .map(|tx| {
            let sender = alloy_consensus::transaction::SignerRecoverable::recover_signer(tx)
                .expect("recoverable");
            alloy_consensus::transaction::Recovered::new_unchecked(tx.clone(), sender)
        })
        .collect();
    let precompiles = LatticePrecompiles::new();
    group.bench_function("10k_transfers_execute_commit_senders_known", |b| {
        b.iter_custom(|iters| {
            time_blocks(
                iters,
                &genesis,
                300_000_000,
                |db, parent, params| {
                    execute_recovered(db, parent, recovered.clone(), params, &precompiles)
                        .expect("execute")
                },
                |block| assert_eq!(block.transactions.len(), TRANSFERS as usize),
            )
        });
    });
    group.finish();
}

/// 1,000 `registerModel` calls (10 senders × 100, distinct root CIDs) to the
/// real `ModelRegistry` deployed at genesis; recovery included.
fn register_models(c: &mut Criterion) {
    const CALLS: u64 = 1_000;
    const CALLERS: u64 = 10;
    let admin = Address::repeat_byte(0xad);
    let mut init = ModelRegistry::BYTECODE.to_vec();
    init.extend(
        ModelRegistry::constructorCall {
            admin,
            pinningPool_: admin,
            treasury_: admin,
        }
        .abi_encode(),
    );
    let mut genesis = Genesis::dev(CHAIN_ID).with_deployment(MODEL_REGISTRY_ADDRESS, init.into());
    genesis.gas_limit = 2_000_000_000;
    let mut txs: Vec<TxEnvelope> = Vec::with_capacity(CALLS as usize);
    for s in 0..CALLERS {
        let secret = key(1_000 + s);
        for n in 0..CALLS / CALLERS {
            let i = s * (CALLS / CALLERS) + n;
            let call = ModelRegistry::registerModelCall {
                rootCid: Bytes::from(format!("bafy-model-root-{i:08}").into_bytes()),
                manifestCid: Bytes::from(format!("bafy-manifest-{i:08}").into_bytes()),
                name: format!("model-{i}"),
                format: "safetensors".into(),
                architecture: "llama".into(),
                price: U256::from(1_000_000 + i),
                isPrivate: i.is_multiple_of(2),
            };
            let tx = TxEip1559 {
                chain_id: CHAIN_ID,
                nonce: n,
                gas_limit: 1_000_000,
                max_fee_per_gas: 2_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(MODEL_REGISTRY_ADDRESS),
                value: U256::ZERO,
                access_list: Default::default(),
                input: call.abi_encode().into(),
            };
            txs.push(sign(secret, tx));
        }
    }
    fund_senders(&mut genesis, &txs, (CALLS / CALLERS) as usize);
    let mut group = c.benchmark_group("block");
    group.throughput(Throughput::Elements(CALLS));
    group.sample_size(10);
    group.bench_function("1k_register_model_execute_commit", |b| {
        b.iter_custom(|iters| {
            time_blocks(
                iters,
                &genesis,
                2_000_000_000,
                |db, parent, params| {
                    execute_block(db, parent, txs.clone(), params).expect("execute")
                },
                |block| {
                    assert_eq!(
                        block.transactions.len(),
                        CALLS as usize,
                        "{:?}",
                        block.rejected.first()
                    );
                    assert!(
                        block.receipts.iter().all(|r| r.status()),
                        "a registerModel reverted"
                    );
                },
            )
        });
    });
    group.finish();
}

criterion_group!(benches, execute_and_commit, register_models);
criterion_main!(benches);
