//! Property tests on the real bytecode: fee splits sum to the fee; Merkle claims accept
//! exactly the posted leaves.

mod common;

use std::collections::BTreeSet;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use common::*;
use lattice_contracts::IPFSIncentives::{self, IPFSIncentivesErrors as IE};
use lattice_contracts::ModelRegistry::{
    self, ModelRegistryErrors as RE, ModelRegistryEvents as Ev,
};
use proptest::prelude::*;

const Z: U256 = U256::ZERO;

/// Three basis-point shares whose sum is at most 10000.
fn bps() -> impl Strategy<Value = (u16, u16, u16)> {
    (0u16..=10_000)
        .prop_flat_map(|e| (Just(e), 0..=10_000 - e))
        .prop_flat_map(|(e, p)| (Just(e), Just(p), 0..=10_000 - e - p))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// For any fee and any valid split, fulfilment credits owner + executor + pool + protocol
    /// exactly the fee, each non-owner share is `fee * bps / 10000`, and payouts drain the escrow.
    #[test]
    fn fee_split_sums_to_fee(
        fee in prop_oneof![0u128..1000, any::<u64>().prop_map(u128::from), 0u128..=u128::from(u64::MAX) * 1_000_000],
        (e, p, t) in bps(),
    ) {
        let mut chain = Chain::new();
        chain.fund(user(), U256::from(fee) + U256::from(ETHER));
        let registry = deploy_registry(&mut chain);
        chain.ok(admin(), registry, Z, ModelRegistry::setFeeSplitCall { executorBps_: e, poolBps_: p, protocolBps_: t });
        let id = register(&mut chain, registry, b"prop", fee, false);
        let (rid, _) = chain.ok(user(), registry, U256::from(fee), ModelRegistry::requestInferenceCall { modelId: id, inputHash: B256::ZERO, maxFee: U256::from(fee) });
        let (_, logs) = chain.ok(executor(), registry, Z, ModelRegistry::fulfillInferenceCall { requestId: rid, outputHash: B256::ZERO, outputCid: Bytes::new(), receipt: Bytes::new() });
        let s = match registry_events(&logs).pop() {
            Some(Ev::FeeDistributed(s)) => s,
            other => panic!("{other:?}"),
        };
        let f = U256::from(fee);
        let share = |bps: u16| f * U256::from(bps) / U256::from(10_000);
        prop_assert_eq!(s.ownerAmount + s.executorAmount + s.poolAmount + s.protocolAmount, f);
        prop_assert_eq!(s.executorAmount, share(e));
        prop_assert_eq!(s.poolAmount, share(p));
        prop_assert_eq!(s.protocolAmount, share(t));
        let view = chain.view(registry, ModelRegistry::computeSplitCall { fee: f });
        prop_assert_eq!((view.toOwner, view.toExecutor, view.toPool, view.toProtocol), (s.ownerAmount, s.executorAmount, s.poolAmount, s.protocolAmount));
        prop_assert_eq!(chain.view(registry, ModelRegistry::getModelCall { modelId: id }).revenue, s.ownerAmount);
        prop_assert_eq!(chain.view(registry, ModelRegistry::balanceOfCall(executor())), s.executorAmount);
        prop_assert_eq!(chain.view(registry, ModelRegistry::balanceOfCall(pool())), s.poolAmount);
        prop_assert_eq!(chain.view(registry, ModelRegistry::balanceOfCall(treasury())), s.protocolAmount);
        prop_assert_eq!(chain.balance(registry), f);
        // Pull everything out: the escrow is exactly drained.
        if s.ownerAmount > Z {
            chain.ok(owner(), registry, Z, ModelRegistry::withdrawCall { modelId: id });
        }
        for (who, amount) in [(executor(), s.executorAmount), (pool(), s.poolAmount), (treasury(), s.protocolAmount)] {
            if amount > Z {
                chain.ok(user(), registry, Z, ModelRegistry::withdrawBalanceCall { account: who });
            }
        }
        prop_assert_eq!(chain.balance(registry), Z);
    }

    /// Splits whose shares sum past 10000 bps are refused.
    #[test]
    fn oversized_splits_are_refused(e in 0u16..=10_000, p in 0u16..=10_000, t in 0u16..=10_000) {
        prop_assume!(u32::from(e) + u32::from(p) + u32::from(t) > 10_000);
        let mut chain = Chain::new();
        chain.fund(admin(), U256::from(ETHER));
        let registry = deploy_registry(&mut chain);
        let d = chain.revert(admin(), registry, Z, ModelRegistry::setFeeSplitCall { executorBps_: e, poolBps_: p, protocolBps_: t });
        prop_assert!(matches!(registry_error(&d), RE::InvalidSplit(_)));
    }

    /// Every posted leaf claims with its StandardMerkleTree proof; a leaf never posted, or a
    /// posted pinner with a changed amount, is refused; a second claim of a leaf is refused.
    #[test]
    fn merkle_claims_accept_exactly_the_posted_leaves(
        epoch in any::<u64>(),
        entries in prop::collection::btree_map(any::<[u8; 20]>(), 1u64..1_000_000, 1..12),
        outsider in any::<[u8; 20]>(),
        bump in 1u64..1000,
        pick in any::<prop::sample::Index>(),
    ) {
        let epoch = U256::from(epoch);
        let rewards: Vec<(Address, U256)> = entries.iter().map(|(a, x)| (Address::from(*a), U256::from(*x))).collect();
        let total: U256 = rewards.iter().map(|r| r.1).sum();
        let t = MerkleTree::new(rewards.iter().map(|(p, a)| leaf(epoch, *p, *a)).collect());

        let mut chain = Chain::new();
        chain.fund(stranger(), total + U256::from(ETHER));
        let c = deploy_incentives(&mut chain);
        let funded = matches!(chain.transfer(stranger(), c, total), Outcome::Ok { .. });
        prop_assert!(funded);
        chain.ok(publisher(), c, Z, IPFSIncentives::postRootCall { epoch, root: t.root(), budget: total });

        let posted: BTreeSet<B256> = t.leaves.iter().copied().collect();
        // A pinner not in the tree, with any posted amount and any posted leaf's proof.
        let outsider = Address::from(outsider);
        if !entries.contains_key(&outsider.0.0) {
            let (_, amount) = rewards[pick.index(rewards.len())];
            prop_assert!(!posted.contains(&leaf(epoch, outsider, amount)));
            for l in &t.leaves {
                let d = chain.revert(stranger(), c, Z, IPFSIncentives::claimCall { epoch, pinner: outsider, amount, proof: t.proof(*l) });
                prop_assert!(matches!(incentives_error(&d), IE::InvalidProof(_)));
            }
        }
        for (pinner, amount) in &rewards {
            let l = leaf(epoch, *pinner, *amount);
            prop_assert_eq!(chain.view(c, IPFSIncentives::leafHashCall { epoch, pinner: *pinner, amount: *amount }), l);
            // Changed amount: refused with the real proof.
            let changed = *amount + U256::from(bump);
            let d = chain.revert(stranger(), c, Z, IPFSIncentives::claimCall { epoch, pinner: *pinner, amount: changed, proof: t.proof(l) });
            prop_assert!(matches!(incentives_error(&d), IE::InvalidProof(_)));
            // Wrong epoch: unknown (only one epoch posted).
            let d = chain.revert(stranger(), c, Z, IPFSIncentives::claimCall { epoch: epoch + U256::from(1), pinner: *pinner, amount: *amount, proof: t.proof(l) });
            prop_assert!(matches!(incentives_error(&d), IE::UnknownEpoch(_)));
            // The posted leaf: accepted once.
            let before = chain.balance(*pinner);
            chain.ok(stranger(), c, Z, IPFSIncentives::claimCall { epoch, pinner: *pinner, amount: *amount, proof: t.proof(l) });
            prop_assert_eq!(chain.balance(*pinner) - before, *amount);
            let d = chain.revert(stranger(), c, Z, IPFSIncentives::claimCall { epoch, pinner: *pinner, amount: *amount, proof: t.proof(l) });
            prop_assert!(matches!(incentives_error(&d), IE::AlreadyClaimed(_)), "double claim");
        }
        prop_assert_eq!(chain.balance(c), Z);
        prop_assert_eq!(chain.view(c, IPFSIncentives::totalReservedCall {}), Z);
    }
}

/// The Rust tree reproduces a StandardMerkleTree root computed by hand for two leaves.
#[test]
fn two_leaf_root_is_the_sorted_pair_hash() {
    let a = leaf(U256::from(1), addr(1), U256::from(10));
    let b = leaf(U256::from(1), addr(2), U256::from(20));
    let t = MerkleTree::new(vec![a, b]);
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    assert_eq!(t.root(), keccak256([lo.as_slice(), hi.as_slice()].concat()));
    assert_eq!(t.proof(a), vec![b]);
    assert_eq!(t.proof(b), vec![a]);
}
