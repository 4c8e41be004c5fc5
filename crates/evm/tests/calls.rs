//! Read-only execution (`eth_call`, `eth_estimateGas`) and state at past
//! blocks, on real redb files with the real ModelRegistry.

mod common;

use alloy_primitives::{Address, Bytes, U256, address};
use alloy_sol_types::SolCall;
use common::*;
use lattice_contracts::{ModelRegistry, model_id};
use lattice_evm::{
    AccountOverride, CallError, CallOutcome, CallRequest, DEV_ACCOUNTS, LatticePrecompiles,
    MODEL_REGISTRY_ADDRESS, StateDb, StateOverrides, call, call_at, estimate_gas,
};

const CAP: u64 = 50_000_000;

fn register(root: &[u8]) -> Bytes {
    ModelRegistry::registerModelCall {
        rootCid: Bytes::copy_from_slice(root),
        manifestCid: Bytes::from_static(b"manifest"),
        name: "tiny".into(),
        format: "safetensors".into(),
        architecture: "bert".into(),
        price: U256::from(1000),
        isPrivate: false,
    }
    .abi_encode()
    .into()
}

fn model_count(db: &StateDb, block: Option<u64>) -> U256 {
    let req = CallRequest {
        to: Some(MODEL_REGISTRY_ADDRESS),
        input: ModelRegistry::modelCountCall {}.abi_encode().into(),
        ..Default::default()
    };
    match call_at(
        db,
        block,
        &req,
        &Default::default(),
        CAP,
        &LatticePrecompiles::new(),
    )
    .expect("call")
    {
        CallOutcome::Success { output, .. } => U256::from_be_slice(&output),
        other => panic!("modelCount failed: {other:?}"),
    }
}

#[test]
fn estimate_is_enough_and_close_and_reverts_carry_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &system_genesis());
    let owner = DEV_ACCOUNTS[1];
    let req = CallRequest {
        from: Some(owner.address),
        to: Some(MODEL_REGISTRY_ADDRESS),
        input: register(b"root-a"),
        ..Default::default()
    };
    let estimate = estimate_gas(
        &db,
        &req,
        &Default::default(),
        CAP,
        &LatticePrecompiles::new(),
    )
    .expect("estimate");
    // Executing with exactly the estimate succeeds and uses at most it.
    let block = build(
        &db,
        vec![eip1559(
            owner.private_key,
            0,
            MODEL_REGISTRY_ADDRESS,
            U256::ZERO,
            register(b"root-a"),
            estimate,
        )],
    );
    assert!(block.rejected.is_empty(), "{:?}", block.rejected);
    let receipt = block.receipts[0].as_receipt().expect("receipt");
    assert!(
        receipt.status.coerce_status(),
        "ran out of gas at the estimate"
    );
    let used = receipt.cumulative_gas_used;
    assert!(estimate >= used);
    assert!(
        estimate <= used + used / 20 + 5_000,
        "estimate {estimate} far above use {used}"
    );

    // Same CID again: the registry refuses; both call and estimate say so.
    let again = call(
        &db,
        &req,
        &Default::default(),
        CAP,
        &LatticePrecompiles::new(),
    )
    .expect("call runs");
    assert!(
        matches!(again, CallOutcome::Revert { .. }),
        "duplicate CID must revert: {again:?}"
    );
    match estimate_gas(
        &db,
        &req,
        &Default::default(),
        CAP,
        &LatticePrecompiles::new(),
    ) {
        Err(CallError::Reverted { data, .. }) => assert!(!data.is_empty(), "revert data kept"),
        other => panic!("expected a revert, got {other:?}"),
    }

    // A plain transfer estimates to exactly 21,000.
    let transfer = CallRequest {
        from: Some(owner.address),
        to: Some(Address::repeat_byte(0x55)),
        value: Some(U256::from(1u64)),
        ..Default::default()
    };
    assert_eq!(
        estimate_gas(
            &db,
            &transfer,
            &Default::default(),
            CAP,
            &LatticePrecompiles::new()
        )
        .expect("estimate"),
        21_000
    );
    // Sending more than the caller has is an error, not a success.
    let broke = CallRequest {
        from: Some(Address::repeat_byte(0x66)),
        value: Some(U256::from(1u64)),
        ..transfer.clone()
    };
    assert!(matches!(
        call(
            &db,
            &broke,
            &Default::default(),
            CAP,
            &LatticePrecompiles::new()
        ),
        Err(CallError::Invalid(_))
    ));
    // … unless a state override funds it.
    let mut overrides = StateOverrides::new();
    overrides.insert(
        Address::repeat_byte(0x66),
        AccountOverride {
            balance: Some(U256::from(10u64).pow(U256::from(18u64))),
            ..Default::default()
        },
    );
    assert!(matches!(
        call(&db, &broke, &overrides, CAP, &LatticePrecompiles::new()).expect("call"),
        CallOutcome::Success { .. }
    ));
}

#[test]
fn decoded_revert_reason_from_a_require() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &system_genesis());
    // Runtime that reverts with Error("nope"), installed by a code override.
    let mut runtime = vec![];
    let data = alloy_sol_types::Revert::from("nope");
    let encoded = alloy_sol_types::SolError::abi_encode(&data);
    // PUSH the revert data into memory byte by byte, then REVERT.
    for (i, b) in encoded.iter().enumerate() {
        runtime.extend_from_slice(&[0x60, *b, 0x61, (i >> 8) as u8, i as u8, 0x53]);
    }
    runtime.extend_from_slice(&[0x61, 0, encoded.len() as u8, 0x60, 0x00, 0xfd]);
    let target = address!("0x00000000000000000000000000000000000000ee");
    let mut overrides = StateOverrides::new();
    overrides.insert(
        target,
        AccountOverride {
            code: Some(runtime.into()),
            ..Default::default()
        },
    );
    let req = CallRequest {
        to: Some(target),
        ..Default::default()
    };
    let out = call(&db, &req, &overrides, CAP, &LatticePrecompiles::new()).expect("call");
    assert_eq!(out.revert_reason().as_deref(), Some("nope"));
    match estimate_gas(&db, &req, &overrides, CAP, &LatticePrecompiles::new()) {
        Err(e @ CallError::Reverted { .. }) => {
            assert_eq!(e.to_string(), "execution reverted: nope")
        }
        other => panic!("expected a revert, got {other:?}"),
    }
    // Without the override there is no code: an empty success.
    assert!(matches!(
        call(&db, &req, &Default::default(), CAP, &LatticePrecompiles::new()).expect("call"),
        CallOutcome::Success { ref output, .. } if output.is_empty()
    ));
}

#[test]
fn every_past_block_reads_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &system_genesis());
    let alice = DEV_ACCOUNTS[1];
    let counter = alice.address.create(0);
    let watched = [alice.address, counter, Address::repeat_byte(0x99)];

    // Per block: balances, nonces, the counter's slot 0, its code, modelCount.
    type Seen = (Vec<(U256, u64)>, U256, Bytes, U256);
    let seen = |db: &StateDb| -> Seen {
        let accounts = watched
            .iter()
            .map(|a| {
                let acc = db.account(*a).expect("account");
                acc.map_or((U256::ZERO, 0), |a| (a.balance, a.nonce))
            })
            .collect();
        (
            accounts,
            db.storage(counter, U256::ZERO).expect("slot"),
            db.code_at(counter).expect("code"),
            model_count(db, None),
        )
    };
    let mut history = vec![seen(&db)];
    build(&db, vec![create(alice.private_key, 0, deployer(&COUNTER))]);
    history.push(seen(&db));
    for i in 1..6u64 {
        let mut txs = vec![eip1559(
            alice.private_key,
            2 * i - 1,
            counter,
            U256::ZERO,
            Bytes::new(),
            100_000,
        )];
        if i % 2 == 0 {
            txs.push(eip1559(
                alice.private_key,
                2 * i,
                MODEL_REGISTRY_ADDRESS,
                U256::ZERO,
                register(format!("root-{i}").as_bytes()),
                1_000_000,
            ));
        } else {
            txs.push(eip1559(
                alice.private_key,
                2 * i,
                Address::repeat_byte(0x99),
                U256::from(i * 1_000),
                Bytes::new(),
                21_000,
            ));
        }
        let block = build(&db, txs);
        assert!(block.rejected.is_empty(), "{:?}", block.rejected);
        history.push(seen(&db));
    }
    let head = db.latest().expect("head").expect("some").number;
    assert_eq!(head as usize + 1, history.len());
    for (n, (accounts, slot, code, count)) in history.iter().enumerate() {
        let n = n as u64;
        for (a, (balance, nonce)) in watched.iter().zip(accounts) {
            let acc = db.account_at(*a, n).expect("account_at");
            assert_eq!(
                acc.map_or((U256::ZERO, 0), |a| (a.balance, a.nonce)),
                (*balance, *nonce),
                "{a} at block {n}"
            );
        }
        assert_eq!(
            db.storage_at(counter, U256::ZERO, n).expect("slot"),
            *slot,
            "slot at {n}"
        );
        assert_eq!(
            db.code_at_block(counter, n).expect("code"),
            *code,
            "code at {n}"
        );
        assert_eq!(model_count(&db, Some(n)), *count, "modelCount at {n}");
    }
    assert_eq!(model_count(&db, Some(head)), U256::from(2u64));
    assert_eq!(model_count(&db, Some(0)), U256::ZERO);
    assert!(
        db.account_at(alice.address, head + 1).is_err(),
        "a future block is an error"
    );
    // The registry's record for a model registered at block 3 is absent at 2.
    let get = |n: u64| {
        let req = CallRequest {
            to: Some(MODEL_REGISTRY_ADDRESS),
            input: ModelRegistry::getModelCall {
                modelId: model_id(b"root-2"),
            }
            .abi_encode()
            .into(),
            ..Default::default()
        };
        call_at(
            &db,
            Some(n),
            &req,
            &Default::default(),
            CAP,
            &LatticePrecompiles::new(),
        )
        .expect("call")
    };
    assert!(matches!(get(3), CallOutcome::Success { .. }));
    assert!(matches!(get(2), CallOutcome::Revert { .. }));
}
