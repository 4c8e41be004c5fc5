//! Executed but uncommitted blocks layered over the committed head, so that a
//! block can be executed as the child of a block that consensus has not yet
//! finalized (a notarized parent).

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy_primitives::{B256, Bytes, U256};

use crate::{db::Account, error::StateError, execute::ExecutedBlock};

/// The changes of a chain of executed, uncommitted blocks that descends from
/// the committed head: what [`crate::execute_block_on`] reads before the
/// database. Nothing here is ever written; committing stays
/// [`crate::StateDb::commit`]'s job, one block at a time, in order.
#[derive(Debug, Clone, Default)]
pub struct PendingState {
    /// Hash of the committed head the first pending block builds on.
    base: Option<B256>,
    /// The last pending block: `(number, hash)`.
    tip: Option<(u64, B256)>,
    accounts: HashMap<B256, Option<Account>>,
    storage: HashMap<B256, PendingStorage>,
    codes: HashMap<B256, Bytes>,
    block_hashes: HashMap<u64, B256>,
    tx_hashes: HashSet<B256>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct PendingStorage {
    /// Every slot stored before the pending blocks is gone.
    pub(crate) wiped: bool,
    /// Written slots by hashed slot; zero deletes.
    pub(crate) slots: BTreeMap<B256, U256>,
}

impl PendingState {
    /// No pending block: reads go straight to the committed head.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `block`, which must be the child of the last pending block
    /// (or, for the first, of the committed head).
    pub fn push(&mut self, block: &ExecutedBlock) -> Result<(), StateError> {
        if let Some((number, hash)) = self.tip
            && (block.header.parent_hash != hash || block.header.number != number + 1)
        {
            return Err(StateError::NotOnHead {
                number: block.header.number,
                parent: block.header.parent_hash,
                head: hash,
            });
        }
        if self.base.is_none() {
            self.base = Some(block.header.parent_hash);
        }
        for change in &block.diff.accounts {
            let hashed = change.hashed_address;
            self.accounts.insert(hashed, change.account);
            let storage = self.storage.entry(hashed).or_default();
            if change.storage_wiped || change.account.is_none() {
                storage.wiped = true;
                storage.slots.clear();
            }
            for (slot, value) in &change.storage {
                storage.slots.insert(*slot, *value);
            }
        }
        for (hash, code) in &block.diff.codes {
            self.codes.insert(*hash, code.clone());
        }
        self.block_hashes.insert(block.header.number, block.hash);
        self.tx_hashes
            .extend(block.transactions.iter().map(|t| *t.tx_hash()));
        self.tip = Some((block.header.number, block.hash));
        Ok(())
    }

    /// Whether no block is pending.
    pub fn is_empty(&self) -> bool {
        self.tip.is_none()
    }

    /// Hash of the committed block the pending chain starts from.
    pub fn base(&self) -> Option<B256> {
        self.base
    }

    /// `(number, hash)` of the last pending block.
    pub fn tip(&self) -> Option<(u64, B256)> {
        self.tip
    }

    /// Whether a pending block includes the transaction with this hash.
    pub fn includes(&self, tx_hash: &B256) -> bool {
        self.tx_hashes.contains(tx_hash)
    }

    pub(crate) fn account(&self, hashed: &B256) -> Option<Option<Account>> {
        self.accounts.get(hashed).copied()
    }

    pub(crate) fn storage(&self, hashed: &B256) -> Option<&PendingStorage> {
        self.storage.get(hashed)
    }

    pub(crate) fn code(&self, hash: &B256) -> Option<&Bytes> {
        self.codes.get(hash)
    }

    pub(crate) fn block_hash(&self, number: u64) -> Option<B256> {
        self.block_hashes.get(&number).copied()
    }

    /// Changed accounts ascending by hashed address (`None`: deleted).
    pub(crate) fn sorted_accounts(&self) -> Vec<(B256, Option<Account>)> {
        let mut v: Vec<_> = self.accounts.iter().map(|(k, a)| (*k, *a)).collect();
        v.sort_unstable_by_key(|(k, _)| *k);
        v
    }
}
