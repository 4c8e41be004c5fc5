//! Chain tables (bodies, senders, receipts, lookups by hash, the log index)
//! in the state database's redb file, written in the same transaction as the
//! block's state.

use alloy_consensus::{Header, ReceiptEnvelope, Transaction, TxEnvelope};
use alloy_eips::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Log};
use lattice_evm::{
    ExecutedBlock, StateDb, StateError,
    redb::{ReadableDatabase, TableDefinition, WriteTransaction},
};

use crate::error::ChainError;

/// number (u64 BE) ‖ index (u32 BE) → sender (20 bytes) ‖ EIP-2718 transaction.
const TXS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chain_txs");
/// number ‖ index → gas used (u64 BE) ‖ index of its first log in the block
/// (u64 BE) ‖ EIP-2718 receipt.
const RECEIPTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chain_receipts");
/// block hash → number.
const NUMBERS: TableDefinition<&[u8], u64> = TableDefinition::new("chain_block_numbers");
/// transaction hash → number (u64 BE) ‖ index (u32 BE).
const TX_LOOKUP: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chain_tx_lookup");
/// kind ‖ address or topic ‖ number (u64 BE) → (): which blocks have a log
/// from an address (kind 0) or with a topic at position p (kind 1 + p).
const LOG_INDEX: TableDefinition<&[u8], ()> = TableDefinition::new("chain_log_index");

/// A block as stored: header, hash, transactions and their senders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    /// The header.
    pub header: Header,
    /// Its hash.
    pub hash: B256,
    /// Transactions in order.
    pub transactions: Vec<TxEnvelope>,
    /// Their senders.
    pub senders: Vec<Address>,
}

/// Where a transaction sits in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRecord {
    /// The signed transaction.
    pub tx: TxEnvelope,
    /// Its sender.
    pub sender: Address,
    /// Block it is in.
    pub block_number: u64,
    /// That block's hash.
    pub block_hash: B256,
    /// Index in the block.
    pub index: u64,
    /// The block's base fee.
    pub base_fee: u64,
}

impl TxRecord {
    /// Price per gas actually paid: `min(max_fee, base_fee + tip)`.
    pub fn effective_gas_price(&self) -> u128 {
        self.tx.effective_gas_price(Some(self.base_fee))
    }
}

/// A transaction's receipt with everything `eth_getTransactionReceipt`
/// reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// The transaction and its position.
    pub tx: TxRecord,
    /// The consensus receipt (status, cumulative gas, logs, bloom).
    pub receipt: ReceiptEnvelope,
    /// Gas this transaction used.
    pub gas_used: u64,
    /// Address of the created contract, for a creation.
    pub contract_address: Option<Address>,
    /// Block-wide index of its first log.
    pub first_log_index: u64,
}

/// One log with its position in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The log.
    pub log: Log,
    /// Block number.
    pub block_number: u64,
    /// Block hash.
    pub block_hash: B256,
    /// Block timestamp.
    pub block_timestamp: u64,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Transaction index in the block.
    pub tx_index: u64,
    /// Log index in the block.
    pub log_index: u64,
}

/// What `eth_getLogs` asks for. An empty `addresses` or a `None` topic
/// position matches anything; within a position any listed topic matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// First block (inclusive).
    pub from: u64,
    /// Last block (inclusive).
    pub to: u64,
    /// Emitting contracts.
    pub addresses: Vec<Address>,
    /// Topics by position.
    pub topics: [Option<Vec<B256>>; 4],
}

impl LogFilter {
    /// Whether `log` passes the address and topic criteria.
    pub fn matches(&self, log: &Log) -> bool {
        if !self.addresses.is_empty() && !self.addresses.contains(&log.address) {
            return false;
        }
        let topics = log.topics();
        self.topics.iter().enumerate().all(|(i, want)| match want {
            None => true,
            Some(list) if list.is_empty() => true,
            Some(list) => topics.get(i).is_some_and(|t| list.contains(t)),
        })
    }
}

pub(crate) fn create_tables(db: &StateDb) -> Result<(), ChainError> {
    let tx = db.database().begin_write()?;
    tx.open_table(TXS)?;
    tx.open_table(RECEIPTS)?;
    tx.open_table(NUMBERS)?;
    tx.open_table(TX_LOOKUP)?;
    tx.open_table(LOG_INDEX)?;
    tx.commit()?;
    Ok(())
}

fn db_err(e: impl Into<lattice_evm::redb::Error>) -> StateError {
    StateError::Db(e.into())
}

fn log_key(kind: u8, id: &[u8], number: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len() + 8);
    key.push(kind);
    key.extend_from_slice(id);
    key.extend_from_slice(&number.to_be_bytes());
    key
}

fn position(number: u64, index: usize) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&number.to_be_bytes());
    key[8..].copy_from_slice(&(index as u32).to_be_bytes());
    key
}

fn block_positions(number: u64) -> ([u8; 12], [u8; 12]) {
    let mut hi = position(number, 0);
    hi[8..].copy_from_slice(&u32::MAX.to_be_bytes());
    (position(number, 0), hi)
}

/// A stored receipt with what the block-level record does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredReceipt {
    pub(crate) receipt: ReceiptEnvelope,
    pub(crate) gas_used: u64,
    pub(crate) first_log_index: u64,
}

/// Writes the chain records of a block inside the state commit's transaction.
pub(crate) fn write_block(
    tx: &WriteTransaction,
    number: u64,
    hash: B256,
    transactions: &[TxEnvelope],
    senders: &[Address],
    receipts: &[ReceiptEnvelope],
) -> Result<(), StateError> {
    let mut txs = tx.open_table(TXS).map_err(db_err)?;
    let mut lookup = tx.open_table(TX_LOOKUP).map_err(db_err)?;
    let mut buf = Vec::new();
    for (i, (t, sender)) in transactions.iter().zip(senders).enumerate() {
        let key = position(number, i);
        buf.clear();
        buf.extend_from_slice(sender.as_slice());
        t.encode_2718(&mut buf);
        txs.insert(&key[..], &buf[..]).map_err(db_err)?;
        lookup
            .insert(t.tx_hash().as_slice(), &key[..])
            .map_err(db_err)?;
    }
    let mut stored = tx.open_table(RECEIPTS).map_err(db_err)?;
    let mut index = tx.open_table(LOG_INDEX).map_err(db_err)?;
    let mut prev_gas = 0u64;
    let mut log_index = 0u64;
    for (i, receipt) in receipts.iter().enumerate() {
        let cumulative = receipt.cumulative_gas_used();
        buf.clear();
        buf.extend_from_slice(&cumulative.saturating_sub(prev_gas).to_be_bytes());
        buf.extend_from_slice(&log_index.to_be_bytes());
        receipt.encode_2718(&mut buf);
        stored
            .insert(&position(number, i)[..], &buf[..])
            .map_err(db_err)?;
        prev_gas = cumulative;
        log_index += receipt.logs().len() as u64;
        for log in receipt.logs() {
            index
                .insert(&log_key(0, log.address.as_slice(), number)[..], ())
                .map_err(db_err)?;
            for (p, topic) in log.topics().iter().enumerate() {
                index
                    .insert(&log_key(1 + p as u8, topic.as_slice(), number)[..], ())
                    .map_err(db_err)?;
            }
        }
    }
    tx.open_table(NUMBERS)
        .map_err(db_err)?
        .insert(hash.as_slice(), number)
        .map_err(db_err)?;
    Ok(())
}

fn decode_tx(number: u64, bytes: &[u8]) -> Result<(Address, TxEnvelope), ChainError> {
    if bytes.len() < 20 {
        return Err(ChainError::Corrupt(format!(
            "transaction record in block {number}"
        )));
    }
    let mut body = &bytes[20..];
    let tx = TxEnvelope::decode_2718(&mut body)
        .map_err(|e| ChainError::Corrupt(format!("transaction in block {number}: {e}")))?;
    Ok((Address::from_slice(&bytes[..20]), tx))
}

fn decode_receipt(number: u64, bytes: &[u8]) -> Result<StoredReceipt, ChainError> {
    if bytes.len() < 16 {
        return Err(ChainError::Corrupt(format!(
            "receipt record in block {number}"
        )));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[..8]);
    let gas_used = u64::from_be_bytes(n);
    n.copy_from_slice(&bytes[8..16]);
    let first_log_index = u64::from_be_bytes(n);
    let mut body = &bytes[16..];
    let receipt = ReceiptEnvelope::decode_2718(&mut body)
        .map_err(|e| ChainError::Corrupt(format!("receipt in block {number}: {e}")))?;
    Ok(StoredReceipt {
        receipt,
        gas_used,
        first_log_index,
    })
}

pub(crate) fn write_executed(tx: &WriteTransaction, b: &ExecutedBlock) -> Result<(), StateError> {
    write_block(
        tx,
        b.header.number,
        b.hash,
        &b.transactions,
        &b.senders,
        &b.receipts,
    )
}

/// Read access to the chain tables.
pub(crate) struct ChainReader<'a> {
    pub(crate) db: &'a StateDb,
}

impl ChainReader<'_> {
    pub(crate) fn number_of(&self, hash: B256) -> Result<Option<u64>, ChainError> {
        let tx = self.db.database().begin_read()?;
        Ok(tx
            .open_table(NUMBERS)?
            .get(hash.as_slice())?
            .map(|v| v.value()))
    }

    pub(crate) fn block(&self, number: u64) -> Result<Option<BlockRecord>, ChainError> {
        let Some(header) = self.db.header(number)? else {
            return Ok(None);
        };
        let tx = self.db.database().begin_read()?;
        let table = tx.open_table(TXS)?;
        let (lo, hi) = block_positions(number);
        let mut transactions = Vec::new();
        let mut senders = Vec::new();
        for row in table.range(&lo[..]..=&hi[..])? {
            let (_, v) = row?;
            let (sender, t) = decode_tx(number, v.value())?;
            transactions.push(t);
            senders.push(sender);
        }
        Ok(Some(BlockRecord {
            hash: header.hash_slow(),
            header,
            transactions,
            senders,
        }))
    }

    /// One transaction of a block with its sender.
    pub(crate) fn tx_at(
        &self,
        number: u64,
        index: u64,
    ) -> Result<Option<(Address, TxEnvelope)>, ChainError> {
        let tx = self.db.database().begin_read()?;
        let Ok(index) = usize::try_from(index) else {
            return Ok(None);
        };
        tx.open_table(TXS)?
            .get(&position(number, index)[..])?
            .map(|v| decode_tx(number, v.value()))
            .transpose()
    }

    pub(crate) fn receipts(&self, number: u64) -> Result<Vec<StoredReceipt>, ChainError> {
        let tx = self.db.database().begin_read()?;
        let table = tx.open_table(RECEIPTS)?;
        let (lo, hi) = block_positions(number);
        let mut out = Vec::new();
        for row in table.range(&lo[..]..=&hi[..])? {
            let (_, v) = row?;
            out.push(decode_receipt(number, v.value())?);
        }
        Ok(out)
    }

    /// One receipt of a block.
    pub(crate) fn receipt_at(
        &self,
        number: u64,
        index: u64,
    ) -> Result<Option<StoredReceipt>, ChainError> {
        let tx = self.db.database().begin_read()?;
        let Ok(index) = usize::try_from(index) else {
            return Ok(None);
        };
        tx.open_table(RECEIPTS)?
            .get(&position(number, index)[..])?
            .map(|v| decode_receipt(number, v.value()))
            .transpose()
    }

    pub(crate) fn tx_location(&self, hash: B256) -> Result<Option<(u64, u64)>, ChainError> {
        let tx = self.db.database().begin_read()?;
        let Some(v) = tx.open_table(TX_LOOKUP)?.get(hash.as_slice())? else {
            return Ok(None);
        };
        let v = v.value();
        if v.len() != 12 {
            return Err(ChainError::Corrupt(format!("lookup of tx {hash}")));
        }
        let mut n = [0u8; 8];
        n.copy_from_slice(&v[..8]);
        let mut i = [0u8; 4];
        i.copy_from_slice(&v[8..]);
        Ok(Some((
            u64::from_be_bytes(n),
            u64::from(u32::from_be_bytes(i)),
        )))
    }

    /// Blocks in `[from, to]` that may hold matching logs: the intersection
    /// of the index ranges of the address set and of every constrained topic
    /// position; `None` when the filter constrains nothing (scan all).
    pub(crate) fn candidate_blocks(
        &self,
        filter: &LogFilter,
    ) -> Result<Option<Vec<u64>>, ChainError> {
        let tx = self.db.database().begin_read()?;
        let index = tx.open_table(LOG_INDEX)?;
        let mut sets: Vec<std::collections::BTreeSet<u64>> = Vec::new();
        let mut collect = |kind: u8, ids: Vec<&[u8]>| -> Result<(), ChainError> {
            let mut set = std::collections::BTreeSet::new();
            for id in ids {
                let lo = log_key(kind, id, filter.from);
                let hi = log_key(kind, id, filter.to);
                for row in index.range(&lo[..]..=&hi[..])? {
                    let (k, _) = row?;
                    let k = k.value();
                    let mut n = [0u8; 8];
                    n.copy_from_slice(&k[k.len() - 8..]);
                    set.insert(u64::from_be_bytes(n));
                }
            }
            sets.push(set);
            Ok(())
        };
        if !filter.addresses.is_empty() {
            collect(0, filter.addresses.iter().map(|a| a.as_slice()).collect())?;
        }
        for (p, topics) in filter.topics.iter().enumerate() {
            if let Some(list) = topics.as_ref().filter(|l| !l.is_empty()) {
                collect(1 + p as u8, list.iter().map(|t| t.as_slice()).collect())?;
            }
        }
        let Some(first) = sets.pop() else {
            return Ok(None);
        };
        Ok(Some(
            first
                .into_iter()
                .filter(|n| sets.iter().all(|s| s.contains(n)))
                .collect(),
        ))
    }
}
