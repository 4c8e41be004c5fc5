//! A tiny in-memory chain over revm for the contract tests: deploy, call, decode.
#![allow(dead_code, unreachable_pub)]

use alloy_primitives::{Address, Bytes, Log, TxKind, U256, keccak256};
use alloy_sol_types::{SolCall, SolInterface};
use lattice_contracts::{IPFSIncentives, ModelRegistry, ReentrantWithdrawer};
use revm::context::TxEnv;
use revm::context::result::{ExecutionResult, Output};
use revm::database::InMemoryDB;
use revm::handler::{MainnetContext, MainnetEvm};
use revm::state::AccountInfo;
use revm::{Context, DatabaseRef, ExecuteCommitEvm, MainBuilder, MainContext};

/// 1 ether in wei.
pub const ETHER: u128 = 1_000_000_000_000_000_000;

/// A deterministic test account.
pub fn addr(n: u64) -> Address {
    Address::from_word(keccak256(n.to_be_bytes()))
}

/// Well-known actors.
pub fn admin() -> Address {
    addr(1)
}
pub fn owner() -> Address {
    addr(2)
}
pub fn user() -> Address {
    addr(3)
}
pub fn executor() -> Address {
    addr(4)
}
pub fn pool() -> Address {
    addr(5)
}
pub fn treasury() -> Address {
    addr(6)
}
pub fn stranger() -> Address {
    addr(7)
}
pub fn publisher() -> Address {
    addr(8)
}

/// What one transaction did.
#[derive(Debug)]
pub enum Outcome {
    /// Success with return data (or the created address's code output) and logs.
    Ok {
        output: Bytes,
        logs: Vec<Log>,
        created: Option<Address>,
    },
    /// `REVERT` with its data.
    Revert(Bytes),
}

/// An EVM over an in-memory database; every transaction is committed.
pub struct Chain {
    evm: MainnetEvm<MainnetContext<InMemoryDB>>,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// A fresh chain at timestamp 1_700_000_000, with no accounts.
    pub fn new() -> Self {
        let mut evm = Context::mainnet()
            .with_db(InMemoryDB::default())
            .modify_cfg_chained(|c| c.disable_nonce_check = true)
            .build_mainnet();
        evm.ctx.block.timestamp = U256::from(1_700_000_000u64);
        Self { evm }
    }

    /// Current block timestamp.
    pub fn now(&self) -> u64 {
        self.evm.ctx.block.timestamp.to::<u64>()
    }

    /// Moves the block timestamp forward.
    pub fn warp(&mut self, seconds: u64) {
        self.evm.ctx.block.timestamp += U256::from(seconds);
    }

    /// Adds `wei` to an account's balance.
    pub fn fund(&mut self, who: Address, wei: U256) {
        let db = &mut self.evm.ctx.journaled_state.database;
        let mut info = db.basic_ref(who).expect("in-memory db").unwrap_or_default();
        info.balance += wei;
        if let Some(acc) = db.cache.accounts.get_mut(&who) {
            acc.info = info;
        } else {
            db.insert_account_info(
                who,
                AccountInfo {
                    balance: info.balance,
                    ..Default::default()
                },
            );
        }
    }

    /// An account's balance.
    pub fn balance(&self, who: Address) -> U256 {
        self.evm
            .ctx
            .journaled_state
            .database
            .basic_ref(who)
            .expect("in-memory db")
            .map(|i| i.balance)
            .unwrap_or_default()
    }

    /// Runs and commits one transaction.
    pub fn tx(&mut self, from: Address, kind: TxKind, value: U256, data: Bytes) -> Outcome {
        let tx = TxEnv::builder()
            .caller(from)
            .kind(kind)
            .value(value)
            .data(data)
            .gas_limit(16_000_000)
            .gas_price(0)
            .build_fill();
        match self.evm.transact_commit(tx).expect("transaction is valid") {
            ExecutionResult::Success { logs, output, .. } => match output {
                Output::Call(output) => Outcome::Ok {
                    output,
                    logs,
                    created: None,
                },
                Output::Create(output, created) => Outcome::Ok {
                    output,
                    logs,
                    created,
                },
            },
            ExecutionResult::Revert { output, .. } => Outcome::Revert(output),
            ExecutionResult::Halt { reason, .. } => panic!("halted: {reason:?}"),
        }
    }

    /// Deploys `code ++ args`, returning the new address and the constructor's logs.
    pub fn deploy(&mut self, from: Address, code: &Bytes, args: Vec<u8>) -> (Address, Vec<Log>) {
        let mut data = code.to_vec();
        data.extend(args);
        match self.tx(from, TxKind::Create, U256::ZERO, data.into()) {
            Outcome::Ok {
                created: Some(a),
                logs,
                ..
            } => (a, logs),
            other => panic!("deployment failed: {other:?}"),
        }
    }

    /// Sends a call that must succeed; returns the decoded return value and the logs.
    pub fn ok<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        value: U256,
        call: C,
    ) -> (C::Return, Vec<Log>) {
        match self.tx(from, TxKind::Call(to), value, call.abi_encode().into()) {
            Outcome::Ok { output, logs, .. } => (
                C::abi_decode_returns(&output).expect("decodable return"),
                logs,
            ),
            Outcome::Revert(data) => panic!("{} reverted: {}", C::SIGNATURE, describe(&data)),
        }
    }

    /// Sends a call that must revert; returns the revert data.
    pub fn revert<C: SolCall>(
        &mut self,
        from: Address,
        to: Address,
        value: U256,
        call: C,
    ) -> Bytes {
        match self.tx(from, TxKind::Call(to), value, call.abi_encode().into()) {
            Outcome::Ok { .. } => panic!("{} unexpectedly succeeded", C::SIGNATURE),
            Outcome::Revert(data) => data,
        }
    }

    /// A read-only call (committed, but views change nothing).
    pub fn view<C: SolCall>(&mut self, to: Address, call: C) -> C::Return {
        self.ok(addr(999), to, U256::ZERO, call).0
    }

    /// Plain value transfer.
    pub fn transfer(&mut self, from: Address, to: Address, value: U256) -> Outcome {
        self.tx(from, TxKind::Call(to), value, Bytes::new())
    }
}

/// Decodes revert data as either contract's custom error, for messages.
pub fn describe(data: &[u8]) -> String {
    if let Ok(e) = ModelRegistry::ModelRegistryErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    if let Ok(e) = IPFSIncentives::IPFSIncentivesErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    format!("0x{}", alloy_primitives::hex::encode(data))
}

/// The registry's custom error in revert data.
pub fn registry_error(data: &[u8]) -> ModelRegistry::ModelRegistryErrors {
    ModelRegistry::ModelRegistryErrors::abi_decode(data)
        .unwrap_or_else(|_| panic!("not a ModelRegistry error: {}", describe(data)))
}

/// The incentives contract's custom error in revert data.
pub fn incentives_error(data: &[u8]) -> IPFSIncentives::IPFSIncentivesErrors {
    IPFSIncentives::IPFSIncentivesErrors::abi_decode(data)
        .unwrap_or_else(|_| panic!("not an IPFSIncentives error: {}", describe(data)))
}

/// Decodes every log as a registry event.
pub fn registry_events(logs: &[Log]) -> Vec<ModelRegistry::ModelRegistryEvents> {
    use alloy_sol_types::SolEventInterface;
    logs.iter()
        .map(|l| {
            ModelRegistry::ModelRegistryEvents::decode_log(l)
                .expect("registry event")
                .data
        })
        .collect()
}

/// Decodes every log as an incentives event.
pub fn incentives_events(logs: &[Log]) -> Vec<IPFSIncentives::IPFSIncentivesEvents> {
    use alloy_sol_types::SolEventInterface;
    logs.iter()
        .map(|l| {
            IPFSIncentives::IPFSIncentivesEvents::decode_log(l)
                .expect("incentives event")
                .data
        })
        .collect()
}

/// Deploys a ModelRegistry (admin, pool, treasury) and grants `executor()` the executor role.
pub fn deploy_registry(chain: &mut Chain) -> Address {
    let args = ModelRegistry::constructorCall {
        admin: admin(),
        pinningPool_: pool(),
        treasury_: treasury(),
    };
    let (registry, _) = chain.deploy(
        admin(),
        &ModelRegistry::BYTECODE,
        alloy_sol_types::SolConstructor::abi_encode(&args),
    );
    let role = chain.view(registry, ModelRegistry::EXECUTOR_ROLECall {});
    chain.ok(
        admin(),
        registry,
        U256::ZERO,
        ModelRegistry::grantRoleCall {
            role,
            account: executor(),
        },
    );
    registry
}

/// Deploys IPFSIncentives with `admin()` and `publisher()`.
pub fn deploy_incentives(chain: &mut Chain) -> Address {
    let args = IPFSIncentives::constructorCall {
        admin: admin(),
        publisher: publisher(),
    };
    chain
        .deploy(
            admin(),
            &IPFSIncentives::BYTECODE,
            alloy_sol_types::SolConstructor::abi_encode(&args),
        )
        .0
}

/// Deploys the reentrancy attacker against `registry`.
pub fn deploy_attacker(chain: &mut Chain, registry: Address) -> Address {
    let args = ReentrantWithdrawer::constructorCall {
        registry_: registry,
    };
    chain
        .deploy(
            stranger(),
            &ReentrantWithdrawer::BYTECODE,
            alloy_sol_types::SolConstructor::abi_encode(&args),
        )
        .0
}

/// Registers a model from `owner()`; returns its id.
pub fn register(
    chain: &mut Chain,
    registry: Address,
    cid: &[u8],
    price: u128,
    private: bool,
) -> alloy_primitives::B256 {
    chain
        .ok(
            owner(),
            registry,
            U256::ZERO,
            ModelRegistry::registerModelCall {
                rootCid: Bytes::copy_from_slice(cid),
                manifestCid: Bytes::from_static(b"manifest"),
                name: "tiny-llama".into(),
                format: "gguf".into(),
                architecture: "llama".into(),
                price: U256::from(price),
                isPrivate: private,
            },
        )
        .0
}

/// The Merkle tree OpenZeppelin's `StandardMerkleTree` builds: leaves
/// sorted by hash, laid out in an array from the end, parents hash the sorted pair.
pub struct MerkleTree {
    tree: Vec<alloy_primitives::B256>,
    /// Sorted leaf hashes; leaf `i` sits at `tree[tree.len() - 1 - i]`.
    pub leaves: Vec<alloy_primitives::B256>,
}

#[allow(unused_imports)]
pub use lattice_contracts::{hash_pair, reward_leaf as leaf};

impl MerkleTree {
    /// Builds the tree over `leaves` (at least one).
    pub fn new(mut leaves: Vec<alloy_primitives::B256>) -> Self {
        assert!(!leaves.is_empty());
        leaves.sort();
        let n = leaves.len();
        let mut tree = vec![alloy_primitives::B256::ZERO; 2 * n - 1];
        for (i, l) in leaves.iter().enumerate() {
            tree[2 * n - 2 - i] = *l;
        }
        for i in (0..n - 1).rev() {
            tree[i] = hash_pair(tree[2 * i + 1], tree[2 * i + 2]);
        }
        Self { tree, leaves }
    }

    /// The root.
    pub fn root(&self) -> alloy_primitives::B256 {
        self.tree[0]
    }

    /// Proof for `leaf` (which must be in the tree).
    pub fn proof(&self, leaf: alloy_primitives::B256) -> Vec<alloy_primitives::B256> {
        let mut i = self.tree.len()
            - 1
            - self
                .leaves
                .iter()
                .position(|l| *l == leaf)
                .expect("leaf in tree");
        let mut proof = Vec::new();
        while i > 0 {
            let sibling = if i % 2 == 1 { i + 1 } else { i - 1 };
            proof.push(self.tree[sibling]);
            i = (i - 1) / 2;
        }
        proof
    }
}

impl Chain {
    /// The code at an address.
    pub fn code(&mut self, at: Address) -> Bytes {
        use revm::Database;
        let db = &mut self.evm.ctx.journaled_state.database;
        let info = db.basic(at).expect("in-memory db").expect("account exists");
        match info.code {
            Some(code) => code.original_bytes(),
            None => db
                .code_by_hash(info.code_hash)
                .expect("code")
                .original_bytes(),
        }
    }
}
