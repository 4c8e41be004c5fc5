//! The node: chain state, pool and block production behind one handle.
//!
//! Block production is the application side of a consensus engine:
//! [`Node::propose`] builds and executes a block on the head from the pool,
//! [`Node::verify`] re-executes someone else's block and compares every
//! root, [`Node::finalize`] commits a block (state, body, receipts, indexes
//! in one redb transaction) and only then announces it. A single-validator
//! dev chain is `propose` followed by `finalize`.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use alloy_consensus::{Header, Transaction, TxEnvelope, transaction::SignerRecoverable};
use alloy_eips::{Decodable2718, eip1559::BaseFeeParams};
use alloy_primitives::{Address, B256, Bytes, U256};
use lattice_evm::{
    Account, BlockParams, CallError, CallOutcome, CallRequest, ExecutedBlock, Genesis, Head,
    LatticePrecompiles, PendingState, StateDb, StateOverrides, TxRejection,
};
use tokio::sync::{Notify, broadcast};

use crate::{
    error::{ChainError, PoolError, VerifyError},
    pool::{Pool, PoolConfig, PooledTx, intrinsic_gas},
    store::{self, BlockRecord, ChainReader, LogFilter, LogRecord, ReceiptRecord, TxRecord},
};

/// How a node produces blocks and what it accepts.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Block gas limit of the blocks this node proposes.
    pub gas_limit: u64,
    /// Receives priority fees of proposed blocks.
    pub coinbase: Address,
    /// Most transactions per proposed block.
    pub max_block_txs: usize,
    /// Pool policy.
    pub pool: PoolConfig,
    /// Gas cap for `eth_call` / `eth_estimateGas`.
    pub call_gas_cap: u64,
    /// Lattice precompiles.
    pub precompiles: LatticePrecompiles,
}

impl NodeConfig {
    /// Dev chain settings: 300M gas blocks (≈14,000 transfers), dev pool.
    pub fn dev() -> Self {
        Self {
            gas_limit: 300_000_000,
            coinbase: Address::ZERO,
            max_block_txs: 50_000,
            pool: PoolConfig::dev(),
            call_gas_cap: 300_000_000,
            precompiles: LatticePrecompiles::new(),
        }
    }
}

/// How far a catching-up node is (`eth_syncing`'s `startingBlock`, `currentBlock`,
/// `highestBlock`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStatus {
    /// The head when catching up began.
    pub starting: u64,
    /// The head now.
    pub current: u64,
    /// The highest finalized height the node heard of.
    pub highest: u64,
}

/// A finalized block as announced to subscribers.
#[derive(Debug, Clone)]
pub struct NewBlock {
    /// The header.
    pub header: Header,
    /// Its hash.
    pub hash: B256,
    /// Hashes of its transactions.
    pub tx_hashes: Vec<B256>,
    /// Every log it emitted, with positions.
    pub logs: Vec<LogRecord>,
}

/// A pooled transaction as `eth_getTransactionByHash` reports it before it
/// is included.
#[derive(Debug, Clone)]
pub struct PendingTx {
    /// The signed transaction.
    pub tx: TxEnvelope,
    /// Its sender.
    pub sender: Address,
}

/// The node (see the module docs). Cheap to share behind an [`Arc`].
#[derive(Debug)]
pub struct Node {
    db: StateDb,
    config: NodeConfig,
    pool: Mutex<Pool>,
    /// Serialises propose/verify/finalize against each other.
    produce: Mutex<()>,
    blocks: broadcast::Sender<Arc<NewBlock>>,
    /// Raw transactions admitted from this node's own clients, for gossip.
    announced: broadcast::Sender<Bytes>,
    arrived: Notify,
    /// Catching up: `(head when it began, highest finalized height known)`.
    catching_up: Mutex<Option<(u64, u64)>>,
    /// Fixed at genesis.
    chain_id: u64,
    /// Base fee of the block after the head, updated by `finalize`.
    next_base_fee: AtomicU64,
}

/// Transactions held for relaying before a slow gossip task starts missing some.
const ANNOUNCE_BACKLOG: usize = 16_384;

fn next_base_fee_after(head: &Header) -> u64 {
    head.next_block_base_fee(BaseFeeParams::ethereum())
        .unwrap_or(alloy_eips::eip1559::INITIAL_BASE_FEE)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Node {
    /// Opens the chain in `path` (one redb file), writing `genesis` if the
    /// file is new. An existing chain continues from its head; a chain with
    /// another chain id is refused.
    pub fn open(path: &Path, genesis: &Genesis, config: NodeConfig) -> Result<Self, ChainError> {
        let db = StateDb::open(path)?;
        store::create_tables(&db)?;
        match db.latest()? {
            None => {
                db.init_genesis(genesis)?;
            }
            Some(_) => {
                let stored = db.chain_id()?;
                if stored != genesis.config.chain_id {
                    return Err(ChainError::WrongChain {
                        stored,
                        genesis: genesis.config.chain_id,
                    });
                }
                let first = db.header(0)?.ok_or_else(|| {
                    ChainError::Corrupt("the chain has a head but no block 0".into())
                })?;
                if first.mix_hash != lattice_evm::validators_commitment(&genesis.validators) {
                    return Err(ChainError::WrongValidators);
                }
            }
        }
        let (blocks, _) = broadcast::channel(256);
        let (announced, _) = broadcast::channel(ANNOUNCE_BACKLOG);
        let chain_id = db.chain_id()?;
        let next_base_fee = AtomicU64::new(next_base_fee_after(&db.latest_header()?));
        Ok(Self {
            pool: Mutex::new(Pool::new(config.pool.clone())),
            chain_id,
            next_base_fee,
            db,
            config,
            produce: Mutex::new(()),
            blocks,
            announced,
            arrived: Notify::new(),
            catching_up: Mutex::new(None),
        })
    }

    // ---- catching up ----------------------------------------------------------

    /// Tells the node that its network finalized block `number` (consensus learns it
    /// before it has the blocks in between). While the head is below it,
    /// [`Node::syncing`] reports the gap.
    pub fn saw_finalized(&self, number: u64) {
        let Ok(head) = self.head() else { return };
        let mut c = lock(&self.catching_up);
        match *c {
            Some((start, highest)) if head.number < highest.max(number) => {
                *c = Some((start, highest.max(number)));
            }
            _ if head.number < number => *c = Some((head.number, number)),
            _ => *c = None,
        }
    }

    /// `Some(SyncStatus)` while the node is more than one block behind a finalized height
    /// it heard of (`eth_syncing`); `None` once its head is (nearly) there.
    pub fn syncing(&self) -> Option<SyncStatus> {
        let head = self.head().ok()?.number;
        let mut c = lock(&self.catching_up);
        match *c {
            // One block behind is a commit in progress, not catching up.
            Some((starting, highest)) if head + 1 < highest => Some(SyncStatus {
                starting,
                current: head,
                highest,
            }),
            _ => {
                *c = None;
                None
            }
        }
    }

    /// The state database.
    pub fn state(&self) -> &StateDb {
        &self.db
    }

    /// The configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Chain id.
    pub fn chain_id(&self) -> Result<u64, ChainError> {
        Ok(self.chain_id)
    }

    /// The last finalized block.
    pub fn head(&self) -> Result<Head, ChainError> {
        Ok(self
            .db
            .latest()?
            .ok_or(lattice_evm::StateError::NotInitialized)?)
    }

    /// Header of the last finalized block.
    pub fn head_header(&self) -> Result<Header, ChainError> {
        Ok(self.db.latest_header()?)
    }

    /// Base fee the next block will have.
    pub fn next_base_fee(&self) -> Result<u64, ChainError> {
        Ok(self.next_base_fee.load(Ordering::Acquire))
    }

    /// Subscribes to finalized blocks.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<NewBlock>> {
        self.blocks.subscribe()
    }

    /// Resolves when a transaction has arrived since the last call (for
    /// instant sealing).
    pub async fn transaction_arrived(&self) {
        self.arrived.notified().await;
    }

    // ---- transactions in -------------------------------------------------

    /// Raw transactions this node admits from its own clients ([`Node::submit_raw`]), in
    /// order, for relaying to peers. A receiver that falls more than a few thousand
    /// behind misses some (they stay in this node's pool, for its own proposals).
    pub fn subscribe_transactions(&self) -> broadcast::Receiver<Bytes> {
        self.announced.subscribe()
    }

    /// Decodes, validates and pools one raw EIP-2718 transaction from a client of this
    /// node; returns its hash. A transaction new to the pool is announced to
    /// [`Node::subscribe_transactions`].
    pub fn submit_raw(&self, raw: &[u8]) -> Result<B256, PoolError> {
        let hash = self.submit_relayed(raw)?;
        if self.announced.receiver_count() > 0 {
            let _ = self.announced.send(Bytes::copy_from_slice(raw));
        }
        Ok(hash)
    }

    /// [`Node::submit_raw`] for a transaction a peer relayed: the same checks, not
    /// announced again (every validator relays its own clients' transactions to all).
    pub fn submit_relayed(&self, raw: &[u8]) -> Result<B256, PoolError> {
        let tx = self.check_stateless(raw)?;
        let sender = tx
            .recover_signer()
            .map_err(|_| PoolError::InvalidSignature)?;
        self.admit(alloy_consensus::transaction::Recovered::new_unchecked(
            tx, sender,
        ))
    }

    fn check_stateless(&self, raw: &[u8]) -> Result<TxEnvelope, PoolError> {
        let limit = self.config.pool.max_tx_size;
        if raw.len() > limit {
            return Err(PoolError::Oversized {
                size: raw.len(),
                limit,
            });
        }
        let mut buf = raw;
        let tx = TxEnvelope::decode_2718(&mut buf).map_err(|e| PoolError::Decode(e.to_string()))?;
        if !buf.is_empty() {
            return Err(PoolError::Decode(format!(
                "{} trailing bytes after the transaction",
                buf.len()
            )));
        }
        if matches!(tx, TxEnvelope::Eip4844(_) | TxEnvelope::Eip7702(_)) {
            return Err(PoolError::UnsupportedType);
        }
        let chain_id = self
            .chain_id()
            .map_err(|e| PoolError::Internal(e.to_string()))?;
        match tx.chain_id() {
            None => return Err(PoolError::NotReplayProtected),
            Some(got) if got != chain_id => {
                return Err(PoolError::WrongChainId {
                    expected: chain_id,
                    got,
                });
            }
            Some(_) => {}
        }
        if tx
            .max_priority_fee_per_gas()
            .is_some_and(|tip| tip > tx.max_fee_per_gas())
        {
            return Err(PoolError::TipAboveFeeCap);
        }
        if tx.gas_limit() > self.config.gas_limit {
            return Err(PoolError::GasLimitExceeded);
        }
        let want = intrinsic_gas(&tx);
        if tx.gas_limit() < want {
            return Err(PoolError::IntrinsicGasTooLow {
                have: tx.gas_limit(),
                want,
            });
        }
        Ok(tx)
    }

    fn admit(
        &self,
        tx: alloy_consensus::transaction::Recovered<TxEnvelope>,
    ) -> Result<B256, PoolError> {
        let base_fee = self
            .next_base_fee()
            .map_err(|e| PoolError::Internal(e.to_string()))?;
        if tx.max_fee_per_gas() < u128::from(base_fee) {
            return Err(PoolError::FeeCapTooLow {
                max_fee: tx.max_fee_per_gas(),
                base_fee,
            });
        }
        let sender = tx.signer();
        let (mut pool, account) = self.pool_with_account(sender)?;
        if account.code_hash != alloy_primitives::KECCAK256_EMPTY {
            return Err(PoolError::SenderNotEoa(sender));
        }
        let cost = U256::from(tx.gas_limit()) * U256::from(tx.max_fee_per_gas()) + tx.value();
        if account.balance < cost {
            return Err(PoolError::InsufficientFunds {
                balance: account.balance,
                cost,
                overshot: cost - account.balance,
            });
        }
        let pooled = PooledTx::new(tx);
        let hash = pooled.hash;
        pool.insert(pooled, account.nonce)?;
        drop(pool);
        self.arrived.notify_one();
        Ok(hash)
    }

    /// The pool, locked, and `sender`'s account as the pool must see it.
    ///
    /// The account is read without the lock (block commits do not hold it),
    /// then checked against the pool's generation, which `finalize` bumps when
    /// it tells the pool about a committed block: if a block was applied to
    /// the pool in between, the read is repeated under the lock. So the pool
    /// is never handed a nonce older than the last block it has seen (which
    /// would strand the sender's transactions behind a nonce already used).
    fn pool_with_account(
        &self,
        sender: Address,
    ) -> Result<(MutexGuard<'_, Pool>, Account), lattice_evm::StateError> {
        let seen = lock(&self.pool).generation();
        let account = self.db.account(sender)?.unwrap_or_default_account();
        let pool = lock(&self.pool);
        if pool.generation() == seen {
            return Ok((pool, account));
        }
        let account = self.db.account(sender)?.unwrap_or_default_account();
        Ok((pool, account))
    }

    /// Whether the pool holds a transaction executable now.
    pub fn has_pending(&self) -> bool {
        lock(&self.pool).has_pending()
    }

    /// Pending and queued counts.
    pub fn pool_status(&self) -> crate::pool::PoolStatus {
        lock(&self.pool).status()
    }

    /// A pooled (not yet included) transaction.
    pub fn pending_transaction(&self, hash: B256) -> Option<PendingTx> {
        lock(&self.pool).get(&hash).map(|t| PendingTx {
            tx: t.tx.inner().clone(),
            sender: t.tx.signer(),
        })
    }

    // ---- block production (the consensus application) ---------------------

    /// Builds a block on the head from the pool's best transactions and
    /// executes it. Nothing is committed: hand the result to
    /// [`Node::finalize`] (or to consensus). Transactions that turn out
    /// invalid are dropped from the pool; ones that did not fit stay.
    pub fn propose(&self, timestamp: u64) -> Result<ExecutedBlock, ChainError> {
        let parent = self.head_header()?;
        // One block per second at most on the dev chain's clock: timestamps strictly
        // increase there, as on Ethereum.
        let timestamp = timestamp.max(parent.timestamp + 1);
        self.propose_on(&PendingState::new(), &parent, timestamp)
    }

    /// [`Node::propose`] on a parent that is not committed yet: `pending`
    /// holds the executed, uncommitted blocks from the head's child to
    /// `parent` (empty: `parent` is the head). What the pending blocks
    /// already include is left out; nothing is committed. For a consensus
    /// engine that builds on a notarized, not yet finalized block.
    pub fn propose_on(
        &self,
        pending: &PendingState,
        parent: &Header,
        timestamp: u64,
    ) -> Result<ExecutedBlock, ChainError> {
        let _guard = lock(&self.produce);
        let base_fee = next_base_fee_after(parent);
        let mut txs =
            lock(&self.pool).best(base_fee, self.config.gas_limit, self.config.max_block_txs);
        if !pending.is_empty() {
            txs.retain(|tx| !pending.includes(tx.tx_hash()));
        }
        let params = BlockParams {
            // Never before the parent; equal is allowed (sub-second consensus blocks
            // share a second; `propose` keeps the dev chain strictly increasing).
            timestamp: timestamp.max(parent.timestamp),
            ..BlockParams::new(self.config.coinbase, 0, self.config.gas_limit)
        };
        let block = lattice_evm::execute_recovered_on(
            &self.db,
            pending,
            parent,
            txs,
            &params,
            &self.config.precompiles,
        )?;
        if !block.rejected.is_empty() {
            let mut pool = lock(&self.pool);
            for r in &block.rejected {
                // What failed for its own sake leaves the pool (as geth drops
                // a transaction its sender can no longer afford); what only
                // waits on something else stays: the sender's later nonces
                // (queued behind the gap), a fee cap under this base fee, a
                // transaction that did not fit this block.
                let waits = matches!(
                    r.reason,
                    TxRejection::BlockGasExhausted { .. }
                        | TxRejection::NonceTooHigh { .. }
                        | TxRejection::FeeCapBelowBaseFee { .. }
                ) || (!pending.is_empty()
                    && matches!(r.reason, TxRejection::NonceTooLow { .. }));
                if !waits {
                    tracing::debug!(hash = %r.hash, reason = %r.reason, "dropping invalid transaction");
                    pool.remove(&r.hash);
                }
            }
        }
        Ok(block)
    }

    /// Re-executes a block proposed by someone else on the head and checks
    /// that it is valid: no invalid transaction, and the same state,
    /// transactions and receipts roots, bloom, gas used and hash as its
    /// header claims. Returns the executed block, ready for
    /// [`Node::finalize`].
    pub fn verify(
        &self,
        header: &Header,
        transactions: Vec<TxEnvelope>,
    ) -> Result<ExecutedBlock, VerifyError> {
        let parent = self.head_header().map_err(VerifyError::Chain)?;
        self.verify_on(&PendingState::new(), &parent, header, transactions)
    }

    /// [`Node::verify`] on a parent that is not committed yet (`pending` as
    /// for [`Node::propose_on`]; empty: `parent` is the head).
    pub fn verify_on(
        &self,
        pending: &PendingState,
        parent: &Header,
        header: &Header,
        transactions: Vec<TxEnvelope>,
    ) -> Result<ExecutedBlock, VerifyError> {
        let _guard = lock(&self.produce);
        let parent_hash = parent.hash_slow();
        if header.parent_hash != parent_hash || header.number != parent.number + 1 {
            return Err(VerifyError::NotOnHead {
                number: header.number,
                parent: header.parent_hash,
                head: parent_hash,
            });
        }
        let params = BlockParams {
            coinbase: header.beneficiary,
            timestamp: header.timestamp,
            gas_limit: header.gas_limit,
            prevrandao: header.mix_hash,
            extra_data: header.extra_data.clone(),
        };
        // Senders this node's pool already recovered (the proposer's transactions
        // usually reached it by gossip first) are not recovered a second time.
        let known: Vec<Option<Address>> = {
            let pool = lock(&self.pool);
            transactions
                .iter()
                .map(|tx| pool.get(tx.tx_hash()).map(|p| p.tx.signer()))
                .collect()
        };
        let block = lattice_evm::execute_known_on(
            &self.db,
            pending,
            parent,
            transactions,
            known,
            &params,
            &self.config.precompiles,
        )
        .map_err(|e| VerifyError::Chain(e.into()))?;
        if let Some(r) = block.rejected.first() {
            return Err(VerifyError::InvalidTransaction {
                number: header.number,
                hash: r.hash,
                reason: r.reason.clone(),
            });
        }
        let n = header.number;
        let check = |field, claimed: B256, computed: B256| {
            if claimed == computed {
                Ok(())
            } else {
                Err(VerifyError::Mismatch {
                    number: n,
                    field,
                    claimed,
                    computed,
                })
            }
        };
        let got = &block.header;
        check(
            "transactions root",
            header.transactions_root,
            got.transactions_root,
        )?;
        check("state root", header.state_root, got.state_root)?;
        check("receipts root", header.receipts_root, got.receipts_root)?;
        check(
            "logs bloom",
            alloy_primitives::keccak256(header.logs_bloom),
            alloy_primitives::keccak256(got.logs_bloom),
        )?;
        check(
            "gas used",
            B256::from(U256::from(header.gas_used)),
            B256::from(U256::from(got.gas_used)),
        )?;
        check(
            "base fee",
            B256::from(U256::from(header.base_fee_per_gas.unwrap_or_default())),
            B256::from(U256::from(got.base_fee_per_gas.unwrap_or_default())),
        )?;
        check("block hash", header.hash_slow(), block.hash)?;
        Ok(block)
    }

    /// Commits a proposed or verified block: state, body, receipts and
    /// indexes in one transaction (durable when this returns), then updates
    /// the pool and announces the block. A block is reported as included
    /// only after this returns.
    pub fn finalize(&self, block: ExecutedBlock) -> Result<Head, ChainError> {
        let _guard = lock(&self.produce);
        // The pool stays open to submissions while the block is written;
        // `pool_with_account` keeps their nonce reads consistent.
        let head = self
            .db
            .commit_with(&block, |tx| store::write_executed(tx, &block))?;
        let mut next: std::collections::HashMap<Address, u64> = Default::default();
        for (tx, sender) in block.transactions.iter().zip(&block.senders) {
            let n = next.entry(*sender).or_default();
            *n = (*n).max(tx.nonce() + 1);
        }
        self.next_base_fee
            .store(next_base_fee_after(&block.header), Ordering::Release);
        lock(&self.pool).on_committed(next);
        let logs = block_logs(
            &block.header,
            block.hash,
            block.transactions.iter().map(|t| *t.tx_hash()),
            &block.receipts,
        );
        let announced = NewBlock {
            tx_hashes: block.transactions.iter().map(|t| *t.tx_hash()).collect(),
            header: block.header,
            hash: block.hash,
            logs,
        };
        // No subscribers is fine.
        let _ = self.blocks.send(Arc::new(announced));
        Ok(head)
    }

    // ---- reads -----------------------------------------------------------

    fn reader(&self) -> ChainReader<'_> {
        ChainReader { db: &self.db }
    }

    /// A block by number.
    pub fn block_by_number(&self, number: u64) -> Result<Option<BlockRecord>, ChainError> {
        self.reader().block(number)
    }

    /// A block by hash.
    pub fn block_by_hash(&self, hash: B256) -> Result<Option<BlockRecord>, ChainError> {
        match self.block_number_of(hash)? {
            Some(n) => self.reader().block(n),
            None => Ok(None),
        }
    }

    /// Header by number.
    pub fn header(&self, number: u64) -> Result<Option<Header>, ChainError> {
        Ok(self.db.header(number)?)
    }

    /// Number of the block with this hash.
    pub fn block_number_of(&self, hash: B256) -> Result<Option<u64>, ChainError> {
        match self.reader().number_of(hash)? {
            Some(n) => Ok(Some(n)),
            None if self.db.header(0)?.is_some_and(|h| h.hash_slow() == hash) => Ok(Some(0)),
            None => Ok(None),
        }
    }

    /// An included transaction by hash (one record read, not its block).
    pub fn transaction(&self, hash: B256) -> Result<Option<TxRecord>, ChainError> {
        let Some((number, index)) = self.reader().tx_location(hash)? else {
            return Ok(None);
        };
        let missing = || ChainError::Corrupt(format!("tx {hash} points at missing block {number}"));
        let header = self.db.header(number)?.ok_or_else(missing)?;
        let (sender, tx) = self.reader().tx_at(number, index)?.ok_or_else(missing)?;
        Ok(Some(TxRecord {
            tx,
            sender,
            block_number: number,
            block_hash: header.hash_slow(),
            index,
            base_fee: header.base_fee_per_gas.unwrap_or_default(),
        }))
    }

    /// A receipt by transaction hash.
    pub fn receipt(&self, hash: B256) -> Result<Option<ReceiptRecord>, ChainError> {
        let Some(tx) = self.transaction(hash)? else {
            return Ok(None);
        };
        let stored = self
            .reader()
            .receipt_at(tx.block_number, tx.index)?
            .ok_or_else(|| ChainError::Corrupt(format!("tx {hash} has no receipt")))?;
        Ok(Some(receipt_record(tx, stored)))
    }

    /// Every receipt of a block.
    pub fn block_receipts(&self, number: u64) -> Result<Option<Vec<ReceiptRecord>>, ChainError> {
        let Some(block) = self.reader().block(number)? else {
            return Ok(None);
        };
        let receipts = self.reader().receipts(number)?;
        if receipts.len() != block.transactions.len() {
            return Err(ChainError::Corrupt(format!(
                "block {number}: {} transactions but {} receipts",
                block.transactions.len(),
                receipts.len()
            )));
        }
        Ok(Some(
            receipts
                .into_iter()
                .enumerate()
                .filter_map(|(i, r)| Some(receipt_record(tx_record(&block, i as u64)?, r)))
                .collect(),
        ))
    }

    /// Logs matching `filter`, at most `limit` of them (an error past it).
    pub fn logs(
        &self,
        filter: &LogFilter,
        limit: usize,
    ) -> Result<Result<Vec<LogRecord>, usize>, ChainError> {
        let candidates: Vec<u64> = match self.reader().candidate_blocks(filter)? {
            Some(c) => c,
            None => {
                // No address or topic: blocks whose bloom is non-empty.
                let mut v = Vec::new();
                for n in filter.from..=filter.to {
                    match self.db.header(n)? {
                        Some(h) if h.logs_bloom != alloy_primitives::Bloom::ZERO => v.push(n),
                        Some(_) => {}
                        None => break,
                    }
                }
                v
            }
        };
        let mut out = Vec::new();
        for n in candidates {
            let Some(block) = self.reader().block(n)? else {
                continue;
            };
            let receipts: Vec<_> = self
                .reader()
                .receipts(n)?
                .into_iter()
                .map(|r| r.receipt)
                .collect();
            let logs = block_logs(
                &block.header,
                block.hash,
                block.transactions.iter().map(|t| *t.tx_hash()),
                &receipts,
            );
            for l in logs {
                if filter.matches(&l.log) {
                    out.push(l);
                    if out.len() > limit {
                        return Ok(Err(limit));
                    }
                }
            }
        }
        Ok(Ok(out))
    }

    /// An account at the head (empty fields if it does not exist).
    pub fn account(&self, address: Address) -> Result<Account, ChainError> {
        Ok(self.db.account(address)?.unwrap_or_default_account())
    }

    /// The nonce a new transaction from `address` should use, counting
    /// pooled ones.
    pub fn pending_nonce(&self, address: Address) -> Result<u64, ChainError> {
        let (pool, account) = self.pool_with_account(address)?;
        Ok(pool.pending_nonce(address, account.nonce))
    }

    /// An account after block `number` (empty fields if it did not exist).
    pub fn account_at(&self, address: Address, number: u64) -> Result<Account, ChainError> {
        Ok(self
            .db
            .account_at(address, number)?
            .unwrap_or_default_account())
    }

    /// Code at an address after block `number`.
    pub fn code_at(&self, address: Address, number: u64) -> Result<Bytes, ChainError> {
        Ok(self.db.code_at_block(address, number)?)
    }

    /// A storage slot after block `number`.
    pub fn storage_at(
        &self,
        address: Address,
        slot: U256,
        number: u64,
    ) -> Result<U256, ChainError> {
        Ok(self.db.storage_at(address, slot, number)?)
    }

    /// `eth_call` on the state after block `number` (`None`: the head).
    pub fn call_at(
        &self,
        number: Option<u64>,
        req: &CallRequest,
        overrides: &StateOverrides,
    ) -> Result<CallOutcome, CallError> {
        lattice_evm::call_at(
            &self.db,
            number,
            req,
            overrides,
            self.config.call_gas_cap,
            &self.config.precompiles,
        )
    }

    /// `eth_estimateGas` on the state after block `number` (`None`: the
    /// head).
    pub fn estimate_gas_at(
        &self,
        number: Option<u64>,
        req: &CallRequest,
        overrides: &StateOverrides,
    ) -> Result<u64, CallError> {
        lattice_evm::estimate_gas_at(
            &self.db,
            number,
            req,
            overrides,
            self.config.call_gas_cap,
            &self.config.precompiles,
        )
    }
}

trait OrEmpty {
    fn unwrap_or_default_account(self) -> Account;
}

impl OrEmpty for Option<Account> {
    fn unwrap_or_default_account(self) -> Account {
        self.unwrap_or(Account {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: alloy_primitives::KECCAK256_EMPTY,
            storage_root: alloy_consensus::EMPTY_ROOT_HASH,
        })
    }
}

fn tx_record(block: &BlockRecord, index: u64) -> Option<TxRecord> {
    let i = usize::try_from(index).ok()?;
    Some(TxRecord {
        tx: block.transactions.get(i)?.clone(),
        sender: *block.senders.get(i)?,
        block_number: block.header.number,
        block_hash: block.hash,
        index,
        base_fee: block.header.base_fee_per_gas.unwrap_or_default(),
    })
}

fn receipt_record(tx: TxRecord, stored: crate::store::StoredReceipt) -> ReceiptRecord {
    let contract_address = tx
        .tx
        .kind()
        .is_create()
        .then(|| tx.sender.create(tx.tx.nonce()));
    ReceiptRecord {
        tx,
        gas_used: stored.gas_used,
        contract_address,
        first_log_index: stored.first_log_index,
        receipt: stored.receipt,
    }
}

fn block_logs(
    header: &Header,
    hash: B256,
    tx_hashes: impl Iterator<Item = B256>,
    receipts: &[lattice_evm::ReceiptEnvelope],
) -> Vec<LogRecord> {
    let mut out = Vec::new();
    let mut log_index = 0u64;
    for (i, (tx_hash, receipt)) in tx_hashes.zip(receipts).enumerate() {
        for log in receipt.logs() {
            out.push(LogRecord {
                log: log.clone(),
                block_number: header.number,
                block_hash: hash,
                block_timestamp: header.timestamp,
                tx_hash,
                tx_index: i as u64,
                log_index,
            });
            log_index += 1;
        }
    }
    out
}
