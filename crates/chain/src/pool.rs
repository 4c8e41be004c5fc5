//! The transaction pool: per-sender nonce ordering, pending (executable
//! now) and queued (after a nonce gap) transactions, replacement by a 10 %
//! fee bump, per-sender and total limits with lowest-tip eviction.
//!
//! The pool is plain data behind the node's lock: it never reads state
//! itself. The node tells it each sender's next nonce when a transaction
//! arrives and after every finalized block.

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use alloy_consensus::{Transaction, TxEnvelope, transaction::Recovered};
use alloy_primitives::{Address, B256};

use crate::error::PoolError;

/// Pool limits and policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most transactions (pending + queued) one sender may have pooled.
    pub max_per_sender: usize,
    /// Most transactions in the pool.
    pub max_total: usize,
    /// Largest encoded transaction accepted (bytes).
    pub max_tx_size: usize,
    /// Smallest tip accepted (wei per gas).
    pub min_tip: u128,
    /// Fee bump a replacement needs, in percent.
    pub price_bump_percent: u128,
}

impl PoolConfig {
    /// Generous limits for a dev chain: 16,384 per sender, 200,000 in total.
    pub fn dev() -> Self {
        Self {
            max_per_sender: 16_384,
            max_total: 200_000,
            max_tx_size: 128 * 1024,
            min_tip: 0,
            price_bump_percent: 10,
        }
    }
}

/// A validated transaction waiting in the pool.
#[derive(Debug, Clone)]
pub struct PooledTx {
    /// The transaction with its recovered sender.
    pub tx: Recovered<TxEnvelope>,
    /// Its hash.
    pub hash: B256,
    /// `max_fee_per_gas` (gas price for legacy).
    pub max_fee: u128,
    /// `max_priority_fee_per_gas` (gas price for legacy).
    pub tip: u128,
}

impl PooledTx {
    /// Wraps a recovered transaction.
    pub fn new(tx: Recovered<TxEnvelope>) -> Self {
        let max_fee = tx.max_fee_per_gas();
        let tip = tx.max_priority_fee_per_gas().unwrap_or(max_fee);
        Self {
            hash: *tx.tx_hash(),
            tx,
            max_fee,
            tip,
        }
    }

    /// The tip a block at `base_fee` would pay per gas.
    pub fn effective_tip(&self, base_fee: u64) -> u128 {
        self.max_fee
            .saturating_sub(u128::from(base_fee))
            .min(self.tip)
    }
}

#[derive(Debug, Default)]
struct SenderTxs {
    /// The sender's next nonce in the committed state.
    state_nonce: u64,
    txs: BTreeMap<u64, PooledTx>,
}

impl SenderTxs {
    /// Nonce after the contiguous run from the state nonce.
    fn pending_end(&self) -> u64 {
        let mut next = self.state_nonce;
        for nonce in self.txs.range(self.state_nonce..).map(|(n, _)| *n) {
            if nonce != next {
                break;
            }
            next += 1;
        }
        next
    }
}

/// Counts for `txpool_status`-style reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Executable now.
    pub pending: usize,
    /// Waiting behind a nonce gap.
    pub queued: usize,
}

/// The transaction pool (see the module docs).
#[derive(Debug)]
pub struct Pool {
    config: PoolConfig,
    senders: HashMap<Address, SenderTxs>,
    by_hash: HashMap<B256, (Address, u64)>,
    /// Blocks applied so far ([`Pool::on_committed`] calls).
    generation: u64,
}

/// What [`Pool::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Added; `replaced` is the hash it displaced (same sender and nonce).
    Added {
        /// Displaced transaction.
        replaced: Option<B256>,
        /// Evicted to make room (lowest tip in the pool).
        evicted: Option<B256>,
    },
}

impl Pool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            senders: HashMap::new(),
            by_hash: HashMap::new(),
            generation: 0,
        }
    }

    /// The policy in force.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// How many committed blocks the pool has been told about; a caller that
    /// read state before a change of generation must read it again.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of pooled transactions.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Pending and queued counts.
    pub fn status(&self) -> PoolStatus {
        let mut status = PoolStatus::default();
        for s in self.senders.values() {
            let end = s.pending_end();
            let pending = s.txs.range(s.state_nonce..end).count();
            status.pending += pending;
            status.queued += s.txs.len() - pending;
        }
        status
    }

    /// Whether any transaction is executable now.
    pub fn has_pending(&self) -> bool {
        self.senders
            .values()
            .any(|s| s.txs.contains_key(&s.state_nonce))
    }

    /// A pooled transaction by hash.
    pub fn get(&self, hash: &B256) -> Option<&PooledTx> {
        let (sender, nonce) = self.by_hash.get(hash)?;
        self.senders.get(sender)?.txs.get(nonce)
    }

    /// The nonce a new transaction from `sender` should use: after its
    /// pending run, or `state_nonce` if the pool holds none.
    pub fn pending_nonce(&self, sender: Address, state_nonce: u64) -> u64 {
        match self.senders.get(&sender) {
            Some(s) => s.pending_end().max(state_nonce),
            None => state_nonce,
        }
    }

    /// Adds a transaction whose sender's committed next nonce is
    /// `state_nonce`. Stateless and balance checks are the caller's; this
    /// applies nonce, replacement and capacity rules.
    pub fn insert(&mut self, tx: PooledTx, state_nonce: u64) -> Result<Inserted, PoolError> {
        if self.by_hash.contains_key(&tx.hash) {
            return Err(PoolError::AlreadyKnown);
        }
        if tx.tip < self.config.min_tip {
            return Err(PoolError::Underpriced {
                needed: self.config.min_tip,
                got: tx.tip,
            });
        }
        let sender = tx.tx.signer();
        let nonce = tx.tx.nonce();
        if nonce < state_nonce {
            return Err(PoolError::NonceTooLow {
                state: state_nonce,
                tx: nonce,
            });
        }
        let entry = self.senders.entry(sender).or_default();
        entry.state_nonce = entry.state_nonce.max(state_nonce);
        let bump = |old: u128| old.saturating_mul(100 + self.config.price_bump_percent) / 100;
        if let Some(old) = entry.txs.get(&nonce) {
            if tx.max_fee < bump(old.max_fee) || tx.tip < bump(old.tip) {
                return Err(PoolError::ReplacementUnderpriced);
            }
            let replaced = old.hash;
            self.by_hash.remove(&replaced);
            self.by_hash.insert(tx.hash, (sender, nonce));
            entry.txs.insert(nonce, tx);
            return Ok(Inserted::Added {
                replaced: Some(replaced),
                evicted: None,
            });
        }
        if entry.txs.len() >= self.config.max_per_sender {
            return Err(PoolError::AccountLimit {
                limit: self.config.max_per_sender,
            });
        }
        // A nonce that far ahead could never become pending within the limit.
        let max_ahead = self.config.max_per_sender as u64;
        if nonce >= state_nonce.saturating_add(max_ahead) {
            return Err(PoolError::NonceTooHigh {
                state: state_nonce,
                tx: nonce,
                max: max_ahead,
            });
        }
        let mut evicted = None;
        if self.by_hash.len() >= self.config.max_total {
            // Evict the cheapest tail transaction (a sender's highest nonce,
            // so no gap opens in anyone's run) if the newcomer pays more.
            let cheapest = self
                .senders
                .iter()
                .filter(|(a, _)| **a != sender)
                .filter_map(|(a, s)| s.txs.last_key_value().map(|(n, t)| (t.tip, *a, *n)))
                .min();
            match cheapest {
                Some((tip, victim, victim_nonce)) if tip < tx.tip => {
                    if let Some(s) = self.senders.get_mut(&victim)
                        && let Some(t) = s.txs.remove(&victim_nonce)
                    {
                        self.by_hash.remove(&t.hash);
                        evicted = Some(t.hash);
                        if s.txs.is_empty() {
                            self.senders.remove(&victim);
                        }
                    }
                }
                _ => return Err(PoolError::Full),
            }
        }
        let entry = self.senders.entry(sender).or_default();
        entry.state_nonce = entry.state_nonce.max(state_nonce);
        self.by_hash.insert(tx.hash, (sender, nonce));
        entry.txs.insert(nonce, tx);
        Ok(Inserted::Added {
            replaced: None,
            evicted,
        })
    }

    /// Executable transactions for a block at `base_fee`: each sender's
    /// contiguous run from its state nonce, senders interleaved by highest
    /// effective tip first, stopping once the gas limits add up to
    /// `gas_limit` or `max_txs` are taken. Transactions whose fee cap is
    /// below the base fee hold back the rest of their sender's run.
    pub fn best(
        &self,
        base_fee: u64,
        gas_limit: u64,
        max_txs: usize,
    ) -> Vec<Recovered<TxEnvelope>> {
        // Heap of each sender's next candidate: (tip, Reverse(hash) for a
        // stable order, sender, nonce).
        let mut heap = BinaryHeap::new();
        for (sender, s) in &self.senders {
            if let Some(t) = s.txs.get(&s.state_nonce)
                && t.max_fee >= u128::from(base_fee)
            {
                heap.push((
                    t.effective_tip(base_fee),
                    std::cmp::Reverse(t.hash),
                    *sender,
                    s.state_nonce,
                ));
            }
        }
        let mut out = Vec::new();
        let mut gas = 0u64;
        while let Some((_, _, sender, nonce)) = heap.pop() {
            if out.len() >= max_txs {
                break;
            }
            let Some(s) = self.senders.get(&sender) else {
                continue;
            };
            let Some(t) = s.txs.get(&nonce) else { continue };
            let g = t.tx.gas_limit();
            if gas.saturating_add(g) > gas_limit {
                // This sender is done for this block; others may still fit.
                continue;
            }
            gas += g;
            out.push(t.tx.clone());
            if let Some(next) = s.txs.get(&(nonce + 1))
                && next.max_fee >= u128::from(base_fee)
            {
                heap.push((
                    next.effective_tip(base_fee),
                    std::cmp::Reverse(next.hash),
                    sender,
                    nonce + 1,
                ));
            }
        }
        out
    }

    /// After a block: each listed sender's committed next nonce. Drops every
    /// transaction below it (included, or replaced by an included one).
    pub fn on_committed(&mut self, next_nonces: impl IntoIterator<Item = (Address, u64)>) {
        self.generation += 1;
        for (sender, next) in next_nonces {
            let Some(s) = self.senders.get_mut(&sender) else {
                continue;
            };
            s.state_nonce = s.state_nonce.max(next);
            let keep = s.txs.split_off(&next);
            for t in std::mem::replace(&mut s.txs, keep).into_values() {
                self.by_hash.remove(&t.hash);
            }
            if s.txs.is_empty() {
                self.senders.remove(&sender);
            }
        }
    }

    /// Removes one transaction (it turned out invalid at execution). Later
    /// nonces of its sender stay, queued behind the gap.
    pub fn remove(&mut self, hash: &B256) -> Option<PooledTx> {
        let (sender, nonce) = self.by_hash.remove(hash)?;
        let s = self.senders.get_mut(&sender)?;
        let t = s.txs.remove(&nonce);
        if s.txs.is_empty() {
            self.senders.remove(&sender);
        }
        t
    }
}

/// Gas a transaction needs before executing anything: 21,000, calldata
/// (4 per zero byte, 16 otherwise), creation (32,000 + 2 per init-code
/// word), access list (2,400 per address, 1,900 per key), and at least the
/// EIP-7623 calldata floor.
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let input = tx.input();
    let zeros = input.iter().filter(|b| **b == 0).count() as u64;
    let nonzeros = input.len() as u64 - zeros;
    let mut gas = 21_000 + zeros * 4 + nonzeros * 16;
    if tx.kind().is_create() {
        gas += 32_000 + 2 * (input.len() as u64).div_ceil(32);
    }
    if let Some(list) = tx.access_list() {
        for item in list.iter() {
            gas += 2_400 + 1_900 * item.storage_keys.len() as u64;
        }
    }
    let floor = 21_000 + 10 * (zeros + 4 * nonzeros);
    gas.max(floor)
}
