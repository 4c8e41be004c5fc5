//! Executing on uncommitted parents ([`PendingState`]): a chain built block
//! after block on pending state has the same hashes and roots as the same
//! blocks executed after each parent is committed.

mod common;

use alloy_primitives::{Address, Bytes, U256};
use common::*;
use lattice_evm::{
    BlockParams, DEV_ACCOUNTS, ExecutedBlock, Genesis, LatticePrecompiles, PendingState, StateDb,
    TxEnvelope, execute_block_on, execute_block_with, execute_known_on,
};

fn txs_for(step: u64) -> Vec<TxEnvelope> {
    let dev = DEV_ACCOUNTS[0];
    let counter = dev.address.create(0);
    match step {
        // Creates the counter, pays someone.
        0 => vec![
            create(dev.private_key, 0, deployer(&COUNTER)),
            eip1559(
                DEV_ACCOUNTS[1].private_key,
                0,
                Address::repeat_byte(0x42),
                U256::from(7u64),
                Bytes::new(),
                21_000,
            ),
        ],
        // Bumps the counter (storage written in a pending block, read in
        // the next), pays again from a pending nonce.
        n => vec![
            eip1559(
                dev.private_key,
                n,
                counter,
                U256::ZERO,
                Bytes::new(),
                100_000,
            ),
            eip1559(
                DEV_ACCOUNTS[1].private_key,
                n,
                Address::repeat_byte(0x42),
                U256::from(7u64),
                Bytes::new(),
                21_000,
            ),
        ],
    }
}

fn params(parent: &alloy_consensus::Header) -> BlockParams {
    BlockParams::new(COINBASE, parent.timestamp + 1, 30_000_000)
}

#[test]
fn a_chain_built_on_pending_state_matches_the_committed_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let p = LatticePrecompiles::new();

    // Four blocks, each on the previous one's pending state.
    let mut pending = PendingState::new();
    let mut parent = db.latest_header().expect("head");
    let mut pending_chain: Vec<ExecutedBlock> = Vec::new();
    for step in 0..4 {
        let block = execute_block_on(&db, &pending, &parent, txs_for(step), &params(&parent), &p)
            .expect("execute on pending");
        assert!(
            block.rejected.is_empty(),
            "step {step}: {:?}",
            block.rejected
        );
        pending.push(&block).expect("child of the tip");
        parent = block.header.clone();
        pending_chain.push(block);
    }

    // The same blocks on a second database, committing each first.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let db2 = open_with(dir2.path(), &Genesis::dev(CHAIN_ID));
    for (step, expected) in pending_chain.iter().enumerate() {
        let parent = db2.latest_header().expect("head");
        let block = execute_block_with(&db2, &parent, txs_for(step as u64), &params(&parent), &p)
            .expect("execute on head");
        assert_eq!(block.hash, expected.hash, "step {step}");
        assert_eq!(block.header.state_root, expected.header.state_root);
        assert_eq!(block.diff, expected.diff, "step {step}");
        db2.commit(&block).expect("commit");
    }
    let counter = DEV_ACCOUNTS[0].address.create(0);
    assert_eq!(
        db2.storage(counter, U256::ZERO).expect("slot"),
        U256::from(3u64)
    );

    // Committing the pending chain in order on the first database gives the
    // same head; a stale overlay (head moved) is refused.
    db.commit(&pending_chain[0]).expect("commit first");
    let head = db.latest_header().expect("head");
    assert!(
        execute_block_on(&db, &pending, &parent, vec![], &params(&parent), &p).is_err(),
        "an overlay whose base is no longer the head must be refused"
    );
    for block in &pending_chain[1..] {
        db.commit(block).expect("commit");
    }
    assert_eq!(head.number, 1);
    assert_eq!(
        db.state_root().expect("root"),
        db2.state_root().expect("root")
    );
    assert_eq!(
        db.recompute_state_root().expect("recompute"),
        pending_chain[3].header.state_root
    );
}

#[test]
fn a_pending_chain_refuses_a_block_that_is_not_the_tips_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db: StateDb = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let p = LatticePrecompiles::new();
    let parent = db.latest_header().expect("head");
    let a = execute_block_with(&db, &parent, txs_for(0), &params(&parent), &p).expect("a");
    let mut pending = PendingState::new();
    pending.push(&a).expect("a");
    // A sibling of `a` is not a child of the tip.
    let b = execute_block_with(&db, &parent, vec![], &params(&parent), &p).expect("b");
    assert!(pending.push(&b).is_err());
    // Executing on the head's header while `a` is pending is refused.
    assert!(execute_block_on(&db, &pending, &parent, vec![], &params(&parent), &p).is_err());
}

#[test]
fn senders_known_in_advance_give_the_same_block_and_unknown_ones_are_recovered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open_with(dir.path(), &Genesis::dev(CHAIN_ID));
    let p = LatticePrecompiles::new();
    let parent = db.latest_header().expect("head");
    let pending = PendingState::new();
    let reference = execute_block_on(&db, &pending, &parent, txs_for(0), &params(&parent), &p)
        .expect("recovering every sender");
    assert!(reference.rejected.is_empty(), "{:?}", reference.rejected);

    // The first sender known (as a pool knows it), the second recovered here.
    let known = vec![Some(DEV_ACCOUNTS[0].address), None];
    let partly = execute_known_on(
        &db,
        &pending,
        &parent,
        txs_for(0),
        known,
        &params(&parent),
        &p,
    )
    .expect("partly known");
    assert_eq!(partly.hash, reference.hash);
    assert_eq!(partly.diff, reference.diff);

    // A known sender is trusted as given: naming another account executes the
    // transaction as that account's (which has no code and nonce 0 too, but no funds),
    // so the block differs. The caller must only pass senders it recovered itself.
    let wrong = vec![Some(Address::repeat_byte(0x99)), None];
    let forged = execute_known_on(
        &db,
        &pending,
        &parent,
        txs_for(0),
        wrong,
        &params(&parent),
        &p,
    )
    .expect("executes");
    assert_ne!(forged.hash, reference.hash);
    assert_eq!(
        forged.rejected.len(),
        1,
        "the unfunded sender's create is rejected"
    );
}
