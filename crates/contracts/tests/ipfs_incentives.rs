//! IPFSIncentives executed in revm: funding, roots, claims, every revert path, pause.

mod common;

use alloy_primitives::{Address, B256, U256};
use common::*;
use lattice_contracts::IPFSIncentives::{
    self, IPFSIncentivesErrors as E, IPFSIncentivesEvents as Ev,
};

const Z: U256 = U256::ZERO;

fn u(n: u64) -> U256 {
    U256::from(n)
}

/// A funded contract and a three-leaf tree for epoch 1.
fn setup(funding: u64) -> (Chain, Address) {
    let mut chain = Chain::new();
    for a in [admin(), publisher(), stranger()] {
        chain.fund(a, U256::from(100 * ETHER));
    }
    let c = deploy_incentives(&mut chain);
    if funding > 0 {
        assert!(matches!(
            chain.transfer(stranger(), c, u(funding)),
            Outcome::Ok { .. }
        ));
    }
    (chain, c)
}

fn rewards(epoch: u64) -> Vec<(Address, U256)> {
    vec![
        (addr(100), u(300)),
        (addr(101), u(200)),
        (addr(102), u(500)),
    ]
    .into_iter()
    .map(|(a, x)| (a, x + u(epoch)))
    .collect()
}

fn tree(epoch: u64, rewards: &[(Address, U256)]) -> MerkleTree {
    MerkleTree::new(
        rewards
            .iter()
            .map(|(p, a)| leaf(u(epoch), *p, *a))
            .collect(),
    )
}

fn claim(epoch: u64, pinner: Address, amount: U256, t: &MerkleTree) -> IPFSIncentives::claimCall {
    IPFSIncentives::claimCall {
        epoch: u(epoch),
        pinner,
        amount,
        proof: t.proof(leaf(u(epoch), pinner, amount)),
    }
}

fn unauthorized(d: &[u8]) -> bool {
    matches!(incentives_error(d), E::AccessControlUnauthorizedAccount(_))
}

#[test]
fn constructor_roles_and_funding() {
    let mut chain = Chain::new();
    chain.fund(stranger(), u(10_000));
    let c = deploy_incentives(&mut chain);
    let role = chain.view(c, IPFSIncentives::PUBLISHER_ROLECall {});
    assert_eq!(role, alloy_primitives::keccak256("PUBLISHER_ROLE"));
    assert!(chain.view(
        c,
        IPFSIncentives::hasRoleCall {
            role,
            account: publisher()
        }
    ));
    assert!(chain.view(
        c,
        IPFSIncentives::hasRoleCall {
            role: B256::ZERO,
            account: admin()
        }
    ));
    assert_eq!(chain.code(c), *IPFSIncentives::DEPLOYED_BYTECODE);

    // A zero publisher grants nothing.
    let args = IPFSIncentives::constructorCall {
        admin: admin(),
        publisher: Address::ZERO,
    };
    let (c2, logs) = chain.deploy(
        admin(),
        &IPFSIncentives::BYTECODE,
        alloy_sol_types::SolConstructor::abi_encode(&args),
    );
    assert_eq!(incentives_events(&logs).len(), 1);
    assert!(!chain.view(
        c2,
        IPFSIncentives::hasRoleCall {
            role,
            account: Address::ZERO
        }
    ));

    match chain.transfer(stranger(), c, u(1234)) {
        Outcome::Ok { logs, .. } => {
            assert!(
                matches!(&incentives_events(&logs)[..], [Ev::Funded(e)] if e.from == stranger() && e.amount == u(1234))
            )
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(chain.balance(c), u(1234));
    assert_eq!(chain.view(c, IPFSIncentives::unallocatedCall {}), u(1234));
    assert_eq!(chain.view(c, IPFSIncentives::totalReservedCall {}), Z);
}

#[test]
fn post_root_rules() {
    let (mut chain, c) = setup(2000);
    let r = rewards(1);
    let t = tree(1, &r);
    let post = |epoch: u64, root: B256, budget: u64| IPFSIncentives::postRootCall {
        epoch: u(epoch),
        root,
        budget: u(budget),
    };

    assert!(unauthorized(&chain.revert(
        stranger(),
        c,
        Z,
        post(1, t.root(), 1000)
    )));
    assert!(unauthorized(&chain.revert(
        admin(),
        c,
        Z,
        post(1, t.root(), 1000)
    )));
    let d = chain.revert(publisher(), c, Z, post(1, B256::ZERO, 1000));
    assert!(matches!(incentives_error(&d), E::ZeroRoot(_)));
    let d = chain.revert(publisher(), c, Z, post(1, t.root(), 2001));
    assert!(
        matches!(incentives_error(&d), E::BudgetExceedsBalance(e) if e.budget == u(2001) && e.available == u(2000))
    );

    let (_, logs) = chain.ok(publisher(), c, Z, post(1, t.root(), 1003));
    assert!(
        matches!(&incentives_events(&logs)[..], [Ev::RootPosted(e)] if e.epoch == u(1) && e.root == t.root() && e.budget == u(1003))
    );
    let e = chain.view(c, IPFSIncentives::getEpochCall { epoch: u(1) });
    assert_eq!((e.root, e.budget, e.claimed), (t.root(), u(1003), Z));
    assert_eq!(chain.view(c, IPFSIncentives::totalReservedCall {}), u(1003));
    assert_eq!(chain.view(c, IPFSIncentives::unallocatedCall {}), u(997));

    // Epochs cannot be re-posted, even with a different root.
    let d = chain.revert(publisher(), c, Z, post(1, B256::repeat_byte(1), 1));
    assert!(matches!(incentives_error(&d), E::EpochAlreadyPosted(e) if e.epoch == u(1)));
    // The next epoch's budget is capped by what is left unreserved.
    let d = chain.revert(publisher(), c, Z, post(2, B256::repeat_byte(2), 998));
    assert!(matches!(incentives_error(&d), E::BudgetExceedsBalance(e) if e.available == u(997)));
    chain.ok(publisher(), c, Z, post(2, B256::repeat_byte(2), 997));
    assert_eq!(chain.view(c, IPFSIncentives::unallocatedCall {}), Z);
    // Epoch 0 is an ordinary epoch.
    chain.transfer(stranger(), c, u(5));
    chain.ok(publisher(), c, Z, post(0, B256::repeat_byte(3), 5));
}

#[test]
fn claims_pay_once_with_valid_proofs() {
    let (mut chain, c) = setup(5000);
    let r = rewards(7);
    let t = tree(7, &r);
    let total: U256 = r.iter().map(|x| x.1).sum();
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(7),
            root: t.root(),
            budget: total,
        },
    );

    // Unknown epoch.
    let mut bad = claim(7, r[0].0, r[0].1, &t);
    bad.epoch = u(8);
    let d = chain.revert(stranger(), c, Z, bad);
    assert!(matches!(incentives_error(&d), E::UnknownEpoch(e) if e.epoch == u(8)));

    for (i, (pinner, amount)) in r.iter().enumerate() {
        assert_eq!(
            chain.view(
                c,
                IPFSIncentives::leafHashCall {
                    epoch: u(7),
                    pinner: *pinner,
                    amount: *amount
                }
            ),
            leaf(u(7), *pinner, *amount)
        );
        assert!(!chain.view(
            c,
            IPFSIncentives::isClaimedCall {
                epoch: u(7),
                pinner: *pinner,
                amount: *amount
            }
        ));
        // Changed amount with the real proof: bad proof.
        let mut wrong = claim(7, *pinner, *amount, &t);
        wrong.amount += u(1);
        let d = chain.revert(stranger(), c, Z, wrong);
        assert!(matches!(incentives_error(&d), E::InvalidProof(_)));
        // Someone else's leaf proof for this pinner: bad proof.
        let mut wrong = claim(7, *pinner, *amount, &t);
        wrong.proof = t.proof(leaf(u(7), r[(i + 1) % 3].0, r[(i + 1) % 3].1));
        let d = chain.revert(stranger(), c, Z, wrong);
        assert!(matches!(incentives_error(&d), E::InvalidProof(_)));

        // Anyone may submit; the pinner is paid.
        let (_, logs) = chain.ok(stranger(), c, Z, claim(7, *pinner, *amount, &t));
        assert!(
            matches!(&incentives_events(&logs)[..], [Ev::Claimed(e)] if e.epoch == u(7) && e.pinner == *pinner && e.amount == *amount)
        );
        assert_eq!(chain.balance(*pinner), *amount);
        assert!(chain.view(
            c,
            IPFSIncentives::isClaimedCall {
                epoch: u(7),
                pinner: *pinner,
                amount: *amount
            }
        ));

        let d = chain.revert(*pinner, c, Z, claim(7, *pinner, *amount, &t));
        assert!(matches!(incentives_error(&d), E::AlreadyClaimed(e) if e.pinner == *pinner));
    }
    assert_eq!(
        chain
            .view(c, IPFSIncentives::getEpochCall { epoch: u(7) })
            .claimed,
        total
    );
    assert_eq!(chain.view(c, IPFSIncentives::totalReservedCall {}), Z);
    assert_eq!(chain.balance(c), u(5000) - total);

    // A leaf that was never posted.
    let d = chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::claimCall {
            epoch: u(7),
            pinner: stranger(),
            amount: u(1),
            proof: vec![t.root()],
        },
    );
    assert!(matches!(incentives_error(&d), E::InvalidProof(_)));
}

#[test]
fn claims_never_exceed_the_epoch_budget() {
    let (mut chain, c) = setup(5000);
    let r = rewards(3);
    let t = tree(3, &r);
    // The publisher under-budgets the tree: the last claim that would overdraw fails.
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(3),
            root: t.root(),
            budget: u(600),
        },
    );
    chain.ok(stranger(), c, Z, claim(3, r[0].0, r[0].1, &t));
    let d = chain.revert(stranger(), c, Z, claim(3, r[2].0, r[2].1, &t));
    assert!(
        matches!(incentives_error(&d), E::EpochBudgetExceeded(e) if e.budget == u(600) && e.claimed == u(303) && e.amount == u(503))
    );
    chain.ok(stranger(), c, Z, claim(3, r[1].0, r[1].1, &t));
}

#[test]
fn single_leaf_tree_has_empty_proof() {
    let (mut chain, c) = setup(100);
    let root = leaf(u(1), addr(100), u(100));
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(1),
            root,
            budget: u(100),
        },
    );
    chain.ok(
        stranger(),
        c,
        Z,
        IPFSIncentives::claimCall {
            epoch: u(1),
            pinner: addr(100),
            amount: u(100),
            proof: vec![],
        },
    );
    assert_eq!(chain.balance(addr(100)), u(100));
}

#[test]
fn pause_stops_posting_and_claiming() {
    let (mut chain, c) = setup(5000);
    let r = rewards(1);
    let t = tree(1, &r);
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(1),
            root: t.root(),
            budget: u(1003),
        },
    );

    assert!(unauthorized(&chain.revert(
        publisher(),
        c,
        Z,
        IPFSIncentives::pauseCall {}
    )));
    let (_, logs) = chain.ok(admin(), c, Z, IPFSIncentives::pauseCall {});
    assert!(matches!(&incentives_events(&logs)[..], [Ev::Paused(_)]));
    assert!(chain.view(c, IPFSIncentives::pausedCall {}));
    let paused = |d: &[u8]| matches!(incentives_error(d), E::EnforcedPause(_));
    assert!(paused(&chain.revert(
        stranger(),
        c,
        Z,
        claim(1, r[0].0, r[0].1, &t)
    )));
    assert!(paused(&chain.revert(
        publisher(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(2),
            root: B256::repeat_byte(1),
            budget: Z
        }
    )));
    // Funding still works while paused.
    assert!(matches!(
        chain.transfer(stranger(), c, u(1)),
        Outcome::Ok { .. }
    ));

    assert!(unauthorized(&chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::unpauseCall {}
    )));
    let (_, logs) = chain.ok(admin(), c, Z, IPFSIncentives::unpauseCall {});
    assert!(matches!(&incentives_events(&logs)[..], [Ev::Unpaused(_)]));
    chain.ok(stranger(), c, Z, claim(1, r[0].0, r[0].1, &t));
}

#[test]
fn publisher_role_is_admin_managed() {
    let (mut chain, c) = setup(100);
    let role = chain.view(c, IPFSIncentives::PUBLISHER_ROLECall {});
    assert!(unauthorized(&chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::grantRoleCall {
            role,
            account: stranger()
        }
    )));
    chain.ok(
        admin(),
        c,
        Z,
        IPFSIncentives::grantRoleCall {
            role,
            account: stranger(),
        },
    );
    chain.ok(
        stranger(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(1),
            root: B256::repeat_byte(1),
            budget: u(1),
        },
    );
    chain.ok(
        admin(),
        c,
        Z,
        IPFSIncentives::revokeRoleCall {
            role,
            account: stranger(),
        },
    );
    assert!(unauthorized(&chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(2),
            root: B256::repeat_byte(1),
            budget: u(1)
        }
    )));
}

#[test]
fn access_control_views_and_renounce() {
    let (mut chain, c) = setup(0);
    let role = chain.view(c, IPFSIncentives::PUBLISHER_ROLECall {});
    let admin_role = chain.view(c, IPFSIncentives::DEFAULT_ADMIN_ROLECall {});
    assert_eq!(admin_role, B256::ZERO);
    assert_eq!(
        chain.view(c, IPFSIncentives::getRoleAdminCall { role }),
        admin_role
    );
    // IAccessControl's interface id.
    assert!(chain.view(
        c,
        IPFSIncentives::supportsInterfaceCall {
            interfaceId: 0x7965_db0b_u32.to_be_bytes().into()
        }
    ));
    // Renouncing needs the caller's own address as confirmation.
    let d = chain.revert(
        publisher(),
        c,
        Z,
        IPFSIncentives::renounceRoleCall {
            role,
            callerConfirmation: stranger(),
        },
    );
    assert!(matches!(
        incentives_error(&d),
        E::AccessControlBadConfirmation(_)
    ));
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::renounceRoleCall {
            role,
            callerConfirmation: publisher(),
        },
    );
    assert!(!chain.view(
        c,
        IPFSIncentives::hasRoleCall {
            role,
            account: publisher()
        }
    ));
}

#[test]
fn claim_to_a_pinner_refusing_ether_reverts() {
    let (mut chain, c) = setup(100);
    // A pinner that cannot receive ether: a contract without `receive` (a ModelRegistry).
    let refuser = deploy_registry(&mut chain);
    let root = leaf(u(1), refuser, u(40));
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::postRootCall {
            epoch: u(1),
            root,
            budget: u(40),
        },
    );
    let d = chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::claimCall {
            epoch: u(1),
            pinner: refuser,
            amount: u(40),
            proof: vec![],
        },
    );
    assert!(
        matches!(incentives_error(&d), E::TransferFailed(e) if e.to == refuser && e.amount == u(40))
    );
    assert!(!chain.view(
        c,
        IPFSIncentives::isClaimedCall {
            epoch: u(1),
            pinner: refuser,
            amount: u(40)
        }
    ));
}

#[test]
fn role_events_and_unpause_when_running() {
    let (mut chain, c) = setup(0);
    let role = chain.view(c, IPFSIncentives::PUBLISHER_ROLECall {});
    let (_, logs) = chain.ok(
        admin(),
        c,
        Z,
        IPFSIncentives::grantRoleCall {
            role,
            account: addr(60),
        },
    );
    assert!(
        matches!(&incentives_events(&logs)[..], [Ev::RoleGranted(e)] if e.role == role && e.account == addr(60) && e.sender == admin())
    );
    let (_, logs) = chain.ok(
        admin(),
        c,
        Z,
        IPFSIncentives::revokeRoleCall {
            role,
            account: addr(60),
        },
    );
    assert!(matches!(&incentives_events(&logs)[..], [Ev::RoleRevoked(e)] if e.account == addr(60)));
    let d = chain.revert(admin(), c, Z, IPFSIncentives::unpauseCall {});
    assert!(matches!(incentives_error(&d), E::ExpectedPause(_)));
}

#[test]
fn pin_announcements_count_each_account_once() {
    use alloy_primitives::{Bytes, keccak256};
    let (mut chain, c) = setup(0);
    let cid = Bytes::from_static(b"\x01\x70\x12\x20model-root");
    let h = keccak256(&cid);
    let count = |chain: &mut Chain| chain.view(c, IPFSIncentives::pinCountCall(h));
    assert_eq!(count(&mut chain), Z);
    let announce = || IPFSIncentives::announcePinCall { cid: cid.clone() };

    let (_, logs) = chain.ok(publisher(), c, Z, announce());
    assert!(
        matches!(&incentives_events(&logs)[..], [Ev::PinAnnounced(e)]
            if e.cidHash == h && e.pinner == publisher() && e.cid == cid)
    );
    chain.ok(stranger(), c, Z, announce());
    assert_eq!(count(&mut chain), u(2));
    assert!(chain.view(
        c,
        IPFSIncentives::isPinningCall {
            _0: h,
            _1: stranger()
        }
    ));
    assert!(!chain.view(c, IPFSIncentives::isPinningCall { _0: h, _1: admin() }));

    // Announcing twice does not count twice.
    let d = chain.revert(stranger(), c, Z, announce());
    assert!(matches!(incentives_error(&d), E::AlreadyPinning(e) if e.pinner == stranger()));
    let d = chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::announcePinCall { cid: Bytes::new() },
    );
    assert!(matches!(incentives_error(&d), E::EmptyCid(_)));

    let (_, logs) = chain.ok(
        stranger(),
        c,
        Z,
        IPFSIncentives::withdrawPinCall { cidHash: h },
    );
    assert!(
        matches!(&incentives_events(&logs)[..], [Ev::PinWithdrawn(e)] if e.cidHash == h && e.pinner == stranger())
    );
    assert_eq!(count(&mut chain), u(1));
    let d = chain.revert(
        stranger(),
        c,
        Z,
        IPFSIncentives::withdrawPinCall { cidHash: h },
    );
    assert!(matches!(incentives_error(&d), E::NotPinning(_)));
    // Pausing stops new announcements; withdrawing still works.
    chain.ok(admin(), c, Z, IPFSIncentives::pauseCall {});
    let d = chain.revert(admin(), c, Z, announce());
    assert!(matches!(incentives_error(&d), E::EnforcedPause(_)));
    chain.ok(
        publisher(),
        c,
        Z,
        IPFSIncentives::withdrawPinCall { cidHash: h },
    );
    assert_eq!(count(&mut chain), Z);
}
