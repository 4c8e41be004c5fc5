//! Chain records → `alloy-rpc-types-eth` response types, and request types →
//! what the node takes.

use alloy_consensus::{Header, Transaction as _, TxEnvelope, transaction::Recovered};
use alloy_primitives::{Address, B256, TxKind, U256};
use alloy_rpc_types_eth::{
    Block, BlockTransactions, Filter, Header as RpcHeader, Log as RpcLog, Transaction,
    TransactionReceipt, TransactionRequest, Withdrawals, state::StateOverride,
};
use lattice_chain::{BlockRecord, LogFilter, LogRecord, PendingTx, ReceiptRecord};
use lattice_evm::{AccountOverride, CallRequest, StateOverrides};

use crate::error::{RpcResult, invalid_params, server_error};

/// A header as `newHeads` and blocks carry it.
pub(crate) fn header(header: Header, hash: B256, size: Option<u64>) -> RpcHeader {
    RpcHeader {
        hash,
        inner: header,
        total_difficulty: size.map(|_| U256::ZERO),
        size: size.map(U256::from),
    }
}

/// RLP size of the block as it would go over the wire: header, transactions,
/// no uncles, and (post-Shanghai) an empty withdrawals list.
fn block_size(header: &Header, transactions: &[TxEnvelope]) -> u64 {
    use alloy_rlp::Encodable;
    let empty_list = 1;
    let txs_payload: usize = transactions.iter().map(Encodable::length).sum();
    let mut payload =
        header.length() + alloy_rlp::length_of_length(txs_payload) + txs_payload + empty_list;
    if header.withdrawals_root.is_some() {
        payload += empty_list;
    }
    (alloy_rlp::length_of_length(payload) + payload) as u64
}

/// A block, with full transaction objects or their hashes.
pub(crate) fn block(b: BlockRecord, full: bool) -> Block {
    let size = block_size(&b.header, &b.transactions);
    let transactions = if full {
        BlockTransactions::Full(
            b.transactions
                .into_iter()
                .zip(b.senders)
                .enumerate()
                .map(|(i, (tx, from))| included_tx(tx, from, &b.header, b.hash, i as u64))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(b.transactions.iter().map(|t| *t.tx_hash()).collect())
    };
    let withdrawals = b
        .header
        .withdrawals_root
        .is_some()
        .then(|| Withdrawals::new(Vec::new()));
    Block {
        header: header(b.header, b.hash, Some(size)),
        uncles: Vec::new(),
        transactions,
        withdrawals,
    }
}

/// An included transaction with its position and the price it paid.
pub(crate) fn included_tx(
    tx: TxEnvelope,
    from: Address,
    block: &Header,
    block_hash: B256,
    index: u64,
) -> Transaction {
    let effective = tx.effective_gas_price(block.base_fee_per_gas);
    Transaction {
        inner: Recovered::new_unchecked(tx, from),
        block_hash: Some(block_hash),
        block_number: Some(block.number),
        transaction_index: Some(index),
        effective_gas_price: Some(effective),
        block_timestamp: Some(block.timestamp),
    }
}

/// A pooled transaction: no block fields; `gasPrice` is the fee cap, as geth
/// reports it.
pub(crate) fn pending_tx(p: PendingTx) -> Transaction {
    let fee_cap = p.tx.max_fee_per_gas();
    Transaction {
        inner: Recovered::new_unchecked(p.tx, p.sender),
        block_hash: None,
        block_number: None,
        transaction_index: None,
        effective_gas_price: Some(fee_cap),
        block_timestamp: None,
    }
}

/// A log with its position in the chain.
pub(crate) fn log(l: &LogRecord) -> RpcLog {
    RpcLog {
        inner: l.log.clone(),
        block_hash: Some(l.block_hash),
        block_number: Some(l.block_number),
        block_timestamp: Some(l.block_timestamp),
        transaction_hash: Some(l.tx_hash),
        transaction_index: Some(l.tx_index),
        log_index: Some(l.log_index),
        removed: false,
    }
}

/// A receipt; `block_timestamp` is that of the including block.
pub(crate) fn receipt(r: ReceiptRecord, block_timestamp: u64) -> TransactionReceipt {
    let tx = &r.tx;
    let mut log_index = r.first_log_index;
    let inner = r.receipt.map_logs(|l| {
        let out = RpcLog {
            inner: l,
            block_hash: Some(tx.block_hash),
            block_number: Some(tx.block_number),
            block_timestamp: Some(block_timestamp),
            transaction_hash: Some(*tx.tx.tx_hash()),
            transaction_index: Some(tx.index),
            log_index: Some(log_index),
            removed: false,
        };
        log_index += 1;
        out
    });
    TransactionReceipt {
        inner,
        transaction_hash: *tx.tx.tx_hash(),
        transaction_index: Some(tx.index),
        block_hash: Some(tx.block_hash),
        block_number: Some(tx.block_number),
        gas_used: r.gas_used,
        effective_gas_price: tx.effective_gas_price(),
        blob_gas_used: None,
        blob_gas_price: None,
        from: tx.sender,
        to: tx.tx.to(),
        contract_address: r.contract_address,
    }
}

/// The address and topic criteria of `filter` over `[from, to]`.
pub(crate) fn log_filter(filter: &Filter, from: u64, to: u64) -> LogFilter {
    let topics = std::array::from_fn(|i| {
        let set = &filter.topics[i];
        (!set.is_empty()).then(|| set.iter().copied().collect())
    });
    LogFilter {
        from,
        to,
        addresses: filter.address.iter().copied().collect(),
        topics,
    }
}

/// `eth_call` / `eth_estimateGas` parameters → the node's request.
pub(crate) fn call_request(req: TransactionRequest) -> RpcResult<CallRequest> {
    if req.gas_price.is_some()
        && (req.max_fee_per_gas.is_some() || req.max_priority_fee_per_gas.is_some())
    {
        return Err(server_error(
            "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified",
        ));
    }
    let input = req.input.try_into_unique_input().map_err(|_| {
        invalid_params(
            "both \"data\" and \"input\" are set and not equal. Please use \"input\" to pass transaction call data",
        )
    })?;
    Ok(CallRequest {
        from: req.from,
        to: match req.to {
            Some(TxKind::Call(to)) => Some(to),
            Some(TxKind::Create) | None => None,
        },
        gas: req.gas,
        gas_price: req.gas_price,
        max_fee_per_gas: req.max_fee_per_gas,
        max_priority_fee_per_gas: req.max_priority_fee_per_gas,
        value: req.value,
        input: input.unwrap_or_default(),
        nonce: req.nonce,
        access_list: req.access_list,
    })
}

/// geth's state override set → the node's.
pub(crate) fn state_overrides(overrides: StateOverride) -> RpcResult<StateOverrides> {
    overrides
        .into_iter()
        .map(|(address, o)| {
            if o.state.is_some() && o.state_diff.is_some() {
                return Err(invalid_params(format!(
                    "account {address} has both 'state' and 'stateDiff'"
                )));
            }
            if o.move_precompile_to.is_some() {
                return Err(invalid_params("movePrecompileToAddress is not supported"));
            }
            Ok((
                address,
                AccountOverride {
                    balance: o.balance,
                    nonce: o.nonce,
                    code: o.code,
                    state: o.state.map(|s| s.into_iter().collect()),
                    state_diff: o.state_diff.map(|s| s.into_iter().collect()),
                },
            ))
        })
        .collect()
}
