//! Genesis: a geth-style JSON `alloc`, system contracts deployed by running
//! their constructors, dev accounts.

use std::collections::BTreeMap;

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY};
use revm::{
    bytecode::Bytecode,
    context::BlockEnv,
    context_interface::result::ExecutionResult,
    database::{AccountState, CacheDB, DbAccount},
    handler::{SYSTEM_ADDRESS, SystemCallCommitEvm},
    state::AccountInfo,
};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    db::{Head, StateDb},
    dev::DEV_ACCOUNTS,
    error::{GenesisError, StateError},
    execute::{build_diff, build_evm, into_db, post_merge_header},
    precompile::LatticePrecompiles,
};

/// Where genesis puts `ModelRegistry` (`"Lattice"` in ASCII, then `…01`).
pub const MODEL_REGISTRY_ADDRESS: Address =
    alloy_primitives::address!("0x4c61747469636500000000000000000000000001");
/// Where genesis puts `IPFSIncentives`.
pub const IPFS_INCENTIVES_ADDRESS: Address =
    alloy_primitives::address!("0x4c61747469636500000000000000000000000002");

/// One account of the genesis `alloc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAlloc {
    /// Balance in wei (JSON: number, decimal string or `0x` hex string).
    #[serde(default, deserialize_with = "de_u256")]
    pub balance: U256,
    /// Nonce.
    #[serde(default, deserialize_with = "de_u64")]
    pub nonce: u64,
    /// Runtime code.
    #[serde(default)]
    pub code: Bytes,
    /// Storage slots (32-byte hex keys and values).
    #[serde(default)]
    pub storage: BTreeMap<B256, B256>,
}

/// A contract created at genesis at a fixed address: `init_code` (creation
/// bytecode followed by ABI-encoded constructor arguments) is run as the code
/// of `address` by a system call from `SYSTEM_ADDRESS`
/// (`0xffff…fffe`, also the constructor's `msg.sender`, with no value); what it
/// returns becomes the runtime code, what it stores stays, and the account
/// gets nonce 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Where the contract lives.
    pub address: Address,
    /// Creation bytecode ‖ constructor arguments.
    pub init_code: Bytes,
}

/// A call made at genesis, after the deployments: `input` sent to `to` as if by `from`
/// (no value, no gas charged, `from`'s nonce untouched), e.g. an admin granting a role. It
/// must succeed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenesisCall {
    /// The caller (`msg.sender`).
    pub from: Address,
    /// The contract called.
    pub to: Address,
    /// Calldata.
    pub input: Bytes,
}

/// The chain's first block and state. Reads geth's genesis JSON (`config.chainId`,
/// `gasLimit`, `baseFeePerGas`, `timestamp`, `extraData`, `coinbase`,
/// `alloc`); Lattice adds `deployments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Genesis {
    /// Chain configuration.
    pub config: ChainConfig,
    /// The consensus validators: ed25519 public keys (32 bytes each), in the order
    /// listed. Empty for a single-validator dev chain. Block 0's `mixHash` commits to
    /// them ([`validators_commitment`]), so two networks with other sets have other
    /// genesis hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<B256>,
    /// Genesis timestamp.
    #[serde(default, deserialize_with = "de_u64")]
    pub timestamp: u64,
    /// Block gas limit of block 0 (and the usual limit after).
    #[serde(deserialize_with = "de_u64")]
    pub gas_limit: u64,
    /// Base fee of block 0.
    #[serde(default = "default_base_fee", deserialize_with = "de_u64")]
    pub base_fee_per_gas: u64,
    /// Header extra data.
    #[serde(default)]
    pub extra_data: Bytes,
    /// Header beneficiary.
    #[serde(default)]
    pub coinbase: Address,
    /// Prefunded accounts, code and storage.
    #[serde(default)]
    pub alloc: BTreeMap<Address, GenesisAlloc>,
    /// System contracts run at genesis, in order.
    #[serde(default)]
    pub deployments: Vec<Deployment>,
    /// Calls made after the deployments, in order.
    #[serde(default)]
    pub calls: Vec<GenesisCall>,
}

/// The part of geth's `config` Lattice reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainConfig {
    /// EIP-155 chain id.
    pub chain_id: u64,
}

const fn default_base_fee() -> u64 {
    alloy_eips::eip1559::INITIAL_BASE_FEE
}

/// 10,000 ETH, each dev account's genesis balance.
const DEV_BALANCE: U256 = U256::from_limbs([0x19e0_c9ba_b240_0000, 0x21e, 0, 0]);

impl Genesis {
    /// Parses geth-style genesis JSON.
    pub fn from_json(json: &str) -> Result<Self, GenesisError> {
        Ok(serde_json::from_str(json)?)
    }

    /// An empty chain: no accounts, no contracts, no validators, 30M gas limit, 1 gwei
    /// base fee, timestamp 0.
    pub fn new(chain_id: u64) -> Self {
        Self {
            config: ChainConfig { chain_id },
            validators: Vec::new(),
            timestamp: 0,
            gas_limit: 30_000_000,
            base_fee_per_gas: default_base_fee(),
            extra_data: Bytes::new(),
            coinbase: Address::ZERO,
            alloc: BTreeMap::new(),
            deployments: Vec::new(),
            calls: Vec::new(),
        }
    }

    /// A dev chain: [`Genesis::new`] with the 10 [`DEV_ACCOUNTS`] holding 10,000 ETH each.
    pub fn dev(chain_id: u64) -> Self {
        let alloc = DEV_ACCOUNTS
            .iter()
            .map(|a| {
                (
                    a.address,
                    GenesisAlloc {
                        balance: DEV_BALANCE,
                        ..Default::default()
                    },
                )
            })
            .collect();
        Self {
            alloc,
            ..Self::new(chain_id)
        }
    }

    /// Adds a call to make at genesis after the deployments (see [`GenesisCall`]).
    pub fn with_call(mut self, from: Address, to: Address, input: Bytes) -> Self {
        self.calls.push(GenesisCall { from, to, input });
        self
    }

    /// Adds a contract to run at genesis (see [`Deployment`]).
    pub fn with_deployment(mut self, address: Address, init_code: Bytes) -> Self {
        self.deployments.push(Deployment { address, init_code });
        self
    }

    fn header(&self, state_root: B256) -> Header {
        Header {
            parent_hash: B256::ZERO,
            beneficiary: self.coinbase,
            state_root,
            transactions_root: EMPTY_ROOT_HASH,
            receipts_root: EMPTY_ROOT_HASH,
            number: 0,
            gas_limit: self.gas_limit,
            gas_used: 0,
            timestamp: self.timestamp,
            extra_data: self.extra_data.clone(),
            base_fee_per_gas: Some(self.base_fee_per_gas),
            mix_hash: validators_commitment(&self.validators),
            ..post_merge_header()
        }
    }
}

/// What block 0's `mixHash` holds: keccak256 of the validators' keys concatenated in
/// genesis order, or zero when genesis names none (the dev chain).
pub fn validators_commitment(validators: &[B256]) -> B256 {
    if validators.is_empty() {
        return B256::ZERO;
    }
    let mut bytes = Vec::with_capacity(32 * validators.len());
    for v in validators {
        bytes.extend_from_slice(v.as_slice());
    }
    alloy_primitives::keccak256(bytes)
}

fn bytecode(address: Address, code: Bytes) -> Result<Bytecode, GenesisError> {
    Bytecode::new_raw_checked(code).map_err(|e| GenesisError::Deployment {
        address,
        reason: format!("bad code: {e}"),
    })
}

impl StateDb {
    /// Writes block 0: the `alloc`, then each deployment in order, in one
    /// transaction. Fails on a database that already has a head.
    pub fn init_genesis(&self, genesis: &Genesis) -> Result<Head, GenesisError> {
        let snapshot = self.snapshot()?;
        if snapshot.head.is_some() {
            return Err(StateError::AlreadyInitialized.into());
        }
        let mut db = CacheDB::new(snapshot);
        for (address, alloc) in &genesis.alloc {
            let code = bytecode(*address, alloc.code.clone())?;
            let code_hash = if alloc.code.is_empty() {
                KECCAK_EMPTY
            } else {
                code.hash_slow()
            };
            if code_hash != KECCAK_EMPTY {
                db.cache.contracts.insert(code_hash, code.clone());
            }
            let mut account = DbAccount::from(AccountInfo {
                balance: alloc.balance,
                nonce: alloc.nonce,
                code_hash,
                code: Some(code),
                ..Default::default()
            });
            account.account_state = AccountState::StorageCleared;
            for (slot, value) in &alloc.storage {
                account.storage.insert((*slot).into(), (*value).into());
            }
            db.cache.accounts.insert(*address, account);
        }
        let block = BlockEnv {
            number: U256::ZERO,
            beneficiary: genesis.coinbase,
            timestamp: U256::from(genesis.timestamp),
            gas_limit: genesis.gas_limit,
            basefee: genesis.base_fee_per_gas,
            prevrandao: Some(B256::ZERO),
            ..Default::default()
        };
        for deployment in &genesis.deployments {
            if db.cache.accounts.contains_key(&deployment.address) {
                return Err(GenesisError::Duplicate(deployment.address));
            }
            db = deploy(db, deployment, genesis.config.chain_id, block.clone())?;
        }
        for call in &genesis.calls {
            db = genesis_call(db, call, genesis.config.chain_id, block.clone())?;
        }
        let CacheDB {
            cache,
            db: snapshot,
        } = db;
        let (diff, state_root) = build_diff(&snapshot, cache, |a| genesis.alloc.contains_key(a))?;
        drop(snapshot);
        Ok(self.write_block(
            &genesis.header(state_root),
            &diff,
            Some(genesis.config.chain_id),
            |_| Ok(()),
        )?)
    }
}

fn deploy(
    mut db: CacheDB<crate::db::StateSnapshot>,
    deployment: &Deployment,
    chain_id: u64,
    block: BlockEnv,
) -> Result<CacheDB<crate::db::StateSnapshot>, GenesisError> {
    let address = deployment.address;
    let init = bytecode(address, deployment.init_code.clone())?;
    db.insert_account_info(
        address,
        AccountInfo {
            nonce: 1,
            code_hash: init.hash_slow(),
            code: Some(init),
            ..Default::default()
        },
    );
    let mut evm = build_evm(db, chain_id, block, LatticePrecompiles::new());
    let result = evm.system_call_with_caller_commit(SYSTEM_ADDRESS, address, Bytes::new());
    let mut db = into_db(evm);
    let runtime = match result {
        Ok(ExecutionResult::Success { output, .. }) => output.into_data(),
        Ok(other) => {
            return Err(GenesisError::Deployment {
                address,
                reason: format!("{other:?}"),
            });
        }
        Err(e) => {
            return Err(GenesisError::Deployment {
                address,
                reason: e.to_string(),
            });
        }
    };
    let runtime = bytecode(address, runtime)?;
    let code_hash = if runtime.is_empty() {
        KECCAK_EMPTY
    } else {
        runtime.hash_slow()
    };
    if code_hash != KECCAK_EMPTY {
        db.cache.contracts.insert(code_hash, runtime.clone());
    }
    let account = db.cache.accounts.entry(address).or_default();
    account.info.code_hash = code_hash;
    account.info.code = Some(runtime);
    account.info.nonce = 1;
    account.account_state = AccountState::StorageCleared;
    Ok(db)
}

fn genesis_call(
    db: CacheDB<crate::db::StateSnapshot>,
    call: &GenesisCall,
    chain_id: u64,
    block: BlockEnv,
) -> Result<CacheDB<crate::db::StateSnapshot>, GenesisError> {
    let mut evm = build_evm(db, chain_id, block, LatticePrecompiles::new());
    let result = evm.system_call_with_caller_commit(call.from, call.to, call.input.clone());
    let db = into_db(evm);
    match result {
        Ok(ExecutionResult::Success { .. }) => Ok(db),
        Ok(other) => Err(GenesisError::Deployment {
            address: call.to,
            reason: format!("genesis call from {}: {other:?}", call.from),
        }),
        Err(e) => Err(GenesisError::Deployment {
            address: call.to,
            reason: format!("genesis call from {}: {e}", call.from),
        }),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Quantity {
    Number(u64),
    Text(String),
}

fn parse_u256(q: Quantity) -> Result<U256, String> {
    match q {
        Quantity::Number(n) => Ok(U256::from(n)),
        Quantity::Text(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some("") => Ok(U256::ZERO),
                Some(hex) => U256::from_str_radix(hex, 16),
                None => U256::from_str_radix(s, 10),
            };
            parsed.map_err(|e| format!("bad quantity {s:?}: {e}"))
        }
    }
}

fn de_u256<'de, D: Deserializer<'de>>(d: D) -> Result<U256, D::Error> {
    parse_u256(Quantity::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let v = parse_u256(Quantity::deserialize(d)?).map_err(serde::de::Error::custom)?;
    u64::try_from(v).map_err(|_| serde::de::Error::custom(format!("{v} does not fit in 64 bits")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_balance_is_ten_thousand_ether() {
        assert_eq!(
            DEV_BALANCE,
            U256::from(10_000u64) * U256::from(10u64).pow(U256::from(18))
        );
    }

    #[test]
    fn parses_geth_style_json() {
        let json = r#"{
            "config": {"chainId": 1337, "londonBlock": 0},
            "gasLimit": "0x1c9c380",
            "baseFeePerGas": "1000000000",
            "timestamp": 5,
            "alloc": {
                "f39Fd6e51aad88F6F4ce6aB8827279cffFb92266": {"balance": "0xde0b6b3a7640000"},
                "0x0000000000000000000000000000000000000abc": {
                    "balance": "7", "nonce": "0x1", "code": "0x600160005500",
                    "storage": {"0x0000000000000000000000000000000000000000000000000000000000000001":
                                "0x0000000000000000000000000000000000000000000000000000000000000002"}
                }
            }
        }"#;
        let g = Genesis::from_json(json).expect("parses");
        assert_eq!(g.config.chain_id, 1337);
        assert_eq!(g.gas_limit, 30_000_000);
        assert_eq!(g.base_fee_per_gas, 1_000_000_000);
        assert_eq!(g.timestamp, 5);
        assert_eq!(g.alloc.len(), 2);
        assert_eq!(
            g.alloc[&DEV_ACCOUNTS[0].address].balance,
            U256::from(10u64).pow(U256::from(18))
        );
        let c = &g.alloc[&alloy_primitives::address!("0x0000000000000000000000000000000000000abc")];
        assert_eq!(
            (c.balance, c.nonce, c.code.len(), c.storage.len()),
            (U256::from(7), 1, 6, 1)
        );
        assert!(Genesis::from_json(r#"{"config":{"chainId":1},"gasLimit":"zz"}"#).is_err());
    }
}
