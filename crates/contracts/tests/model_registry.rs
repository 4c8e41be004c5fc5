//! ModelRegistry executed in revm: every function, event and revert path.

mod common;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use common::*;
use lattice_contracts::ModelRegistry::{self, ModelRegistryErrors as E, ModelRegistryEvents as Ev};
use lattice_contracts::{ReentrantWithdrawer, model_id};

const Z: U256 = U256::ZERO;
// `ModelRegistry.Status` values.
const PENDING: u8 = 1;
const FULFILLED: u8 = 2;
const REFUNDED: u8 = 3;

fn setup() -> (Chain, Address) {
    let mut chain = Chain::new();
    for a in [admin(), owner(), user(), executor(), stranger()] {
        chain.fund(a, U256::from(100 * ETHER));
    }
    let registry = deploy_registry(&mut chain);
    (chain, registry)
}

fn request(chain: &mut Chain, registry: Address, from: Address, id: B256, value: u128) -> U256 {
    chain
        .ok(
            from,
            registry,
            U256::from(value),
            ModelRegistry::requestInferenceCall {
                modelId: id,
                inputHash: keccak256(b"input"),
                maxFee: U256::from(value),
            },
        )
        .0
}

fn fulfil_call(request_id: U256) -> ModelRegistry::fulfillInferenceCall {
    ModelRegistry::fulfillInferenceCall {
        requestId: request_id,
        outputHash: keccak256(b"output"),
        outputCid: Bytes::from_static(b"bafyoutput"),
        receipt: Bytes::from_static(b"signed-receipt"),
    }
}

fn unauthorized(data: &[u8]) -> bool {
    matches!(
        ModelRegistry::ModelRegistryErrors::abi_decode(data),
        Ok(E::AccessControlUnauthorizedAccount(_))
    )
}

use alloy_sol_types::SolInterface;

#[test]
fn constructor_sets_roles_defaults_and_emits() {
    let mut chain = Chain::new();
    let args = ModelRegistry::constructorCall {
        admin: admin(),
        pinningPool_: pool(),
        treasury_: treasury(),
    };
    let (registry, logs) = chain.deploy(
        admin(),
        &ModelRegistry::BYTECODE,
        alloy_sol_types::SolConstructor::abi_encode(&args),
    );
    let evs = registry_events(&logs);
    assert!(matches!(&evs[0], Ev::RoleGranted(e) if e.account == admin() && e.role == B256::ZERO));
    assert!(evs.iter().any(|e| matches!(e, Ev::FeeRecipientsChanged(e) if e.pinningPool == pool() && e.treasury == treasury())));
    assert!(evs.iter().any(|e| matches!(e, Ev::FeeSplitChanged(e) if (e.executorBps, e.poolBps, e.protocolBps) == (1000, 500, 250))));
    assert!(
        evs.iter()
            .any(|e| matches!(e, Ev::RequestTimeoutChanged(e) if e.requestTimeout == 3600))
    );

    assert!(chain.view(
        registry,
        ModelRegistry::hasRoleCall {
            role: B256::ZERO,
            account: admin()
        }
    ));
    assert_eq!(
        chain.view(registry, ModelRegistry::EXECUTOR_ROLECall {}),
        keccak256("EXECUTOR_ROLE")
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::BPSCall {}),
        U256::from(10_000)
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::executorBpsCall {}),
        1000
    );
    assert_eq!(chain.view(registry, ModelRegistry::poolBpsCall {}), 500);
    assert_eq!(chain.view(registry, ModelRegistry::protocolBpsCall {}), 250);
    assert_eq!(
        chain.view(registry, ModelRegistry::requestTimeoutCall {}),
        3600
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::pinningPoolCall {}),
        pool()
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::treasuryCall {}),
        treasury()
    );
    assert!(!chain.view(registry, ModelRegistry::pausedCall {}));
    assert_eq!(chain.view(registry, ModelRegistry::modelCountCall {}), Z);
    assert_eq!(chain.view(registry, ModelRegistry::requestCountCall {}), Z);

    // The runtime code the constructor leaves is the committed deployed bytecode.
    let code = chain_code(&mut chain, registry);
    assert_eq!(code, *ModelRegistry::DEPLOYED_BYTECODE);

    // Zero addresses are refused.
    let bad = ModelRegistry::constructorCall {
        admin: admin(),
        pinningPool_: Address::ZERO,
        treasury_: treasury(),
    };
    let mut data = ModelRegistry::BYTECODE.to_vec();
    data.extend(alloy_sol_types::SolConstructor::abi_encode(&bad));
    match chain.tx(admin(), alloy_primitives::TxKind::Create, Z, data.into()) {
        Outcome::Revert(d) => assert!(matches!(registry_error(&d), E::ZeroAddress(_))),
        o => panic!("{o:?}"),
    }
}

fn chain_code(chain: &mut Chain, at: Address) -> Bytes {
    chain.code(at)
}

#[test]
fn register_model_and_views() {
    let (mut chain, registry) = setup();
    let cid = b"\x01\x70\x12\x20model-one";
    let (id, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::registerModelCall {
            rootCid: Bytes::from_static(cid),
            manifestCid: Bytes::from_static(b"manifest-1"),
            name: "tiny-llama".into(),
            format: "gguf".into(),
            architecture: "llama".into(),
            price: U256::from(1000),
            isPrivate: false,
        },
    );
    assert_eq!(id, keccak256(cid));
    assert_eq!(id, model_id(cid));
    let evs = registry_events(&logs);
    assert_eq!(evs.len(), 2);
    match &evs[0] {
        Ev::ModelRegistered(e) => {
            assert_eq!((e.modelId, e.owner), (id, owner()));
            assert_eq!(
                (e.name.as_str(), e.format.as_str(), e.architecture.as_str()),
                ("tiny-llama", "gguf", "llama")
            );
            assert_eq!((e.price, e.isPrivate), (U256::from(1000), false));
        }
        e => panic!("{e:?}"),
    }
    match &evs[1] {
        Ev::VersionAdded(e) => {
            assert_eq!((e.modelId, e.version), (id, Z));
            assert_eq!(
                (&e.rootCid[..], &e.manifestCid[..]),
                (&cid[..], &b"manifest-1"[..])
            );
        }
        e => panic!("{e:?}"),
    }

    let m = chain.view(registry, ModelRegistry::getModelCall { modelId: id });
    assert_eq!(
        (m.id, m.owner, m.name.as_str()),
        (id, owner(), "tiny-llama")
    );
    assert_eq!(&m.rootCid[..], cid);
    assert_eq!(&m.latestRootCid[..], cid);
    assert_eq!(&m.latestManifestCid[..], b"manifest-1");
    assert_eq!((m.latest, m.price, m.revenue), (Z, U256::from(1000), Z));
    assert_eq!(m.createdAt, chain.now());
    assert!(m.active && !m.isPrivate);

    // More models from two owners, then page through them.
    let mut ids = vec![id];
    for i in 0..4u8 {
        let from = if i % 2 == 0 { owner() } else { user() };
        let (id, _) = chain.ok(
            from,
            registry,
            Z,
            ModelRegistry::registerModelCall {
                rootCid: Bytes::from(vec![b'c', i]),
                manifestCid: Bytes::new(),
                name: format!("m{i}"),
                format: "safetensors".into(),
                architecture: "bert".into(),
                price: Z,
                isPrivate: false,
            },
        );
        ids.push(id);
    }
    assert_eq!(
        chain.view(registry, ModelRegistry::modelCountCall {}),
        U256::from(5)
    );
    let page = chain.view(
        registry,
        ModelRegistry::listModelsCall {
            offset: U256::from(1),
            limit: U256::from(2),
        },
    );
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), ids[1..3]);
    let page = chain.view(
        registry,
        ModelRegistry::listModelsCall {
            offset: U256::from(3),
            limit: U256::from(10),
        },
    );
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), ids[3..5]);
    assert!(
        chain
            .view(
                registry,
                ModelRegistry::listModelsCall {
                    offset: U256::from(5),
                    limit: U256::from(10)
                }
            )
            .is_empty()
    );
    assert_eq!(
        chain.view(
            registry,
            ModelRegistry::ownerModelCountCall { owner: owner() }
        ),
        U256::from(3)
    );
    assert_eq!(
        chain.view(
            registry,
            ModelRegistry::ownerModelCountCall { owner: user() }
        ),
        U256::from(2)
    );
    let mine = chain.view(
        registry,
        ModelRegistry::modelsByOwnerCall {
            owner: owner(),
            offset: Z,
            limit: U256::from(10),
        },
    );
    assert_eq!(mine, vec![ids[0], ids[1], ids[3]]);
    let mine = chain.view(
        registry,
        ModelRegistry::modelsByOwnerCall {
            owner: owner(),
            offset: U256::from(1),
            limit: U256::from(1),
        },
    );
    assert_eq!(mine, vec![ids[1]]);
    assert!(
        chain
            .view(
                registry,
                ModelRegistry::modelsByOwnerCall {
                    owner: stranger(),
                    offset: Z,
                    limit: U256::from(1)
                }
            )
            .is_empty()
    );

    // The same content cannot be registered twice, by anyone; empty CIDs are refused.
    let again = ModelRegistry::registerModelCall {
        rootCid: Bytes::from_static(cid),
        manifestCid: Bytes::new(),
        name: "copy".into(),
        format: String::new(),
        architecture: String::new(),
        price: Z,
        isPrivate: false,
    };
    let d = chain.revert(stranger(), registry, Z, again.clone());
    assert!(matches!(registry_error(&d), E::CidAlreadyUsed(e) if e.cidHash == id));
    let d = chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::registerModelCall {
            rootCid: Bytes::new(),
            ..again
        },
    );
    assert!(matches!(registry_error(&d), E::EmptyCid(_)));

    // Unknown models.
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::getModelCall {
            modelId: B256::repeat_byte(9),
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownModel(_)));
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::getVersionCall {
            modelId: B256::repeat_byte(9),
            version: Z,
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownModel(_)));
    assert!(!chain.view(
        registry,
        ModelRegistry::hasAccessCall {
            modelId: B256::repeat_byte(9),
            account: user()
        }
    ));
}

#[test]
fn versions_are_append_only() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"v0", 0, false);
    chain.warp(10);
    let (v, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::addVersionCall {
            modelId: id,
            rootCid: Bytes::from_static(b"v1"),
            manifestCid: Bytes::from_static(b"m1"),
        },
    );
    assert_eq!(v, U256::from(1));
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::VersionAdded(e)] if e.modelId == id && e.version == U256::from(1) && &e.rootCid[..] == b"v1")
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::versionCountCall { modelId: id }),
        U256::from(2)
    );
    let v0 = chain.view(
        registry,
        ModelRegistry::getVersionCall {
            modelId: id,
            version: Z,
        },
    );
    let v1 = chain.view(
        registry,
        ModelRegistry::getVersionCall {
            modelId: id,
            version: U256::from(1),
        },
    );
    assert_eq!(
        (&v0.rootCid[..], &v0.manifestCid[..]),
        (&b"v0"[..], &b"manifest"[..])
    );
    assert_eq!(
        (&v1.rootCid[..], &v1.manifestCid[..], v1.addedAt),
        (&b"v1"[..], &b"m1"[..], chain.now())
    );
    let m = chain.view(registry, ModelRegistry::getModelCall { modelId: id });
    assert_eq!(
        (
            m.latest,
            &m.rootCid[..],
            &m.latestRootCid[..],
            &m.latestManifestCid[..]
        ),
        (U256::from(1), &b"v0"[..], &b"v1"[..], &b"m1"[..])
    );
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::getVersionCall {
            modelId: id,
            version: U256::from(2),
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownVersion(e) if e.version == U256::from(2)));

    let add = |cid: &'static [u8]| ModelRegistry::addVersionCall {
        modelId: id,
        rootCid: Bytes::from_static(cid),
        manifestCid: Bytes::new(),
    };
    let d = chain.revert(stranger(), registry, Z, add(b"v2"));
    assert!(matches!(registry_error(&d), E::NotModelOwner(e) if e.caller == stranger()));
    let d = chain.revert(owner(), registry, Z, add(b"v1"));
    assert!(matches!(registry_error(&d), E::CidAlreadyUsed(_)));
    let d = chain.revert(owner(), registry, Z, add(b"v0"));
    assert!(matches!(registry_error(&d), E::CidAlreadyUsed(_)));
    let d = chain.revert(owner(), registry, Z, add(b""));
    assert!(matches!(registry_error(&d), E::EmptyCid(_)));
    let d = chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::addVersionCall {
            modelId: B256::ZERO,
            rootCid: Bytes::from_static(b"x"),
            manifestCid: Bytes::new(),
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownModel(_)));
    // A version CID cannot be registered as a new model either.
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::registerModelCall {
            rootCid: Bytes::from_static(b"v1"),
            manifestCid: Bytes::new(),
            name: String::new(),
            format: String::new(),
            architecture: String::new(),
            price: Z,
            isPrivate: false,
        },
    );
    assert!(matches!(registry_error(&d), E::CidAlreadyUsed(_)));
}

#[test]
fn owner_settings_emit_and_are_owner_only() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"m", 5, false);

    let (_, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::setPriceCall {
            modelId: id,
            price: U256::from(7),
        },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::PriceChanged(e)] if e.oldPrice == U256::from(5) && e.newPrice == U256::from(7))
    );
    let (_, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::setActiveCall {
            modelId: id,
            active: false,
        },
    );
    assert!(matches!(&registry_events(&logs)[..], [Ev::ActiveChanged(e)] if !e.active));
    let (_, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::setPrivateCall {
            modelId: id,
            isPrivate: true,
        },
    );
    assert!(matches!(&registry_events(&logs)[..], [Ev::VisibilityChanged(e)] if e.isPrivate));
    let m = chain.view(registry, ModelRegistry::getModelCall { modelId: id });
    assert_eq!(
        (m.price, m.active, m.isPrivate),
        (U256::from(7), false, true)
    );

    let not_owner = |d: &[u8]| matches!(registry_error(d), E::NotModelOwner(e) if e.modelId == id && e.caller == stranger());
    assert!(not_owner(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::setPriceCall {
            modelId: id,
            price: Z
        }
    )));
    assert!(not_owner(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::setActiveCall {
            modelId: id,
            active: true
        }
    )));
    assert!(not_owner(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::setPrivateCall {
            modelId: id,
            isPrivate: false
        }
    )));
    assert!(not_owner(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::grantAccessCall {
            modelId: id,
            account: stranger(),
            expiresAt: 0
        }
    )));
    assert!(not_owner(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::revokeAccessCall {
            modelId: id,
            account: user()
        }
    )));
    assert!(not_owner(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::withdrawCall { modelId: id }
    )));
    let d = chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::setPriceCall {
            modelId: B256::ZERO,
            price: Z,
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownModel(_)));

    // Inactive models take no requests.
    let d = chain.revert(
        owner(),
        registry,
        U256::from(7),
        ModelRegistry::requestInferenceCall {
            modelId: id,
            inputHash: B256::ZERO,
            maxFee: U256::from(7),
        },
    );
    assert!(matches!(registry_error(&d), E::ModelInactive(_)));
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::requestInferenceCall {
            modelId: B256::ZERO,
            inputHash: B256::ZERO,
            maxFee: Z,
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownModel(_)));
}

#[test]
fn private_models_need_unexpired_grants() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"private", 100, true);
    let req = |maxfee: u128| ModelRegistry::requestInferenceCall {
        modelId: id,
        inputHash: keccak256(b"in"),
        maxFee: U256::from(maxfee),
    };

    // No grant: refused; the owner always may.
    let d = chain.revert(user(), registry, U256::from(100), req(100));
    assert!(matches!(registry_error(&d), E::NoAccess(e) if e.account == user()));
    assert!(!chain.view(
        registry,
        ModelRegistry::hasAccessCall {
            modelId: id,
            account: user()
        }
    ));
    assert!(chain.view(
        registry,
        ModelRegistry::hasAccessCall {
            modelId: id,
            account: owner()
        }
    ));
    request(&mut chain, registry, owner(), id, 100);

    // Expiry must be in the future (or 0).
    let d = chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::grantAccessCall {
            modelId: id,
            account: user(),
            expiresAt: chain.now(),
        },
    );
    assert!(matches!(registry_error(&d), E::InvalidExpiry(_)));

    // Grant for 100 s: works, then expires.
    let expires = chain.now() + 100;
    let (_, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::grantAccessCall {
            modelId: id,
            account: user(),
            expiresAt: expires,
        },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::AccessGranted(e)] if e.account == user() && e.expiresAt == expires)
    );
    let g = chain.view(
        registry,
        ModelRegistry::getGrantCall {
            modelId: id,
            account: user(),
        },
    );
    assert!(g.granted && g.expiresAt == expires);
    assert!(chain.view(
        registry,
        ModelRegistry::hasAccessCall {
            modelId: id,
            account: user()
        }
    ));
    request(&mut chain, registry, user(), id, 100);
    chain.warp(100);
    assert!(!chain.view(
        registry,
        ModelRegistry::hasAccessCall {
            modelId: id,
            account: user()
        }
    ));
    let d = chain.revert(user(), registry, U256::from(100), req(100));
    assert!(
        matches!(registry_error(&d), E::AccessExpired(e) if e.account == user() && e.expiresAt == expires)
    );

    // Open-ended grant, then revocation.
    chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::grantAccessCall {
            modelId: id,
            account: user(),
            expiresAt: 0,
        },
    );
    chain.warp(1_000_000);
    request(&mut chain, registry, user(), id, 100);
    let (_, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::revokeAccessCall {
            modelId: id,
            account: user(),
        },
    );
    assert!(matches!(&registry_events(&logs)[..], [Ev::AccessRevoked(e)] if e.account == user()));
    let d = chain.revert(user(), registry, U256::from(100), req(100));
    assert!(matches!(registry_error(&d), E::NoAccess(_)));

    // Making it public opens it to all.
    chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::setPrivateCall {
            modelId: id,
            isPrivate: false,
        },
    );
    request(&mut chain, registry, stranger(), id, 100);
}

#[test]
fn request_fulfil_split_and_withdraw() {
    let (mut chain, registry) = setup();
    let price = 1_000_000u128;
    let id = register(&mut chain, registry, b"paid", price, false);

    // Price above maxFee, and underpayment, are refused.
    let d = chain.revert(
        user(),
        registry,
        U256::from(price),
        ModelRegistry::requestInferenceCall {
            modelId: id,
            inputHash: B256::ZERO,
            maxFee: U256::from(price - 1),
        },
    );
    assert!(matches!(registry_error(&d), E::FeeAboveMax(e) if e.price == U256::from(price)));
    let d = chain.revert(
        user(),
        registry,
        U256::from(price - 1),
        ModelRegistry::requestInferenceCall {
            modelId: id,
            inputHash: B256::ZERO,
            maxFee: U256::from(price),
        },
    );
    assert!(
        matches!(registry_error(&d), E::Underpayment(e) if e.price == U256::from(price) && e.paid == U256::from(price - 1))
    );

    // Overpayment: only the price is kept.
    let before = chain.balance(user());
    let (rid, logs) = chain.ok(
        user(),
        registry,
        U256::from(price + 555),
        ModelRegistry::requestInferenceCall {
            modelId: id,
            inputHash: keccak256(b"input"),
            maxFee: U256::from(price * 2),
        },
    );
    assert_eq!(rid, U256::from(1));
    assert_eq!(before - chain.balance(user()), U256::from(price));
    assert_eq!(chain.balance(registry), U256::from(price));
    let deadline = chain.now() + 3600;
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::InferenceRequested(e)]
        if e.requestId == rid && e.modelId == id && e.requester == user() && e.inputHash == keccak256(b"input") && e.fee == U256::from(price) && e.deadline == deadline)
    );
    let r = chain.view(registry, ModelRegistry::getRequestCall { requestId: rid });
    assert_eq!(
        (r.modelId, r.requester, r.deadline, r.fee, r.executor),
        (id, user(), deadline, U256::from(price), Address::ZERO)
    );
    assert_eq!(r.status, PENDING);
    assert_eq!(
        chain.view(registry, ModelRegistry::requestCountCall {}),
        U256::from(1)
    );

    // Only executors fulfil.
    let d = chain.revert(stranger(), registry, Z, fulfil_call(rid));
    assert!(unauthorized(&d));
    let d = chain.revert(executor(), registry, Z, fulfil_call(U256::from(99)));
    assert!(matches!(registry_error(&d), E::UnknownRequest(_)));

    let (_, logs) = chain.ok(executor(), registry, Z, fulfil_call(rid));
    let evs = registry_events(&logs);
    match &evs[..] {
        [Ev::InferenceFulfilled(f), Ev::FeeDistributed(s)] => {
            assert_eq!(
                (f.requestId, f.modelId, f.executor, f.outputHash),
                (rid, id, executor(), keccak256(b"output"))
            );
            assert_eq!(
                (&f.outputCid[..], &f.receipt[..]),
                (&b"bafyoutput"[..], &b"signed-receipt"[..])
            );
            assert_eq!(s.executorAmount, U256::from(price / 10));
            assert_eq!(s.poolAmount, U256::from(price / 20));
            assert_eq!(s.protocolAmount, U256::from(price / 40));
            assert_eq!(
                s.ownerAmount,
                U256::from(price - price / 10 - price / 20 - price / 40)
            );
        }
        e => panic!("{e:?}"),
    }
    let split = chain.view(
        registry,
        ModelRegistry::computeSplitCall {
            fee: U256::from(price),
        },
    );
    assert_eq!(split.toOwner, U256::from(825_000));
    let r = chain.view(registry, ModelRegistry::getRequestCall { requestId: rid });
    assert_eq!(
        (r.status, r.executor, r.outputHash),
        (FULFILLED, executor(), keccak256(b"output"))
    );
    assert_eq!(
        chain
            .view(registry, ModelRegistry::getModelCall { modelId: id })
            .revenue,
        U256::from(825_000)
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::balanceOfCall(executor())),
        U256::from(100_000)
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::balanceOfCall(pool())),
        U256::from(50_000)
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::balanceOfCall(treasury())),
        U256::from(25_000)
    );

    // Fulfilled requests can be neither fulfilled again nor refunded.
    let d = chain.revert(executor(), registry, Z, fulfil_call(rid));
    assert!(matches!(registry_error(&d), E::RequestNotPending(e) if e.status == FULFILLED));
    chain.warp(4000);
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid },
    );
    assert!(matches!(registry_error(&d), E::RequestNotPending(_)));

    // Pull payments.
    let before = chain.balance(owner());
    let (_, logs) = chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::withdrawCall { modelId: id },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::Withdrawn(e)] if e.modelId == id && e.to == owner() && e.amount == U256::from(825_000))
    );
    assert_eq!(chain.balance(owner()) - before, U256::from(825_000));
    let d = chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::withdrawCall { modelId: id },
    );
    assert!(matches!(registry_error(&d), E::NothingToWithdraw(_)));
    for (who, amount) in [
        (executor(), 100_000u64),
        (pool(), 50_000),
        (treasury(), 25_000),
    ] {
        // Anyone may trigger the payout; it goes to the account.
        let (_, logs) = chain.ok(
            stranger(),
            registry,
            Z,
            ModelRegistry::withdrawBalanceCall { account: who },
        );
        assert!(
            matches!(&registry_events(&logs)[..], [Ev::BalanceWithdrawn(e)] if e.account == who && e.amount == U256::from(amount))
        );
        assert_eq!(
            chain.balance(who),
            U256::from(amount)
                + if who == executor() {
                    U256::from(100 * ETHER)
                } else {
                    Z
                }
        );
        let d = chain.revert(
            stranger(),
            registry,
            Z,
            ModelRegistry::withdrawBalanceCall { account: who },
        );
        assert!(matches!(registry_error(&d), E::NothingToWithdraw(_)));
    }
    assert_eq!(chain.balance(registry), Z);
}

#[test]
fn free_models_are_open_and_pay_nothing() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"free", 0, false);
    let rid = request(&mut chain, registry, stranger(), id, 0);
    let (_, logs) = chain.ok(executor(), registry, Z, fulfil_call(rid));
    assert!(
        matches!(&registry_events(&logs)[1], Ev::FeeDistributed(s) if s.ownerAmount == Z && s.executorAmount == Z)
    );
    let d = chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::withdrawCall { modelId: id },
    );
    assert!(matches!(registry_error(&d), E::NothingToWithdraw(_)));
}

#[test]
fn refunds_after_timeout_only() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"slow", 5000, false);
    let rid = request(&mut chain, registry, user(), id, 5000);
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid },
    );
    assert!(matches!(registry_error(&d), E::RequestNotExpired(_)));
    chain.warp(3600);
    let d = chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid },
    );
    assert!(matches!(registry_error(&d), E::NotRequester(e) if e.caller == stranger()));
    // Too late to fulfil.
    let d = chain.revert(executor(), registry, Z, fulfil_call(rid));
    assert!(matches!(registry_error(&d), E::RequestExpired(_)));
    let before = chain.balance(user());
    let (_, logs) = chain.ok(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::Refunded(e)] if e.requestId == rid && e.requester == user() && e.amount == U256::from(5000))
    );
    assert_eq!(chain.balance(user()) - before, U256::from(5000));
    assert_eq!(
        chain
            .view(registry, ModelRegistry::getRequestCall { requestId: rid })
            .status,
        REFUNDED
    );
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid },
    );
    assert!(matches!(registry_error(&d), E::RequestNotPending(e) if e.status == REFUNDED));
    let d = chain.revert(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall {
            requestId: U256::from(42),
        },
    );
    assert!(matches!(registry_error(&d), E::UnknownRequest(_)));
    let d = chain.revert(executor(), registry, Z, fulfil_call(rid));
    assert!(matches!(registry_error(&d), E::RequestNotPending(_)));

    // A changed timeout applies to new requests.
    chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::setRequestTimeoutCall { timeout: 10 },
    );
    let rid = request(&mut chain, registry, user(), id, 5000);
    chain.warp(10);
    chain.ok(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid },
    );
}

#[test]
fn reentrant_withdraw_is_blocked() {
    let (mut chain, registry) = setup();
    let attacker = deploy_attacker(&mut chain, registry);
    chain.ok(
        stranger(),
        attacker,
        Z,
        ReentrantWithdrawer::registerCall {
            rootCid: Bytes::from_static(b"evil"),
            price: U256::from(ETHER),
        },
    );
    let id = chain.view(attacker, ReentrantWithdrawer::modelIdCall {});
    assert_eq!(id, model_id(b"evil"));
    // Two paid requests: revenue worth two withdrawals if re-entry worked.
    for _ in 0..2 {
        let rid = request(&mut chain, registry, user(), id, ETHER);
        chain.ok(executor(), registry, Z, fulfil_call(rid));
    }
    let revenue = chain
        .view(registry, ModelRegistry::getModelCall { modelId: id })
        .revenue;
    assert_eq!(revenue, U256::from(ETHER / 1000 * 825 * 2));
    let registry_before = chain.balance(registry);

    let (_, logs) = chain.ok(stranger(), attacker, Z, ReentrantWithdrawer::attackCall {});
    // Exactly one Withdrawn event, paid once.
    let withdrawn: Vec<_> = logs
        .iter()
        .filter(|l| l.address == registry)
        .map(|l| registry_events(std::slice::from_ref(l)).remove(0))
        .collect();
    assert!(
        matches!(&withdrawn[..], [Ev::Withdrawn(e)] if e.amount == revenue && e.to == attacker)
    );
    assert_eq!(chain.balance(attacker), revenue);
    assert_eq!(registry_before - chain.balance(registry), revenue);
    assert_eq!(
        chain.view(attacker, ReentrantWithdrawer::reentryAttemptsCall {}),
        U256::from(1)
    );
    assert!(!chain.view(attacker, ReentrantWithdrawer::reentrySucceededCall {}));
    let err = chain.view(attacker, ReentrantWithdrawer::reentryErrorCall {});
    assert!(matches!(
        registry_error(&err),
        E::ReentrancyGuardReentrantCall(_)
    ));
    assert_eq!(
        chain
            .view(registry, ModelRegistry::getModelCall { modelId: id })
            .revenue,
        Z
    );
}

#[test]
fn admin_settings_are_admin_only_and_validated() {
    let (mut chain, registry) = setup();
    assert!(unauthorized(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::setFeeSplitCall {
            executorBps_: 1,
            poolBps_: 1,
            protocolBps_: 1
        }
    )));
    assert!(unauthorized(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::setFeeRecipientsCall {
            pinningPool_: stranger(),
            treasury_: stranger()
        }
    )));
    assert!(unauthorized(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::setRequestTimeoutCall { timeout: 5 }
    )));
    assert!(unauthorized(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::pauseCall {}
    )));
    assert!(unauthorized(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::unpauseCall {}
    )));
    let role = chain.view(registry, ModelRegistry::EXECUTOR_ROLECall {});
    assert!(unauthorized(&chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::grantRoleCall {
            role,
            account: stranger()
        }
    )));

    let d = chain.revert(
        admin(),
        registry,
        Z,
        ModelRegistry::setFeeSplitCall {
            executorBps_: 5000,
            poolBps_: 5000,
            protocolBps_: 1,
        },
    );
    assert!(matches!(registry_error(&d), E::InvalidSplit(e) if e.totalBps == U256::from(10_001)));
    let (_, logs) = chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::setFeeSplitCall {
            executorBps_: 5000,
            poolBps_: 3000,
            protocolBps_: 2000,
        },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::FeeSplitChanged(e)] if (e.executorBps, e.poolBps, e.protocolBps) == (5000, 3000, 2000))
    );
    let s = chain.view(
        registry,
        ModelRegistry::computeSplitCall {
            fee: U256::from(999),
        },
    );
    assert_eq!(
        (s.toOwner, s.toExecutor, s.toPool, s.toProtocol),
        (
            U256::from(2),
            U256::from(499),
            U256::from(299),
            U256::from(199)
        )
    );

    let d = chain.revert(
        admin(),
        registry,
        Z,
        ModelRegistry::setFeeRecipientsCall {
            pinningPool_: Address::ZERO,
            treasury_: treasury(),
        },
    );
    assert!(matches!(registry_error(&d), E::ZeroAddress(_)));
    let (_, logs) = chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::setFeeRecipientsCall {
            pinningPool_: addr(50),
            treasury_: addr(51),
        },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::FeeRecipientsChanged(e)] if e.pinningPool == addr(50) && e.treasury == addr(51))
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::pinningPoolCall {}),
        addr(50)
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::treasuryCall {}),
        addr(51)
    );

    let d = chain.revert(
        admin(),
        registry,
        Z,
        ModelRegistry::setRequestTimeoutCall { timeout: 0 },
    );
    assert!(matches!(registry_error(&d), E::InvalidTimeout(_)));
    let (_, logs) = chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::setRequestTimeoutCall { timeout: 60 },
    );
    assert!(
        matches!(&registry_events(&logs)[..], [Ev::RequestTimeoutChanged(e)] if e.requestTimeout == 60)
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::requestTimeoutCall {}),
        60
    );

    // Role management through AccessControl.
    let (_, logs) = chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::grantRoleCall {
            role,
            account: stranger(),
        },
    );
    assert!(matches!(&registry_events(&logs)[..], [Ev::RoleGranted(_)]));
    let (_, logs) = chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::revokeRoleCall {
            role,
            account: stranger(),
        },
    );
    assert!(matches!(&registry_events(&logs)[..], [Ev::RoleRevoked(_)]));
    chain.ok(
        executor(),
        registry,
        Z,
        ModelRegistry::renounceRoleCall {
            role,
            callerConfirmation: executor(),
        },
    );
    assert!(!chain.view(
        registry,
        ModelRegistry::hasRoleCall {
            role,
            account: executor()
        }
    ));
    assert_eq!(
        chain.view(registry, ModelRegistry::getRoleAdminCall { role }),
        B256::ZERO
    );
    assert!(chain.view(
        registry,
        ModelRegistry::supportsInterfaceCall {
            interfaceId: alloy_primitives::FixedBytes([0x7965_db0b_u32.to_be_bytes()][0])
        }
    ));
}

#[test]
fn pause_stops_new_work_but_not_payouts() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"p", 1000, false);
    let rid = request(&mut chain, registry, user(), id, 1000);
    chain.ok(executor(), registry, Z, fulfil_call(rid));
    let rid2 = request(&mut chain, registry, user(), id, 1000);

    let (_, logs) = chain.ok(admin(), registry, Z, ModelRegistry::pauseCall {});
    assert!(matches!(&registry_events(&logs)[..], [Ev::Paused(_)]));
    assert!(chain.view(registry, ModelRegistry::pausedCall {}));
    let paused = |d: &[u8]| matches!(registry_error(d), E::EnforcedPause(_));
    assert!(paused(&chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::registerModelCall {
            rootCid: Bytes::from_static(b"q"),
            manifestCid: Bytes::new(),
            name: String::new(),
            format: String::new(),
            architecture: String::new(),
            price: Z,
            isPrivate: false
        }
    )));
    assert!(paused(&chain.revert(
        owner(),
        registry,
        Z,
        ModelRegistry::addVersionCall {
            modelId: id,
            rootCid: Bytes::from_static(b"q"),
            manifestCid: Bytes::new()
        }
    )));
    assert!(paused(&chain.revert(
        user(),
        registry,
        U256::from(1000),
        ModelRegistry::requestInferenceCall {
            modelId: id,
            inputHash: B256::ZERO,
            maxFee: U256::from(1000)
        }
    )));
    assert!(paused(&chain.revert(
        executor(),
        registry,
        Z,
        fulfil_call(rid2)
    )));
    // Payouts and refunds still work.
    chain.ok(
        owner(),
        registry,
        Z,
        ModelRegistry::withdrawCall { modelId: id },
    );
    chain.ok(
        user(),
        registry,
        Z,
        ModelRegistry::withdrawBalanceCall {
            account: executor(),
        },
    );
    chain.warp(3600);
    chain.ok(
        user(),
        registry,
        Z,
        ModelRegistry::refundCall { requestId: rid2 },
    );
    let d = chain.revert(admin(), registry, Z, ModelRegistry::pauseCall {});
    assert!(paused(&d));

    let (_, logs) = chain.ok(admin(), registry, Z, ModelRegistry::unpauseCall {});
    assert!(matches!(&registry_events(&logs)[..], [Ev::Unpaused(_)]));
    let d = chain.revert(admin(), registry, Z, ModelRegistry::unpauseCall {});
    assert!(matches!(registry_error(&d), E::ExpectedPause(_)));
    request(&mut chain, registry, user(), id, 1000);
}

#[test]
fn admin_role_is_the_zero_role() {
    let (mut chain, registry) = setup();
    let admin_role = chain.view(registry, ModelRegistry::DEFAULT_ADMIN_ROLECall {});
    assert_eq!(admin_role, B256::ZERO);
    assert!(chain.view(
        registry,
        ModelRegistry::hasRoleCall {
            role: admin_role,
            account: admin()
        }
    ));
    assert!(!chain.view(
        registry,
        ModelRegistry::hasRoleCall {
            role: admin_role,
            account: stranger()
        }
    ));
}

#[test]
fn pool_share_funds_ipfs_incentives_and_failed_sends_revert() {
    use lattice_contracts::IPFSIncentives;
    let (mut chain, registry) = setup();
    let incentives = deploy_incentives(&mut chain);
    chain.ok(
        admin(),
        registry,
        Z,
        ModelRegistry::setFeeRecipientsCall {
            pinningPool_: incentives,
            treasury_: registry,
        },
    );
    let id = register(&mut chain, registry, b"pool", 10_000, false);
    let rid = request(&mut chain, registry, user(), id, 10_000);
    chain.ok(executor(), registry, Z, fulfil_call(rid));

    // The pool share goes to IPFSIncentives, whose `receive` records the funding.
    let (_, logs) = chain.ok(
        stranger(),
        registry,
        Z,
        ModelRegistry::withdrawBalanceCall {
            account: incentives,
        },
    );
    let funded: Vec<_> = logs.iter().filter(|l| l.address == incentives).collect();
    assert_eq!(funded.len(), 1);
    let ev = incentives_events(&[funded[0].clone()]).remove(0);
    assert!(
        matches!(ev, IPFSIncentives::IPFSIncentivesEvents::Funded(e) if e.from == registry && e.amount == U256::from(500))
    );
    assert_eq!(chain.balance(incentives), U256::from(500));
    assert_eq!(
        chain.view(incentives, IPFSIncentives::unallocatedCall {}),
        U256::from(500)
    );

    // A recipient that refuses ether (the registry itself has no `receive`): the payout reverts
    // and the credit stays.
    let d = chain.revert(
        stranger(),
        registry,
        Z,
        ModelRegistry::withdrawBalanceCall { account: registry },
    );
    assert!(
        matches!(registry_error(&d), E::TransferFailed(e) if e.to == registry && e.amount == U256::from(250))
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::balanceOfCall(registry)),
        U256::from(250)
    );
}

#[test]
fn renounce_needs_confirmation() {
    let (mut chain, registry) = setup();
    let role = chain.view(registry, ModelRegistry::EXECUTOR_ROLECall {});
    let d = chain.revert(
        executor(),
        registry,
        Z,
        ModelRegistry::renounceRoleCall {
            role,
            callerConfirmation: stranger(),
        },
    );
    assert!(matches!(
        registry_error(&d),
        E::AccessControlBadConfirmation(_)
    ));
}

#[test]
fn executors_reject_unrunnable_requests_with_a_full_refund() {
    let (mut chain, registry) = setup();
    let id = register(&mut chain, registry, b"picky", 5000, false);
    let rid = request(&mut chain, registry, user(), id, 5000);
    let reject = |rid: U256| ModelRegistry::rejectInferenceCall {
        requestId: rid,
        reason: "input 0: not a WAV file".into(),
    };
    // Only executors reject.
    let d = chain.revert(user(), registry, Z, reject(rid));
    assert!(unauthorized(&d), "{}", describe(&d));
    let d = chain.revert(owner(), registry, Z, reject(rid));
    assert!(unauthorized(&d), "{}", describe(&d));

    let before = chain.balance(user());
    let (_, logs) = chain.ok(executor(), registry, Z, reject(rid));
    let evs = registry_events(&logs);
    assert!(
        matches!(&evs[..], [Ev::InferenceRejected(r), Ev::Refunded(f)]
            if r.requestId == rid && r.modelId == id && r.executor == executor()
                && r.reason == "input 0: not a WAV file"
                && f.requester == user() && f.amount == U256::from(5000)),
        "{evs:?}"
    );
    assert_eq!(chain.balance(user()) - before, U256::from(5000));
    let r = chain.view(registry, ModelRegistry::getRequestCall { requestId: rid });
    assert_eq!((r.status, r.executor), (REFUNDED, executor()));
    // Nobody earned anything.
    assert_eq!(
        chain
            .view(registry, ModelRegistry::getModelCall { modelId: id })
            .revenue,
        Z
    );
    assert_eq!(
        chain.view(registry, ModelRegistry::balanceOfCall(executor())),
        Z
    );

    // Settled requests cannot be rejected, fulfilled or refunded again.
    let d = chain.revert(executor(), registry, Z, reject(rid));
    assert!(matches!(registry_error(&d), E::RequestNotPending(e) if e.status == REFUNDED));
    let d = chain.revert(executor(), registry, Z, fulfil_call(rid));
    assert!(matches!(registry_error(&d), E::RequestNotPending(_)));
    let d = chain.revert(executor(), registry, Z, reject(U256::from(99)));
    assert!(matches!(registry_error(&d), E::UnknownRequest(_)));
    // A fulfilled request cannot be rejected.
    let rid = request(&mut chain, registry, user(), id, 5000);
    chain.ok(executor(), registry, Z, fulfil_call(rid));
    let d = chain.revert(executor(), registry, Z, reject(rid));
    assert!(matches!(registry_error(&d), E::RequestNotPending(e) if e.status == FULFILLED));
    // Past the deadline only the requester's refund remains.
    let rid = request(&mut chain, registry, user(), id, 5000);
    chain.warp(3600);
    let d = chain.revert(executor(), registry, Z, reject(rid));
    assert!(matches!(registry_error(&d), E::RequestExpired(_)));
    assert_eq!(
        chain
            .view(registry, ModelRegistry::getRequestCall { requestId: rid })
            .status,
        PENDING
    );
}
