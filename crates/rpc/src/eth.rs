//! The `web3_*`, `net_*` and `eth_*` methods, one plain function each.

use alloy_consensus::Transaction as _;
use alloy_eips::{BlockId, BlockNumberOrTag, eip1559::BaseFeeParams};
use alloy_primitives::{Address, B256, Bytes, U64, U256, keccak256};
use alloy_rpc_types_eth::{
    Block, FeeHistory, Filter, FilterBlockOption, Index, Log as RpcLog, Transaction,
    TransactionReceipt, TransactionRequest, state::StateOverride,
};
use lattice_evm::{CallError, CallOutcome, CallRequest, StateOverrides};
use serde_json::value::RawValue;

use crate::{
    convert,
    error::{
        OrInternal, RpcResult, internal, invalid_params, limit_exceeded, reverted, server_error,
    },
    params::Args,
    server::Ctx,
};

/// What `eth_maxPriorityFeePerGas` suggests: 1 gwei.
const SUGGESTED_TIP: u64 = 1_000_000_000;
/// Most blocks one `eth_feeHistory` covers.
const MAX_FEE_HISTORY_BLOCKS: u64 = 1024;

// ---- blocks and state: where a query points ---------------------------------

fn head_number(ctx: &Ctx) -> RpcResult<u64> {
    Ok(ctx.node.head().or_internal()?.number)
}

/// A block number for `tag`; `None` past the head. In dev mode finality is
/// immediate, so `safe` and `finalized` are the head; `pending` is the head
/// too (there is no pending block).
fn resolve_tag(ctx: &Ctx, tag: BlockNumberOrTag) -> RpcResult<Option<u64>> {
    let head = head_number(ctx)?;
    Ok(match tag {
        BlockNumberOrTag::Latest
        | BlockNumberOrTag::Pending
        | BlockNumberOrTag::Safe
        | BlockNumberOrTag::Finalized => Some(head),
        BlockNumberOrTag::Earliest => Some(0),
        BlockNumberOrTag::Number(n) => (n <= head).then_some(n),
    })
}

fn resolve_block_id(ctx: &Ctx, id: BlockId) -> RpcResult<Option<u64>> {
    match id {
        BlockId::Hash(h) => ctx.node.block_number_of(h.block_hash).or_internal(),
        BlockId::Number(tag) => resolve_tag(ctx, tag),
    }
}

/// Which state a query reads: `None` for the head (latest, pending, safe,
/// finalized, or no block given; calls then run as in the next block),
/// `Some(n)` for the state after block `n` (every block records what it
/// overwrote, so any height back to genesis is available).
fn state_block(ctx: &Ctx, id: Option<BlockId>) -> RpcResult<Option<u64>> {
    match id {
        None
        | Some(BlockId::Number(
            BlockNumberOrTag::Latest
            | BlockNumberOrTag::Pending
            | BlockNumberOrTag::Safe
            | BlockNumberOrTag::Finalized,
        )) => Ok(None),
        Some(id) => match resolve_block_id(ctx, id)? {
            Some(n) => Ok(Some(n)),
            None => Err(server_error("header not found")),
        },
    }
}

/// [`state_block`] resolved to a number (the head for `None`).
fn state_number(ctx: &Ctx, id: Option<BlockId>) -> RpcResult<u64> {
    match state_block(ctx, id)? {
        Some(n) => Ok(n),
        None => head_number(ctx),
    }
}

// ---- web3 / net -------------------------------------------------------------

pub(crate) fn client_version(_: &Ctx, _: Args) -> RpcResult<String> {
    Ok(concat!("lattice/", env!("CARGO_PKG_VERSION")).to_owned())
}

pub(crate) fn sha3(_: &Ctx, args: Args) -> RpcResult<B256> {
    Ok(keccak256(args.req::<Bytes>(0)?))
}

pub(crate) fn net_version(ctx: &Ctx, _: Args) -> RpcResult<String> {
    Ok(ctx.node.chain_id().or_internal()?.to_string())
}

pub(crate) fn net_listening(_: &Ctx, _: Args) -> RpcResult<bool> {
    Ok(true)
}

pub(crate) fn net_peer_count(_: &Ctx, _: Args) -> RpcResult<U64> {
    Ok(U64::ZERO)
}

// ---- chain ------------------------------------------------------------------

pub(crate) fn chain_id(ctx: &Ctx, _: Args) -> RpcResult<U64> {
    Ok(U64::from(ctx.node.chain_id().or_internal()?))
}

pub(crate) fn block_number(ctx: &Ctx, _: Args) -> RpcResult<U64> {
    Ok(U64::from(head_number(ctx)?))
}

/// `false`, or while a consensus node catches up `{startingBlock, currentBlock,
/// highestBlock}`.
pub(crate) fn syncing(ctx: &Ctx, _: Args) -> RpcResult<serde_json::Value> {
    Ok(match ctx.node.syncing() {
        None => serde_json::Value::Bool(false),
        Some(s) => serde_json::json!({
            "startingBlock": format!("{:#x}", s.starting),
            "currentBlock": format!("{:#x}", s.current),
            "highestBlock": format!("{:#x}", s.highest),
        }),
    })
}

pub(crate) fn accounts(_: &Ctx, _: Args) -> RpcResult<Vec<Address>> {
    Ok(Vec::new())
}

pub(crate) fn coinbase(ctx: &Ctx, _: Args) -> RpcResult<Address> {
    Ok(ctx.node.config().coinbase)
}

pub(crate) fn gas_price(ctx: &Ctx, _: Args) -> RpcResult<U256> {
    let base_fee = ctx.node.next_base_fee().or_internal()?;
    Ok(U256::from(base_fee) + U256::from(SUGGESTED_TIP))
}

pub(crate) fn max_priority_fee(_: &Ctx, _: Args) -> RpcResult<U256> {
    Ok(U256::from(SUGGESTED_TIP))
}

pub(crate) fn fee_history(ctx: &Ctx, args: Args) -> RpcResult<FeeHistory> {
    let count = args.req_u64_flexible(0)?.min(MAX_FEE_HISTORY_BLOCKS);
    let newest: BlockNumberOrTag = args.req(1)?;
    let percentiles: Option<Vec<f64>> = args.opt(2)?;
    if let Some(p) = &percentiles {
        for (i, v) in p.iter().enumerate() {
            if !(0.0..=100.0).contains(v) {
                return Err(invalid_params(format!(
                    "invalid reward percentile: {v} (must be between 0 and 100)"
                )));
            }
            if i > 0 && *v < p[i - 1] {
                return Err(invalid_params(format!(
                    "invalid reward percentiles: #{} ({}) > #{i} ({v})",
                    i - 1,
                    p[i - 1]
                )));
            }
        }
    }
    if count == 0 {
        return Ok(FeeHistory::default());
    }
    let head = head_number(ctx)?;
    let newest = match resolve_tag(ctx, newest)? {
        Some(n) => n,
        None => {
            return Err(server_error(format!(
                "request beyond head block: requested {}, head {head}",
                newest.as_number().unwrap_or_default()
            )));
        }
    };
    let oldest = newest + 1 - count.min(newest + 1);
    let mut history = FeeHistory {
        oldest_block: oldest,
        reward: percentiles.as_ref().map(|_| Vec::new()),
        ..Default::default()
    };
    let mut last = None;
    for n in oldest..=newest {
        let header = ctx
            .node
            .header(n)
            .or_internal()?
            .ok_or_else(|| internal(format!("block {n} has no header")))?;
        let base_fee = header.base_fee_per_gas.unwrap_or_default();
        history.base_fee_per_gas.push(u128::from(base_fee));
        history.gas_used_ratio.push(if header.gas_limit == 0 {
            0.0
        } else {
            header.gas_used as f64 / header.gas_limit as f64
        });
        if let (Some(p), Some(rewards)) = (&percentiles, history.reward.as_mut()) {
            rewards.push(block_rewards(ctx, n, header.gas_used, base_fee, p)?);
        }
        last = Some(header);
    }
    let next = last
        .and_then(|h| h.next_block_base_fee(BaseFeeParams::ethereum()))
        .unwrap_or_default();
    history.base_fee_per_gas.push(u128::from(next));
    Ok(history)
}

/// geth's rewards: the block's transactions sorted by effective tip, and for
/// each percentile the tip of the transaction in which that fraction of the
/// block's gas is reached.
fn block_rewards(
    ctx: &Ctx,
    number: u64,
    block_gas_used: u64,
    base_fee: u64,
    percentiles: &[f64],
) -> RpcResult<Vec<u128>> {
    let receipts = ctx
        .node
        .block_receipts(number)
        .or_internal()?
        .unwrap_or_default();
    if receipts.is_empty() {
        return Ok(vec![0; percentiles.len()]);
    }
    let mut txs: Vec<(u128, u64)> = receipts
        .iter()
        .map(|r| {
            let tip = r.tx.tx.effective_tip_per_gas(base_fee).unwrap_or_default();
            (tip, r.gas_used)
        })
        .collect();
    txs.sort_by_key(|(tip, _)| *tip);
    let mut out = Vec::with_capacity(percentiles.len());
    let mut index = 0;
    let mut sum = txs[0].1;
    for p in percentiles {
        let threshold = (block_gas_used as f64 * p / 100.0) as u64;
        while sum < threshold && index < txs.len() - 1 {
            index += 1;
            sum += txs[index].1;
        }
        out.push(txs[index].0);
    }
    Ok(out)
}

// ---- blocks -----------------------------------------------------------------

fn block_at(ctx: &Ctx, number: Option<u64>, full: bool) -> RpcResult<Option<Block>> {
    let Some(n) = number else { return Ok(None) };
    Ok(ctx
        .node
        .block_by_number(n)
        .or_internal()?
        .map(|b| convert::block(b, full)))
}

pub(crate) fn block_by_number(ctx: &Ctx, args: Args) -> RpcResult<Option<Block>> {
    let number = resolve_tag(ctx, args.req(0)?)?;
    block_at(ctx, number, args.opt(1)?.unwrap_or(false))
}

pub(crate) fn block_by_hash(ctx: &Ctx, args: Args) -> RpcResult<Option<Block>> {
    let full = args.opt(1)?.unwrap_or(false);
    Ok(ctx
        .node
        .block_by_hash(args.req(0)?)
        .or_internal()?
        .map(|b| convert::block(b, full)))
}

fn tx_count(ctx: &Ctx, number: Option<u64>) -> RpcResult<Option<U64>> {
    let Some(n) = number else { return Ok(None) };
    Ok(ctx
        .node
        .block_by_number(n)
        .or_internal()?
        .map(|b| U64::from(b.transactions.len())))
}

pub(crate) fn tx_count_by_number(ctx: &Ctx, args: Args) -> RpcResult<Option<U64>> {
    let number = resolve_tag(ctx, args.req(0)?)?;
    tx_count(ctx, number)
}

pub(crate) fn tx_count_by_hash(ctx: &Ctx, args: Args) -> RpcResult<Option<U64>> {
    let number = ctx.node.block_number_of(args.req(0)?).or_internal()?;
    tx_count(ctx, number)
}

fn tx_at(ctx: &Ctx, number: Option<u64>, index: Index) -> RpcResult<Option<Transaction>> {
    let Some(n) = number else { return Ok(None) };
    let Some(b) = ctx.node.block_by_number(n).or_internal()? else {
        return Ok(None);
    };
    let i = usize::from(index);
    let (Some(tx), Some(from)) = (b.transactions.get(i), b.senders.get(i)) else {
        return Ok(None);
    };
    Ok(Some(convert::included_tx(
        tx.clone(),
        *from,
        &b.header,
        b.hash,
        i as u64,
    )))
}

pub(crate) fn tx_by_number_and_index(ctx: &Ctx, args: Args) -> RpcResult<Option<Transaction>> {
    let number = resolve_tag(ctx, args.req(0)?)?;
    tx_at(ctx, number, args.req(1)?)
}

pub(crate) fn tx_by_hash_and_index(ctx: &Ctx, args: Args) -> RpcResult<Option<Transaction>> {
    let number = ctx.node.block_number_of(args.req(0)?).or_internal()?;
    tx_at(ctx, number, args.req(1)?)
}

pub(crate) fn block_receipts(ctx: &Ctx, args: Args) -> RpcResult<Option<Vec<TransactionReceipt>>> {
    let Some(n) = resolve_block_id(ctx, args.req(0)?)? else {
        return Ok(None);
    };
    let Some(header) = ctx.node.header(n).or_internal()? else {
        return Ok(None);
    };
    let Some(receipts) = ctx.node.block_receipts(n).or_internal()? else {
        return Ok(None);
    };
    Ok(Some(
        receipts
            .into_iter()
            .map(|r| convert::receipt(r, header.timestamp))
            .collect(),
    ))
}

fn uncle_count(ctx: &Ctx, number: Option<u64>) -> RpcResult<Option<U64>> {
    let Some(n) = number else { return Ok(None) };
    Ok(ctx.node.header(n).or_internal()?.map(|_| U64::ZERO))
}

pub(crate) fn uncle_count_by_number(ctx: &Ctx, args: Args) -> RpcResult<Option<U64>> {
    let number = resolve_tag(ctx, args.req(0)?)?;
    uncle_count(ctx, number)
}

pub(crate) fn uncle_count_by_hash(ctx: &Ctx, args: Args) -> RpcResult<Option<U64>> {
    let number = ctx.node.block_number_of(args.req(0)?).or_internal()?;
    uncle_count(ctx, number)
}

/// There are no uncles.
pub(crate) fn uncle(_: &Ctx, args: Args) -> RpcResult<Option<Block>> {
    args.req::<serde_json::Value>(0)?;
    args.req::<Index>(1)?;
    Ok(None)
}

// ---- state ------------------------------------------------------------------

pub(crate) fn balance(ctx: &Ctx, args: Args) -> RpcResult<U256> {
    let address: Address = args.req(0)?;
    let n = state_number(ctx, args.opt(1)?)?;
    Ok(ctx.node.account_at(address, n).or_internal()?.balance)
}

pub(crate) fn transaction_count(ctx: &Ctx, args: Args) -> RpcResult<U64> {
    let address: Address = args.req(0)?;
    let block: Option<BlockId> = args.opt(1)?;
    if block == Some(BlockId::Number(BlockNumberOrTag::Pending)) {
        return Ok(U64::from(ctx.node.pending_nonce(address).or_internal()?));
    }
    let n = state_number(ctx, block)?;
    Ok(U64::from(
        ctx.node.account_at(address, n).or_internal()?.nonce,
    ))
}

pub(crate) fn code(ctx: &Ctx, args: Args) -> RpcResult<Bytes> {
    let address: Address = args.req(0)?;
    let n = state_number(ctx, args.opt(1)?)?;
    ctx.node.code_at(address, n).or_internal()
}

pub(crate) fn storage_at(ctx: &Ctx, args: Args) -> RpcResult<B256> {
    let address: Address = args.req(0)?;
    let slot: U256 = args.req(1)?;
    let n = state_number(ctx, args.opt(2)?)?;
    Ok(ctx.node.storage_at(address, slot, n).or_internal()?.into())
}

/// The request, block and overrides of `eth_call` / `eth_estimateGas`.
fn call_args(ctx: &Ctx, args: &Args) -> RpcResult<(CallRequest, Option<u64>, StateOverrides)> {
    let req = convert::call_request(args.req::<TransactionRequest>(0)?)?;
    let block = state_block(ctx, args.opt(1)?)?;
    let overrides = match args.opt::<StateOverride>(2)? {
        Some(o) => convert::state_overrides(o)?,
        None => StateOverrides::new(),
    };
    Ok((req, block, overrides))
}

fn call_error(e: CallError) -> jsonrpsee::types::ErrorObjectOwned {
    match e {
        CallError::Reverted { reason, data } => reverted(reason.as_deref(), &data),
        CallError::Invalid(msg) | CallError::Halted(msg) => server_error(msg),
        e @ (CallError::State(_) | CallError::Evm(_)) => internal(e),
    }
}

/// `bytes` as a JSON string `"0x…"`, written once: a paging view returns ~100 KB,
/// and serializing that as a `String` made serde scan every hex digit for escapes.
fn hex_json(bytes: &[u8]) -> RpcResult<Box<RawValue>> {
    let mut s = String::with_capacity(bytes.len() * 2 + 4);
    s.push_str("\"0x");
    s.push_str(&alloy_primitives::hex::encode(bytes));
    s.push('"');
    RawValue::from_string(s).map_err(server_error)
}

pub(crate) fn call(ctx: &Ctx, args: Args) -> RpcResult<Box<RawValue>> {
    let (req, block, overrides) = call_args(ctx, &args)?;
    match ctx
        .node
        .call_at(block, &req, &overrides)
        .map_err(call_error)?
    {
        CallOutcome::Success { output, .. } => hex_json(&output),
        CallOutcome::Revert { output, .. } => {
            let reason = lattice_evm::decode_revert_reason(&output);
            Err(reverted(reason.as_deref(), &output))
        }
        CallOutcome::Halt { reason, .. } => Err(server_error(reason)),
    }
}

pub(crate) fn estimate_gas(ctx: &Ctx, args: Args) -> RpcResult<U64> {
    let (req, block, overrides) = call_args(ctx, &args)?;
    ctx.node
        .estimate_gas_at(block, &req, &overrides)
        .map(U64::from)
        .map_err(call_error)
}

// ---- transactions -----------------------------------------------------------

pub(crate) fn send_raw_transaction(ctx: &Ctx, args: Args) -> RpcResult<B256> {
    let raw: Bytes = args.req(0)?;
    let hash = ctx.node.submit_raw(&raw).map_err(server_error)?;
    // No pending-transaction listener is fine.
    let _ = ctx.pending_txs.send(hash);
    Ok(hash)
}

pub(crate) fn transaction_by_hash(ctx: &Ctx, args: Args) -> RpcResult<Option<Transaction>> {
    let hash: B256 = args.req(0)?;
    if let Some(rec) = ctx.node.transaction(hash).or_internal()? {
        let Some(header) = ctx.node.header(rec.block_number).or_internal()? else {
            return Err(internal(format!(
                "block {} of transaction {hash} has no header",
                rec.block_number
            )));
        };
        return Ok(Some(convert::included_tx(
            rec.tx,
            rec.sender,
            &header,
            rec.block_hash,
            rec.index,
        )));
    }
    Ok(ctx.node.pending_transaction(hash).map(convert::pending_tx))
}

pub(crate) fn transaction_receipt(ctx: &Ctx, args: Args) -> RpcResult<Option<TransactionReceipt>> {
    let hash: B256 = args.req(0)?;
    let Some(r) = ctx.node.receipt(hash).or_internal()? else {
        return Ok(None);
    };
    let timestamp = ctx
        .node
        .header(r.tx.block_number)
        .or_internal()?
        .map(|h| h.timestamp)
        .unwrap_or_default();
    Ok(Some(convert::receipt(r, timestamp)))
}

// ---- logs -------------------------------------------------------------------

/// The block range `filter` covers, clamped to the head; `None` when it lies
/// wholly past the head.
pub(crate) fn filter_range(ctx: &Ctx, filter: &Filter) -> RpcResult<Option<(u64, u64)>> {
    match filter.block_option {
        FilterBlockOption::AtBlockHash(hash) => {
            match ctx.node.block_number_of(hash).or_internal()? {
                Some(n) => Ok(Some((n, n))),
                None => Err(server_error("unknown block")),
            }
        }
        FilterBlockOption::Range {
            from_block,
            to_block,
        } => {
            let head = head_number(ctx)?;
            let number = |tag: Option<BlockNumberOrTag>| match tag {
                None
                | Some(
                    BlockNumberOrTag::Latest
                    | BlockNumberOrTag::Pending
                    | BlockNumberOrTag::Safe
                    | BlockNumberOrTag::Finalized,
                ) => head,
                Some(BlockNumberOrTag::Earliest) => 0,
                Some(BlockNumberOrTag::Number(n)) => n,
            };
            let (from, to) = (number(from_block), number(to_block));
            if from > to {
                return Err(invalid_params("invalid block range params"));
            }
            if from > head {
                return Ok(None);
            }
            let to = to.min(head);
            let max = ctx.config.max_log_blocks;
            if to - from >= max {
                return Err(limit_exceeded(format!(
                    "query exceeds max block range {max}"
                )));
            }
            Ok(Some((from, to)))
        }
    }
}

/// Logs of `filter` over `[from, to]`, at most `max_logs`.
pub(crate) fn logs_in(ctx: &Ctx, filter: &Filter, from: u64, to: u64) -> RpcResult<Vec<RpcLog>> {
    let lf = convert::log_filter(filter, from, to);
    match ctx.node.logs(&lf, ctx.config.max_logs).or_internal()? {
        Ok(logs) => Ok(logs.iter().map(convert::log).collect()),
        Err(limit) => Err(limit_exceeded(format!(
            "query returned more than {limit} results"
        ))),
    }
}

pub(crate) fn logs_for(ctx: &Ctx, filter: &Filter) -> RpcResult<Vec<RpcLog>> {
    match filter_range(ctx, filter)? {
        Some((from, to)) => logs_in(ctx, filter, from, to),
        None => Ok(Vec::new()),
    }
}

pub(crate) fn logs(ctx: &Ctx, args: Args) -> RpcResult<Vec<RpcLog>> {
    logs_for(ctx, &args.req(0)?)
}
