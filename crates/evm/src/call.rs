//! Read-only execution against the committed head: `eth_call` and
//! `eth_estimateGas`. Nothing here is ever written to the database.

use std::collections::BTreeMap;

use alloy_eips::{eip1559::BaseFeeParams, eip2930::AccessList};
use alloy_primitives::{Address, B256, Bytes, Log, TxKind, U256, keccak256};
use alloy_sol_types::{Revert, SolError};
use revm::{
    ExecuteEvm,
    context::{BlockEnv, TxEnv},
    context_interface::result::{EVMError, ExecutionResult, HaltReason},
    database::CacheDB,
    state::{AccountInfo, Bytecode},
};

use crate::{
    db::StateDb,
    error::{CallError, StateError},
    execute::build_evm,
    precompile::LatticePrecompiles,
};

/// A message to simulate, as `eth_call` and `eth_estimateGas` take it. Unset
/// fields take the defaults geth gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// Caller; the zero address when unset.
    pub from: Option<Address>,
    /// Callee; `None` simulates a contract creation.
    pub to: Option<Address>,
    /// Gas limit; the gas cap when unset.
    pub gas: Option<u64>,
    /// Legacy gas price.
    pub gas_price: Option<u128>,
    /// EIP-1559 fee cap.
    pub max_fee_per_gas: Option<u128>,
    /// EIP-1559 tip.
    pub max_priority_fee_per_gas: Option<u128>,
    /// Value sent.
    pub value: Option<U256>,
    /// Calldata (or init code).
    pub input: Bytes,
    /// Nonce; not checked when unset.
    pub nonce: Option<u64>,
    /// EIP-2930 access list.
    pub access_list: Option<AccessList>,
}

/// One account's replacement values for a call (geth's state override set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountOverride {
    /// Replaces the balance.
    pub balance: Option<U256>,
    /// Replaces the nonce.
    pub nonce: Option<u64>,
    /// Replaces the code.
    pub code: Option<Bytes>,
    /// Replaces the whole storage (slots not listed read as zero).
    pub state: Option<BTreeMap<B256, B256>>,
    /// Changes only the listed slots.
    pub state_diff: Option<BTreeMap<B256, B256>>,
}

/// Overrides applied to the state before a call, by address.
pub type StateOverrides = BTreeMap<Address, AccountOverride>;

/// What a simulated message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// It returned normally.
    Success {
        /// Return data (runtime code for a creation).
        output: Bytes,
        /// Gas used (after refunds).
        gas_used: u64,
        /// Logs it emitted.
        logs: Vec<Log>,
    },
    /// It reverted.
    Revert {
        /// Revert data.
        output: Bytes,
        /// Gas used.
        gas_used: u64,
    },
    /// It halted (out of gas, invalid opcode, …).
    Halt {
        /// Why, in words.
        reason: String,
        /// Gas used (all of it).
        gas_used: u64,
    },
}

impl CallOutcome {
    /// Gas used whatever the outcome.
    pub fn gas_used(&self) -> u64 {
        match self {
            Self::Success { gas_used, .. }
            | Self::Revert { gas_used, .. }
            | Self::Halt { gas_used, .. } => *gas_used,
        }
    }

    /// The revert reason decoded from `Error(string)` data, if that is what
    /// the revert carries.
    pub fn revert_reason(&self) -> Option<String> {
        match self {
            Self::Revert { output, .. } => decode_revert_reason(output),
            _ => None,
        }
    }
}

/// Decodes Solidity's `Error(string)` revert data.
pub fn decode_revert_reason(output: &[u8]) -> Option<String> {
    Revert::abi_decode(output).ok().map(|r| r.reason)
}

/// Simulates `req` on the committed head as if in the next block (number,
/// timestamp and base fee of the block a transaction sent now would land
/// in), with `overrides` applied first.
/// The nonce is not checked, a zero gas price skips the base-fee check, and
/// the gas limit may exceed the block's up to `gas_cap`.
pub fn call(
    db: &StateDb,
    req: &CallRequest,
    overrides: &StateOverrides,
    gas_cap: u64,
    precompiles: &LatticePrecompiles,
) -> Result<CallOutcome, CallError> {
    call_at(db, None, req, overrides, gas_cap, precompiles)
}

/// [`call`] on the state after block `block` (`None`: the head), in that
/// block's environment.
pub fn call_at(
    db: &StateDb,
    block: Option<u64>,
    req: &CallRequest,
    overrides: &StateOverrides,
    gas_cap: u64,
    precompiles: &LatticePrecompiles,
) -> Result<CallOutcome, CallError> {
    let gas = req.gas.unwrap_or(gas_cap).min(gas_cap);
    run(db, block, req, overrides, gas, precompiles)
}

/// The smallest gas limit with which `req` succeeds, found by binary search
/// between the gas the unconstrained run used and `gas_cap`. A message that
/// fails even with all of the cap is an error carrying the revert reason.
pub fn estimate_gas(
    db: &StateDb,
    req: &CallRequest,
    overrides: &StateOverrides,
    gas_cap: u64,
    precompiles: &LatticePrecompiles,
) -> Result<u64, CallError> {
    estimate_gas_at(db, None, req, overrides, gas_cap, precompiles)
}

/// [`estimate_gas`] on the state after block `block` (`None`: the head).
pub fn estimate_gas_at(
    db: &StateDb,
    block: Option<u64>,
    req: &CallRequest,
    overrides: &StateOverrides,
    gas_cap: u64,
    precompiles: &LatticePrecompiles,
) -> Result<u64, CallError> {
    let cap = req.gas.unwrap_or(gas_cap).min(gas_cap);
    let first = run(db, block, req, overrides, cap, precompiles)?;
    let used = match first {
        CallOutcome::Success { gas_used, .. } => gas_used,
        CallOutcome::Revert { output, .. } => {
            return Err(CallError::Reverted {
                reason: decode_revert_reason(&output),
                data: output,
            });
        }
        CallOutcome::Halt { reason, .. } => return Err(CallError::Halted(reason)),
    };
    // Plain transfers need exactly what they used.
    let number = match block {
        Some(n) => n,
        None => db.latest()?.ok_or(StateError::NotInitialized)?.number,
    };
    let to_code = match req.to {
        Some(to) => {
            overrides.get(&to).is_some_and(|o| o.code.is_some())
                || !db.code_at_block(to, number)?.is_empty()
        }
        None => true,
    };
    if !to_code && req.input.is_empty() {
        return Ok(used);
    }
    // Refunds and the 63/64 rule mean `used` may not suffice; geth's
    // first guess is used × 64/63, then bisection.
    let mut lo = used.saturating_sub(1);
    let mut hi = cap;
    let guess = (used.saturating_add(2300)).saturating_mul(64) / 63;
    if guess < hi {
        if matches!(
            run(db, block, req, overrides, guess, precompiles)?,
            CallOutcome::Success { .. }
        ) {
            hi = guess;
        } else {
            lo = guess;
        }
    }
    while lo + 1 < hi {
        // Stop within 1.5 % (geth does the same): the caller pads anyway.
        if (hi - lo) * 1000 / hi < 15 {
            break;
        }
        let mid = lo + (hi - lo) / 2;
        if matches!(
            run(db, block, req, overrides, mid, precompiles)?,
            CallOutcome::Success { .. }
        ) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

fn run(
    db: &StateDb,
    block: Option<u64>,
    req: &CallRequest,
    overrides: &StateOverrides,
    gas: u64,
    precompiles: &LatticePrecompiles,
) -> Result<CallOutcome, CallError> {
    let head = db.latest()?.ok_or(StateError::NotInitialized)?;
    let number = block.unwrap_or(head.number);
    let snapshot = db.snapshot_at(number)?;
    let header = db
        .header(number)?
        .ok_or_else(|| StateError::Corrupt(format!("block {number} has no header")))?;
    let chain_id = db.chain_id()?;
    let mut cache = CacheDB::new(snapshot);
    apply_overrides(&mut cache, overrides)?;

    // On the head, simulate as the next block (what a transaction sent now
    // executes in); at a past block, in that block's own environment.
    let (number, timestamp, base_fee) = match block {
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            (
                header.number + 1,
                now.max(header.timestamp + 1),
                header
                    .next_block_base_fee(BaseFeeParams::ethereum())
                    .unwrap_or_default(),
            )
        }
        Some(_) => (
            header.number,
            header.timestamp,
            header.base_fee_per_gas.unwrap_or_default(),
        ),
    };
    let block_env = BlockEnv {
        number: U256::from(number),
        beneficiary: header.beneficiary,
        timestamp: U256::from(timestamp),
        gas_limit: header.gas_limit.max(gas),
        basefee: base_fee,
        difficulty: U256::ZERO,
        prevrandao: Some(header.mix_hash),
        ..Default::default()
    };
    let mut evm = build_evm(cache, chain_id, block_env, precompiles.clone());
    let gas_price = req.gas_price.or(req.max_fee_per_gas).unwrap_or(0);
    let cfg = &mut evm.ctx.cfg;
    cfg.disable_nonce_check = req.nonce.is_none();
    cfg.disable_base_fee = gas_price == 0;
    cfg.disable_block_gas_limit = true;
    cfg.disable_eip3607 = true;

    let caller = req.from.unwrap_or(Address::ZERO);
    let tx_type = if req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some() {
        2
    } else if req.access_list.is_some() {
        1
    } else {
        0
    };
    let tx = TxEnv {
        tx_type,
        caller,
        gas_limit: gas,
        kind: req.to.map_or(TxKind::Create, TxKind::Call),
        value: req.value.unwrap_or_default(),
        data: req.input.clone(),
        nonce: req.nonce.unwrap_or_default(),
        chain_id: Some(chain_id),
        gas_price,
        gas_priority_fee: if tx_type == 2 {
            Some(req.max_priority_fee_per_gas.unwrap_or(0).min(gas_price))
        } else {
            None
        },
        access_list: req.access_list.clone().unwrap_or_default(),
        ..Default::default()
    };
    let result = match evm.transact(tx) {
        Ok(r) => r.result,
        Err(EVMError::Transaction(e)) => return Err(CallError::Invalid(e.to_string())),
        Err(EVMError::Database(e)) => return Err(e.into()),
        Err(e) => return Err(CallError::Evm(e.to_string())),
    };
    let gas_used = result.tx_gas_used();
    Ok(match result {
        ExecutionResult::Success { output, logs, .. } => CallOutcome::Success {
            gas_used,
            output: output.into_data(),
            logs,
        },
        ExecutionResult::Revert { output, .. } => CallOutcome::Revert { gas_used, output },
        ExecutionResult::Halt { reason, .. } => CallOutcome::Halt {
            reason: halt_reason(&reason),
            gas_used: gas,
        },
    })
}

fn halt_reason(reason: &HaltReason) -> String {
    match reason {
        HaltReason::OutOfGas(_) => "out of gas".into(),
        HaltReason::OpcodeNotFound | HaltReason::InvalidFEOpcode => "invalid opcode".into(),
        HaltReason::StackUnderflow => "stack underflow".into(),
        HaltReason::StackOverflow => "stack limit reached 1024".into(),
        other => format!("{other:?}"),
    }
}

fn apply_overrides(
    cache: &mut CacheDB<crate::db::StateSnapshot>,
    overrides: &StateOverrides,
) -> Result<(), StateError> {
    use revm::DatabaseRef as _;
    for (address, o) in overrides {
        let mut info = cache.basic_ref(*address)?.unwrap_or_default();
        if let Some(b) = o.balance {
            info.balance = b;
        }
        if let Some(n) = o.nonce {
            info.nonce = n;
        }
        if let Some(code) = &o.code {
            let bytecode = Bytecode::new_raw(code.clone());
            info.code_hash = keccak256(code);
            info.code = Some(bytecode);
        } else if info.code.is_none() {
            info.code = Some(cache.code_by_hash_ref(info.code_hash)?);
        }
        cache.insert_account_info(*address, AccountInfo { ..info });
        if let Some(state) = &o.state {
            let map = state
                .iter()
                .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
                .collect();
            cache.replace_account_storage(*address, map)?;
        }
        if let Some(diff) = &o.state_diff {
            for (k, v) in diff {
                cache.insert_account_storage(
                    *address,
                    U256::from_be_bytes(k.0),
                    U256::from_be_bytes(v.0),
                )?;
            }
        }
    }
    Ok(())
}
