//! Block execution: validate, recover (in parallel), run each transaction in
//! revm over a [`CacheDB`] overlay of the state snapshot, then turn the
//! overlay into a [`StateDiff`] with new storage roots and the state root.

use alloy_consensus::{
    EMPTY_OMMER_ROOT_HASH, Eip658Value, Header, Receipt, ReceiptEnvelope, Transaction, TxEnvelope,
    proofs::{calculate_receipt_root, calculate_transaction_root},
    transaction::{Recovered, SignerRecoverable},
};
use alloy_eips::{eip1559::BaseFeeParams, eip7685::EMPTY_REQUESTS_HASH};
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, U256, keccak256};
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY};
use rayon::prelude::*;
use revm::{
    Context, ExecuteCommitEvm, Journal,
    context::{BlockEnv, CfgEnv, Evm, TxEnv},
    context_interface::result::{EVMError, InvalidTransaction},
    database::{AccountState, Cache, CacheDB},
    handler::{EthFrame, instructions::EthInstructions},
    interpreter::interpreter::EthInterpreter,
    primitives::hardfork::SpecId,
};

use crate::{
    db::{Account, StateDb, StateSnapshot, hash_slot},
    error::{BlockError, StateError, TxRejection},
    pending::PendingState,
    precompile::LatticePrecompiles,
    trie::{self, Merge},
};

/// The EVM rules blocks execute under (Prague: EIP-1559 fees, EIP-3529
/// refunds, EIP-3607, EIP-3860, EIP-7623 calldata floor, PUSH0, MCOPY,
/// transient storage).
pub const SPEC: SpecId = SpecId::PRAGUE;

/// What the block producer chooses; the rest of the header follows from the
/// parent and the execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockParams {
    /// Receives the priority fees.
    pub coinbase: Address,
    /// Block timestamp (seconds).
    pub timestamp: u64,
    /// Block gas limit.
    pub gas_limit: u64,
    /// `mix_hash` / PREVRANDAO value.
    pub prevrandao: B256,
    /// Header extra data.
    pub extra_data: Bytes,
}

impl BlockParams {
    /// Params with a zero PREVRANDAO and no extra data.
    pub fn new(coinbase: Address, timestamp: u64, gas_limit: u64) -> Self {
        Self {
            coinbase,
            timestamp,
            gas_limit,
            prevrandao: B256::ZERO,
            extra_data: Bytes::new(),
        }
    }
}

/// A transaction left out of the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Its position in the list given to [`execute_block`].
    pub index: usize,
    /// Its hash.
    pub hash: B256,
    /// Why.
    pub reason: TxRejection,
}

/// One account's change in a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChange {
    /// The account.
    pub address: Address,
    /// `keccak(address)`, its key in the state trie and the tables.
    pub hashed_address: B256,
    /// The account after the block; `None` if it was deleted (self-destructed
    /// or left empty, EIP-161).
    pub account: Option<Account>,
    /// Every stored slot is removed before `storage` is applied (a contract
    /// created at this address, or the account deleted).
    pub storage_wiped: bool,
    /// Written slots as `(keccak(slot), value)`, ascending; zero deletes.
    pub storage: Vec<(B256, U256)>,
}

/// Everything a block changes in the state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDiff {
    /// Changed accounts, ascending by hashed address.
    pub accounts: Vec<AccountChange>,
    /// New code, by hash.
    pub codes: Vec<(B256, Bytes)>,
}

/// The result of executing a block, ready for [`StateDb::commit`].
#[derive(Debug, Clone)]
pub struct ExecutedBlock {
    /// The sealed header (all roots filled in).
    pub header: Header,
    /// `keccak(rlp(header))`.
    pub hash: B256,
    /// Included transactions, in order.
    pub transactions: Vec<TxEnvelope>,
    /// Their recovered senders.
    pub senders: Vec<Address>,
    /// One receipt per included transaction.
    pub receipts: Vec<ReceiptEnvelope>,
    /// Transactions left out, and why.
    pub rejected: Vec<Rejected>,
    /// The state change.
    pub diff: StateDiff,
}

type BlockDb = CacheDB<StateSnapshot>;
type BlockCtx = Context<BlockEnv, TxEnv, CfgEnv, BlockDb, Journal<BlockDb>, ()>;
pub(crate) type BlockEvm = Evm<
    BlockCtx,
    (),
    EthInstructions<EthInterpreter, BlockCtx>,
    LatticePrecompiles,
    EthFrame<EthInterpreter>,
>;

pub(crate) fn build_evm(
    db: BlockDb,
    chain_id: u64,
    block: BlockEnv,
    precompiles: LatticePrecompiles,
) -> BlockEvm {
    let mut ctx: BlockCtx = Context::new(db, SPEC);
    ctx.cfg.chain_id = chain_id;
    ctx.block = block;
    Evm::new(
        ctx,
        EthInstructions::new_mainnet_with_spec(SPEC),
        precompiles,
    )
}

pub(crate) fn into_db(evm: BlockEvm) -> BlockDb {
    evm.ctx.journaled_state.database
}

/// [`execute_block_with`] with Ethereum's precompiles only (no Lattice ones).
pub fn execute_block(
    db: &StateDb,
    parent: &Header,
    txs: Vec<TxEnvelope>,
    params: &BlockParams,
) -> Result<ExecutedBlock, BlockError> {
    execute_block_with(db, parent, txs, params, &LatticePrecompiles::new())
}

/// Executes `txs` in order as the child of `parent`, which must be the
/// database's committed head. Invalid transactions are skipped and listed in
/// [`ExecutedBlock::rejected`]; nothing is written to `db`.
pub fn execute_block_with(
    db: &StateDb,
    parent: &Header,
    txs: Vec<TxEnvelope>,
    params: &BlockParams,
    precompiles: &LatticePrecompiles,
) -> Result<ExecutedBlock, BlockError> {
    let senders: Vec<Option<Address>> = txs.par_iter().map(|tx| tx.recover_signer().ok()).collect();
    execute_with_senders(db, None, parent, txs, senders, params, precompiles)
}

/// Like [`execute_block_with`] on the state after `pending` (executed,
/// uncommitted blocks descending from the committed head): `parent` must be
/// the last pending block, or the committed head when `pending` is empty.
/// Lets a validator build on or verify a child of a block consensus has not
/// finalized yet. Nothing is written to `db`.
pub fn execute_block_on(
    db: &StateDb,
    pending: &PendingState,
    parent: &Header,
    txs: Vec<TxEnvelope>,
    params: &BlockParams,
    precompiles: &LatticePrecompiles,
) -> Result<ExecutedBlock, BlockError> {
    let known = vec![None; txs.len()];
    execute_known_on(db, pending, parent, txs, known, params, precompiles)
}

/// [`execute_block_on`] where some senders are already known: `known[i]`, when
/// set, is trusted as the sender of `txs[i]` (a transaction pool recovered it
/// from the same signed bytes on arrival); the others are recovered here, in
/// parallel. A validator re-executing a proposal recovers only the
/// transactions it has not seen before. `known` shorter than `txs` leaves the
/// rest to recover.
pub fn execute_known_on(
    db: &StateDb,
    pending: &PendingState,
    parent: &Header,
    txs: Vec<TxEnvelope>,
    known: Vec<Option<Address>>,
    params: &BlockParams,
    precompiles: &LatticePrecompiles,
) -> Result<ExecutedBlock, BlockError> {
    let senders: Vec<Option<Address>> = txs
        .par_iter()
        .enumerate()
        .map(|(i, tx)| match known.get(i).copied().flatten() {
            Some(sender) => Some(sender),
            None => tx.recover_signer().ok(),
        })
        .collect();
    execute_with_senders(db, Some(pending), parent, txs, senders, params, precompiles)
}

/// [`execute_block_on`] for transactions whose senders were already
/// recovered (trusted, not re-checked).
pub fn execute_recovered_on(
    db: &StateDb,
    pending: &PendingState,
    parent: &Header,
    txs: Vec<Recovered<TxEnvelope>>,
    params: &BlockParams,
    precompiles: &LatticePrecompiles,
) -> Result<ExecutedBlock, BlockError> {
    let (txs, senders) = unzip_recovered(txs);
    execute_with_senders(db, Some(pending), parent, txs, senders, params, precompiles)
}

/// Like [`execute_block_with`] for transactions whose senders were already
/// recovered (a transaction pool recovers them on arrival); the senders are
/// trusted, not re-checked.
pub fn execute_recovered(
    db: &StateDb,
    parent: &Header,
    txs: Vec<Recovered<TxEnvelope>>,
    params: &BlockParams,
    precompiles: &LatticePrecompiles,
) -> Result<ExecutedBlock, BlockError> {
    let (txs, senders) = unzip_recovered(txs);
    execute_with_senders(db, None, parent, txs, senders, params, precompiles)
}

/// Transactions and their (trusted) senders, apart.
fn unzip_recovered(txs: Vec<Recovered<TxEnvelope>>) -> (Vec<TxEnvelope>, Vec<Option<Address>>) {
    txs.into_iter()
        .map(|tx| {
            let (tx, sender) = tx.into_parts();
            (tx, Some(sender))
        })
        .unzip()
}

fn execute_with_senders(
    db: &StateDb,
    pending: Option<&PendingState>,
    parent: &Header,
    txs: Vec<TxEnvelope>,
    senders: Vec<Option<Address>>,
    params: &BlockParams,
    precompiles: &LatticePrecompiles,
) -> Result<ExecutedBlock, BlockError> {
    let snapshot = match pending {
        Some(p) => db.snapshot_pending(p)?,
        None => db.snapshot()?,
    };
    let head = snapshot.head.ok_or(StateError::NotInitialized)?;
    let tip = match pending.and_then(PendingState::tip) {
        Some((_, hash)) => hash,
        None => head.hash,
    };
    let parent_hash = parent.hash_slow();
    if parent_hash != tip {
        return Err(BlockError::ParentNotHead {
            parent: parent_hash,
            head: tip,
        });
    }
    let chain_id = db.chain_id()?;
    let base_fee = parent
        .next_block_base_fee(BaseFeeParams::ethereum())
        .unwrap_or(alloy_eips::eip1559::INITIAL_BASE_FEE);
    let number = parent.number + 1;

    let block_env = BlockEnv {
        number: U256::from(number),
        beneficiary: params.coinbase,
        timestamp: U256::from(params.timestamp),
        gas_limit: params.gas_limit,
        basefee: base_fee,
        difficulty: U256::ZERO,
        prevrandao: Some(params.prevrandao),
        ..Default::default()
    };
    let mut evm = build_evm(
        CacheDB::new(snapshot),
        chain_id,
        block_env,
        precompiles.clone(),
    );

    let mut included = Vec::with_capacity(txs.len());
    let mut included_senders = Vec::with_capacity(txs.len());
    let mut receipts = Vec::with_capacity(txs.len());
    let mut rejected = Vec::new();
    let mut cumulative_gas = 0u64;
    let mut logs_bloom = Bloom::ZERO;

    for (index, (tx, sender)) in txs.into_iter().zip(senders).enumerate() {
        let available = params.gas_limit.saturating_sub(cumulative_gas);
        let checked = precheck(&tx, chain_id, base_fee, available)
            .and_then(|()| sender.ok_or(TxRejection::BadSignature));
        let sender = match checked {
            Ok(sender) => sender,
            Err(reason) => {
                rejected.push(Rejected {
                    index,
                    hash: *tx.tx_hash(),
                    reason,
                });
                continue;
            }
        };
        let result = match evm.transact_commit(tx_env(&tx, sender)) {
            Ok(result) => result,
            Err(EVMError::Transaction(e)) => {
                let reason = rejection(e, sender);
                rejected.push(Rejected {
                    index,
                    hash: *tx.tx_hash(),
                    reason,
                });
                continue;
            }
            Err(EVMError::Database(e)) => return Err(e.into()),
            Err(e) => return Err(BlockError::Evm(e.to_string())),
        };
        cumulative_gas += result.tx_gas_used();
        let receipt = Receipt {
            status: Eip658Value::Eip658(result.is_success()),
            cumulative_gas_used: cumulative_gas,
            logs: result.into_logs(),
        }
        .with_bloom();
        logs_bloom.accrue_bloom(&receipt.logs_bloom);
        receipts.push(match &tx {
            TxEnvelope::Legacy(_) => ReceiptEnvelope::Legacy(receipt),
            TxEnvelope::Eip2930(_) => ReceiptEnvelope::Eip2930(receipt),
            _ => ReceiptEnvelope::Eip1559(receipt),
        });
        included.push(tx);
        included_senders.push(sender);
    }

    let CacheDB {
        cache,
        db: snapshot,
    } = into_db(evm);
    let (diff, state_root) = build_diff(&snapshot, cache, |_| false)?;
    let header = Header {
        parent_hash,
        beneficiary: params.coinbase,
        state_root,
        transactions_root: calculate_transaction_root(&included),
        receipts_root: calculate_receipt_root(&receipts),
        logs_bloom,
        number,
        gas_limit: params.gas_limit,
        gas_used: cumulative_gas,
        timestamp: params.timestamp,
        extra_data: params.extra_data.clone(),
        mix_hash: params.prevrandao,
        base_fee_per_gas: Some(base_fee),
        ..post_merge_header()
    };
    Ok(ExecutedBlock {
        hash: header.hash_slow(),
        header,
        transactions: included,
        senders: included_senders,
        receipts,
        rejected,
        diff,
    })
}

/// Checks that need no state: type, chain id, fee cap, block gas.
fn precheck(
    tx: &TxEnvelope,
    chain_id: u64,
    base_fee: u64,
    available: u64,
) -> Result<(), TxRejection> {
    if matches!(tx, TxEnvelope::Eip4844(_) | TxEnvelope::Eip7702(_)) {
        return Err(TxRejection::UnsupportedType(tx.tx_type() as u8));
    }
    match tx.chain_id() {
        None => return Err(TxRejection::MissingChainId),
        Some(got) if got != chain_id => {
            return Err(TxRejection::WrongChainId {
                expected: chain_id,
                got,
            });
        }
        Some(_) => {}
    }
    let max_fee = tx.max_fee_per_gas();
    if tx
        .max_priority_fee_per_gas()
        .is_some_and(|tip| tip > max_fee)
    {
        return Err(TxRejection::PriorityFeeAboveFeeCap);
    }
    if max_fee < u128::from(base_fee) {
        return Err(TxRejection::FeeCapBelowBaseFee { max_fee, base_fee });
    }
    if tx.gas_limit() > available {
        return Err(TxRejection::BlockGasExhausted {
            gas_limit: tx.gas_limit(),
            available,
        });
    }
    Ok(())
}

fn rejection(e: InvalidTransaction, sender: Address) -> TxRejection {
    match e {
        InvalidTransaction::NonceTooLow { tx, state } => TxRejection::NonceTooLow { tx, state },
        InvalidTransaction::NonceTooHigh { tx, state } => TxRejection::NonceTooHigh { tx, state },
        InvalidTransaction::LackOfFundForMaxFee { fee, balance } => {
            TxRejection::InsufficientFunds {
                need: *fee,
                have: *balance,
            }
        }
        InvalidTransaction::CallGasCostMoreThanGasLimit {
            initial_gas,
            gas_limit,
        } => TxRejection::IntrinsicGasTooLow {
            intrinsic: initial_gas,
            gas_limit,
        },
        InvalidTransaction::GasFloorMoreThanGasLimit {
            gas_floor,
            gas_limit,
        } => TxRejection::IntrinsicGasTooLow {
            intrinsic: gas_floor,
            gas_limit,
        },
        InvalidTransaction::RejectCallerWithCode => TxRejection::SenderIsContract(sender),
        InvalidTransaction::PriorityFeeGreaterThanMaxFee => TxRejection::PriorityFeeAboveFeeCap,
        other => TxRejection::Invalid(other.to_string()),
    }
}

fn tx_env(tx: &TxEnvelope, sender: Address) -> TxEnv {
    TxEnv {
        tx_type: tx.tx_type() as u8,
        caller: sender,
        gas_limit: tx.gas_limit(),
        kind: tx.kind(),
        value: tx.value(),
        data: tx.input().clone(),
        nonce: tx.nonce(),
        chain_id: tx.chain_id(),
        gas_price: tx.max_fee_per_gas(),
        gas_priority_fee: tx.max_priority_fee_per_gas(),
        access_list: tx.access_list().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

/// Turns the overlay of executed changes into a [`StateDiff`] (sorted,
/// storage roots recomputed where storage changed) and the new state root.
/// Touched empty accounts are deleted (EIP-161) unless `keep_empty` says
/// otherwise (genesis keeps every `alloc` entry, as geth does).
pub(crate) fn build_diff(
    snapshot: &StateSnapshot,
    cache: Cache,
    keep_empty: impl Fn(&Address) -> bool,
) -> Result<(StateDiff, B256), StateError> {
    let Cache {
        accounts: cached,
        contracts,
        ..
    } = cache;
    let mut accounts = Vec::new();
    let mut codes = Vec::new();
    for (address, acc) in cached {
        if acc.account_state == AccountState::None {
            continue;
        }
        let hashed_address = keccak256(address);
        if acc.account_state == AccountState::NotExisting
            || (acc.info.is_empty() && !keep_empty(&address))
        {
            accounts.push(AccountChange {
                address,
                hashed_address,
                account: None,
                storage_wiped: true,
                storage: Vec::new(),
            });
            continue;
        }
        let wiped = acc.account_state == AccountState::StorageCleared;
        let previous = snapshot.account(hashed_address)?;
        let mut storage = Vec::with_capacity(acc.storage.len());
        for (slot, value) in acc.storage {
            let hashed_slot = hash_slot(slot);
            // Slots that were only read come back unchanged: drop them.
            if wiped
                || previous.is_none()
                || snapshot.storage(hashed_address, hashed_slot)? != value
            {
                storage.push((hashed_slot, value));
            }
        }
        storage.sort_unstable_by_key(|(k, _)| *k);
        let storage_root = if wiped || previous.is_none() {
            trie::storage_root(storage.iter().copied())
        } else if storage.is_empty() {
            previous.map_or(EMPTY_ROOT_HASH, |p| p.storage_root)
        } else {
            let merged: Vec<(B256, U256)> = Merge::new(
                snapshot.storage_slots(hashed_address)?,
                storage.iter().map(|(k, v)| (*k, Some(*v))),
            )
            .collect::<Result<_, _>>()?;
            trie::storage_root(merged)
        };
        let code_hash = if acc.info.code_hash.is_zero() {
            KECCAK_EMPTY
        } else {
            acc.info.code_hash
        };
        if code_hash != KECCAK_EMPTY && previous.is_none_or(|p| p.code_hash != code_hash) {
            let bytes = contracts
                .get(&code_hash)
                .map(|c| c.original_bytes())
                .or_else(|| acc.info.code.as_ref().map(|c| c.original_bytes()))
                .ok_or_else(|| {
                    StateError::Corrupt(format!("code {code_hash} not in the overlay"))
                })?;
            codes.push((code_hash, bytes));
        }
        accounts.push(AccountChange {
            address,
            hashed_address,
            account: Some(Account {
                nonce: acc.info.nonce,
                balance: acc.info.balance,
                code_hash,
                storage_root,
            }),
            storage_wiped: wiped,
            storage,
        });
    }
    accounts.sort_unstable_by_key(|c| c.hashed_address);
    codes.sort_unstable_by_key(|(h, _)| *h);
    codes.dedup_by_key(|(h, _)| *h);

    let all: Vec<(B256, Account)> = Merge::new(
        snapshot.accounts()?,
        accounts.iter().map(|c| (c.hashed_address, c.account)),
    )
    .collect::<Result<_, _>>()?;
    let state_root = trie::state_root(all);
    Ok((StateDiff { accounts, codes }, state_root))
}

/// The header fields every block of this chain has fixed: proof-of-stake
/// (no difficulty or nonce), no withdrawals, no blobs, no beacon root and no
/// execution requests (there is no consensus layer to feed them).
pub(crate) fn post_merge_header() -> Header {
    Header {
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        difficulty: U256::ZERO,
        nonce: B64::ZERO,
        withdrawals_root: Some(EMPTY_ROOT_HASH),
        blob_gas_used: Some(0),
        excess_blob_gas: Some(0),
        parent_beacon_block_root: Some(B256::ZERO),
        requests_hash: Some(EMPTY_REQUESTS_HASH),
        ..Default::default()
    }
}
