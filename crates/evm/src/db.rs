//! The redb state database: tables, readers, the read snapshot revm executes
//! against, and the one-transaction block commit.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use alloy_consensus::Header;
use alloy_primitives::map::HashMap as FastMap;
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_rlp::Decodable;
use alloy_trie::{EMPTY_ROOT_HASH, KECCAK_EMPTY, TrieAccount};
use redb::{
    Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use revm::{DatabaseRef, bytecode::Bytecode, state::AccountInfo};

use crate::{
    error::StateError,
    execute::{ExecutedBlock, StateDiff},
    pending::PendingState,
    trie::{self, Merge},
};

const ACCOUNTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("accounts");
const STORAGE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("storage");
const CODE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("code");
const BLOCK_HASHES: TableDefinition<u64, &[u8]> = TableDefinition::new("block_hashes");
const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `keccak(address) ‖ block` → the account before that block changed it
/// (empty: it did not exist).
const ACCOUNT_HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("account_history");
/// `keccak(address) ‖ keccak(slot) ‖ block` → the slot's value before that
/// block changed it.
const STORAGE_HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("storage_history");

const HEAD_KEY: &str = "head";
const CHAIN_ID_KEY: &str = "chain_id";
const ACCOUNT_LEN: usize = 8 + 32 + 32 + 32;

/// An account as stored: what the state trie commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    /// Number of transactions sent (or 1 for a created contract).
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// keccak of the runtime code, [`KECCAK_EMPTY`] for none.
    pub code_hash: B256,
    /// Root of the account's storage trie.
    pub storage_root: B256,
}

impl Default for Account {
    fn default() -> Self {
        Self {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: KECCAK_EMPTY,
            storage_root: EMPTY_ROOT_HASH,
        }
    }
}

impl Account {
    fn encode(&self) -> [u8; ACCOUNT_LEN] {
        let mut out = [0u8; ACCOUNT_LEN];
        out[..8].copy_from_slice(&self.nonce.to_be_bytes());
        out[8..40].copy_from_slice(&self.balance.to_be_bytes::<32>());
        out[40..72].copy_from_slice(self.code_hash.as_slice());
        out[72..].copy_from_slice(self.storage_root.as_slice());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() != ACCOUNT_LEN {
            return Err(StateError::Corrupt(format!(
                "account record of {} bytes",
                bytes.len()
            )));
        }
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[..8]);
        Ok(Self {
            nonce: u64::from_be_bytes(nonce),
            balance: U256::from_be_slice(&bytes[8..40]),
            code_hash: B256::from_slice(&bytes[40..72]),
            storage_root: B256::from_slice(&bytes[72..]),
        })
    }
}

impl From<Account> for TrieAccount {
    fn from(a: Account) -> Self {
        TrieAccount::new(a.nonce, a.balance, a.storage_root, a.code_hash)
    }
}

/// The last committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Block number.
    pub number: u64,
    /// Block hash (keccak of the RLP header).
    pub hash: B256,
    /// State root after the block.
    pub state_root: B256,
}

impl Head {
    fn encode(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..8].copy_from_slice(&self.number.to_be_bytes());
        out[8..40].copy_from_slice(self.hash.as_slice());
        out[40..].copy_from_slice(self.state_root.as_slice());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        if bytes.len() != 72 {
            return Err(StateError::Corrupt(format!(
                "head record of {} bytes",
                bytes.len()
            )));
        }
        let mut number = [0u8; 8];
        number.copy_from_slice(&bytes[..8]);
        Ok(Self {
            number: u64::from_be_bytes(number),
            hash: B256::from_slice(&bytes[8..40]),
            state_root: B256::from_slice(&bytes[40..]),
        })
    }
}

fn decode_u256(bytes: &[u8]) -> Result<U256, StateError> {
    if bytes.len() != 32 {
        return Err(StateError::Corrupt(format!(
            "storage value of {} bytes",
            bytes.len()
        )));
    }
    Ok(U256::from_be_slice(bytes))
}

fn storage_key(hashed_address: B256, hashed_slot: B256) -> [u8; 64] {
    let mut key = [0u8; 64];
    key[..32].copy_from_slice(hashed_address.as_slice());
    key[32..].copy_from_slice(hashed_slot.as_slice());
    key
}

/// `[prefix‖00…, prefix‖ff…]`: every storage key of one account.
fn storage_bounds(hashed_address: B256) -> ([u8; 64], [u8; 64]) {
    (
        storage_key(hashed_address, B256::ZERO),
        storage_key(hashed_address, B256::repeat_byte(0xff)),
    )
}

pub(crate) fn hash_slot(slot: U256) -> B256 {
    keccak256(slot.to_be_bytes::<32>())
}

/// Persistent chain state in one redb file (layout in the crate docs).
///
/// Readers see the last committed block; [`StateDb::commit`] replaces it
/// atomically.
#[derive(Debug)]
pub struct StateDb {
    db: Database,
    slots: Arc<Mutex<SlotCache>>,
    codes: CodeCache,
}

/// Storage slots of the head state kept in memory: contract reads (an
/// `eth_call` of a paging view reads thousands of slots) hit a hash map
/// instead of the B-tree. Entries are valid for `head` only; a commit writes
/// the new values through and moves `head`, and a reader whose snapshot is
/// of another block never touches it.
#[derive(Debug, Default)]
struct SlotCache {
    head: Option<u64>,
    /// Keyed by the EVM's own (address, slot), so a hit costs no keccak
    /// (foldhash: SipHash over the 52-byte key was a sixth of a paging view).
    values: FastMap<(Address, U256), U256>,
    /// The table key of each cached slot, for writing commits through.
    by_key: FastMap<[u8; 64], (Address, U256)>,
}

/// Most slots cached before the cache starts over (≈ 200 bytes each).
const SLOT_CACHE_MAX: usize = 1 << 20;

impl SlotCache {
    fn get(&self, head: u64, address: Address, slot: U256) -> Option<U256> {
        if self.head != Some(head) {
            return None;
        }
        self.values.get(&(address, slot)).copied()
    }

    fn fill(&mut self, head: u64, address: Address, slot: U256, key: [u8; 64], value: U256) {
        if self.head != Some(head) {
            return;
        }
        if self.values.len() >= SLOT_CACHE_MAX {
            self.clear();
        }
        self.values.insert((address, slot), value);
        self.by_key.insert(key, (address, slot));
    }

    fn clear(&mut self) {
        self.values.clear();
        self.by_key.clear();
    }
}

/// Analysed contracts kept by code hash.
type CodeCache = Arc<Mutex<HashMap<B256, Bytecode>>>;

/// Most analysed contracts kept before the code cache starts over.
const CODE_CACHE_MAX: usize = 4096;

fn lock_codes(
    m: &Mutex<HashMap<B256, Bytecode>>,
) -> std::sync::MutexGuard<'_, HashMap<B256, Bytecode>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_slots(m: &Mutex<SlotCache>) -> std::sync::MutexGuard<'_, SlotCache> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateDb {
    /// Opens or creates the state database at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let db = Database::create(path.as_ref())?;
        let tx = db.begin_write()?;
        tx.open_table(ACCOUNTS)?;
        tx.open_table(STORAGE)?;
        tx.open_table(CODE)?;
        tx.open_table(BLOCK_HASHES)?;
        tx.open_table(HEADERS)?;
        tx.open_table(META)?;
        tx.open_table(ACCOUNT_HISTORY)?;
        tx.open_table(STORAGE_HISTORY)?;
        tx.commit()?;
        let this = Self {
            db,
            slots: Arc::default(),
            codes: Arc::default(),
        };
        let head = this.latest()?.map(|h| h.number);
        lock_slots(&this.slots).head = head;
        Ok(this)
    }

    /// The last committed block, `None` before genesis.
    pub fn latest(&self) -> Result<Option<Head>, StateError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let head = meta.get(HEAD_KEY)?;
        head.map(|v| Head::decode(v.value())).transpose()
    }

    /// State root of the last committed block.
    pub fn state_root(&self) -> Result<B256, StateError> {
        Ok(self.latest()?.ok_or(StateError::NotInitialized)?.state_root)
    }

    /// Chain id written at genesis.
    pub fn chain_id(&self) -> Result<u64, StateError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let v = meta.get(CHAIN_ID_KEY)?.ok_or(StateError::NotInitialized)?;
        let bytes: [u8; 8] = v
            .value()
            .try_into()
            .map_err(|_| StateError::Corrupt("chain id record".into()))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// Header of a committed block.
    pub fn header(&self, number: u64) -> Result<Option<Header>, StateError> {
        let tx = self.db.begin_read()?;
        let headers = tx.open_table(HEADERS)?;
        let Some(v) = headers.get(number)? else {
            return Ok(None);
        };
        let header = Header::decode(&mut v.value())
            .map_err(|e| StateError::Corrupt(format!("header {number}: {e}")))?;
        Ok(Some(header))
    }

    /// Header of the last committed block.
    pub fn latest_header(&self) -> Result<Header, StateError> {
        let head = self.latest()?.ok_or(StateError::NotInitialized)?;
        self.header(head.number)?
            .ok_or_else(|| StateError::Corrupt(format!("head {} has no header", head.number)))
    }

    /// Hash of a committed block.
    pub fn block_hash(&self, number: u64) -> Result<Option<B256>, StateError> {
        self.snapshot()?.block_hash(number)
    }

    /// An account at the head, `None` if it does not exist (or is empty).
    pub fn account(&self, address: Address) -> Result<Option<Account>, StateError> {
        self.snapshot()?.account(keccak256(address))
    }

    /// A storage slot at the head (zero if unset).
    pub fn storage(&self, address: Address, slot: U256) -> Result<U256, StateError> {
        self.snapshot()?
            .storage(keccak256(address), hash_slot(slot))
    }

    /// Code by hash, `None` if unknown (empty code for [`KECCAK_EMPTY`]).
    pub fn code(&self, code_hash: B256) -> Result<Option<Bytes>, StateError> {
        self.snapshot()?.code(code_hash)
    }

    /// Code of the account at `address` (empty if none).
    pub fn code_at(&self, address: Address) -> Result<Bytes, StateError> {
        let snap = self.snapshot()?;
        let Some(account) = snap.account(keccak256(address))? else {
            return Ok(Bytes::new());
        };
        snap.code(account.code_hash)?
            .ok_or_else(|| StateError::Corrupt(format!("missing code {}", account.code_hash)))
    }

    /// Recomputes the state root from the stored accounts and storage alone
    /// (every storage root included), ignoring the root stored in `meta`.
    /// An account whose stored storage root disagrees with its storage is
    /// reported as corruption.
    pub fn recompute_state_root(&self) -> Result<B256, StateError> {
        let tx = self.db.begin_read()?;
        let accounts = tx.open_table(ACCOUNTS)?;
        let storage = tx.open_table(STORAGE)?;
        let mut all = Vec::new();
        for row in accounts.iter()? {
            let (k, v) = row?;
            let key = B256::try_from(k.value())
                .map_err(|_| StateError::Corrupt("account key length".into()))?;
            let account = Account::decode(v.value())?;
            let (lo, hi) = storage_bounds(key);
            let mut slots = Vec::new();
            for row in storage.range(&lo[..]..=&hi[..])? {
                let (k, v) = row?;
                slots.push((B256::from_slice(&k.value()[32..]), decode_u256(v.value())?));
            }
            let root = trie::storage_root(slots);
            if root != account.storage_root {
                return Err(StateError::Corrupt(format!(
                    "account {key}: stored storage root {} but storage hashes to {root}",
                    account.storage_root
                )));
            }
            all.push((key, account));
        }
        Ok(trie::state_root(all))
    }

    /// A consistent read view of the last committed block.
    pub(crate) fn snapshot(&self) -> Result<StateSnapshot, StateError> {
        let tx = self.db.begin_read()?;
        let head = tx
            .open_table(META)?
            .get(HEAD_KEY)?
            .map(|v| Head::decode(v.value()))
            .transpose()?;
        Ok(StateSnapshot {
            accounts: tx.open_table(ACCOUNTS)?,
            storage: tx.open_table(STORAGE)?,
            code: tx.open_table(CODE)?,
            block_hashes: tx.open_table(BLOCK_HASHES)?,
            account_history: tx.open_table(ACCOUNT_HISTORY)?,
            storage_history: tx.open_table(STORAGE_HISTORY)?,
            at: None,
            slots: Arc::clone(&self.slots),
            codes: Arc::clone(&self.codes),
            hashed: RefCell::default(),
            head,
            pending: None,
        })
    }

    /// A read view of the committed head with `pending` (blocks built on
    /// the head, not committed) layered over it; refused if the head moved
    /// since the pending chain was built.
    pub(crate) fn snapshot_pending(
        &self,
        pending: &PendingState,
    ) -> Result<StateSnapshot, StateError> {
        let mut snap = self.snapshot()?;
        if pending.is_empty() {
            return Ok(snap);
        }
        let head = snap.head.ok_or(StateError::NotInitialized)?;
        if pending.base() != Some(head.hash) {
            let (number, parent) = pending.tip().unwrap_or_default();
            return Err(StateError::NotOnHead {
                number,
                parent,
                head: head.hash,
            });
        }
        snap.pending = Some(Arc::new(pending.clone()));
        Ok(snap)
    }

    /// A read view of the state after block `number` (the head, or any
    /// earlier block: every block records what it overwrote).
    pub(crate) fn snapshot_at(&self, number: u64) -> Result<StateSnapshot, StateError> {
        let mut snap = self.snapshot()?;
        let head = snap.head.ok_or(StateError::NotInitialized)?;
        if number > head.number {
            return Err(StateError::UnknownBlock {
                number,
                head: head.number,
            });
        }
        if number < head.number {
            snap.at = Some(number);
        }
        Ok(snap)
    }

    /// An account after block `number` (`None` if it did not exist).
    pub fn account_at(&self, address: Address, number: u64) -> Result<Option<Account>, StateError> {
        self.snapshot_at(number)?.account(keccak256(address))
    }

    /// A storage slot after block `number`.
    pub fn storage_at(
        &self,
        address: Address,
        slot: U256,
        number: u64,
    ) -> Result<U256, StateError> {
        self.snapshot_at(number)?
            .storage(keccak256(address), hash_slot(slot))
    }

    /// Code of the account at `address` after block `number`.
    pub fn code_at_block(&self, address: Address, number: u64) -> Result<Bytes, StateError> {
        let snap = self.snapshot_at(number)?;
        let Some(account) = snap.account(keccak256(address))? else {
            return Ok(Bytes::new());
        };
        snap.code(account.code_hash)?
            .ok_or_else(|| StateError::Corrupt(format!("missing code {}", account.code_hash)))
    }

    /// Commits an executed block: its state diff, header, hash and the new
    /// head, all in one write transaction. Fails without writing anything if
    /// the block's parent is not the current head.
    pub fn commit(&self, block: &ExecutedBlock) -> Result<Head, StateError> {
        self.write_block(&block.header, &block.diff, None, |_| Ok(()))
    }

    /// [`StateDb::commit`] that also runs `extra` inside the same write
    /// transaction, so that a caller's own tables (blocks, receipts, indexes)
    /// become visible atomically with the state; if `extra` fails nothing is
    /// written.
    pub fn commit_with(
        &self,
        block: &ExecutedBlock,
        extra: impl FnOnce(&WriteTransaction) -> Result<(), StateError>,
    ) -> Result<Head, StateError> {
        self.write_block(&block.header, &block.diff, None, extra)
    }

    /// The underlying redb database, for a caller's own tables (which must
    /// not use this crate's table names: `accounts`, `storage`, `code`,
    /// `block_hashes`, `headers`, `meta`).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Writes a block; `chain_id` is `Some` only for genesis (which must find
    /// an empty database).
    pub(crate) fn write_block(
        &self,
        header: &Header,
        diff: &StateDiff,
        chain_id: Option<u64>,
        extra: impl FnOnce(&WriteTransaction) -> Result<(), StateError>,
    ) -> Result<Head, StateError> {
        let hash = header.hash_slow();
        let head = Head {
            number: header.number,
            hash,
            state_root: header.state_root,
        };
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let current = meta
                .get(HEAD_KEY)?
                .map(|v| Head::decode(v.value()))
                .transpose()?;
            match (current, chain_id) {
                (Some(_), Some(_)) => return Err(StateError::AlreadyInitialized),
                (None, None) => return Err(StateError::NotInitialized),
                (Some(cur), None)
                    if cur.hash != header.parent_hash || cur.number + 1 != header.number =>
                {
                    return Err(StateError::NotOnHead {
                        number: header.number,
                        parent: header.parent_hash,
                        head: cur.hash,
                    });
                }
                _ => {}
            }
            if let Some(id) = chain_id {
                meta.insert(CHAIN_ID_KEY, &id.to_be_bytes()[..])?;
            }
            meta.insert(HEAD_KEY, &head.encode()[..])?;

            let mut accounts = tx.open_table(ACCOUNTS)?;
            let mut storage = tx.open_table(STORAGE)?;
            let mut account_history = tx.open_table(ACCOUNT_HISTORY)?;
            let mut storage_history = tx.open_table(STORAGE_HISTORY)?;
            // Genesis overwrites nothing.
            let record = chain_id.is_none();
            let number = header.number.to_be_bytes();
            for change in &diff.accounts {
                let hashed = change.hashed_address;
                if record {
                    let mut key = [0u8; 40];
                    key[..32].copy_from_slice(hashed.as_slice());
                    key[32..].copy_from_slice(&number);
                    let prev = accounts.get(hashed.as_slice())?.map(|v| v.value().to_vec());
                    account_history.insert(&key[..], prev.as_deref().unwrap_or_default())?;
                }
                let mut recorded = std::collections::HashSet::new();
                if change.storage_wiped || change.account.is_none() {
                    let (lo, hi) = storage_bounds(hashed);
                    if record {
                        for row in storage.range(&lo[..]..=&hi[..])? {
                            let (k, v) = row?;
                            let mut key = [0u8; 72];
                            key[..64].copy_from_slice(k.value());
                            key[64..].copy_from_slice(&number);
                            storage_history.insert(&key[..], v.value())?;
                            recorded.insert(B256::from_slice(&k.value()[32..]));
                        }
                    }
                    storage.retain_in(&lo[..]..=&hi[..], |_, _| false)?;
                }
                for (slot, value) in &change.storage {
                    let key = storage_key(hashed, *slot);
                    if record && !recorded.contains(slot) {
                        let prev = storage
                            .get(&key[..])?
                            .map(|v| v.value().to_vec())
                            .unwrap_or_else(|| vec![0u8; 32]);
                        let mut hkey = [0u8; 72];
                        hkey[..64].copy_from_slice(&key);
                        hkey[64..].copy_from_slice(&number);
                        storage_history.insert(&hkey[..], &prev[..])?;
                    }
                    if value.is_zero() {
                        storage.remove(&key[..])?;
                    } else {
                        storage.insert(&key[..], &value.to_be_bytes::<32>()[..])?;
                    }
                }
                match &change.account {
                    Some(account) => {
                        accounts.insert(hashed.as_slice(), &account.encode()[..])?;
                    }
                    None => {
                        accounts.remove(hashed.as_slice())?;
                    }
                }
            }
            let mut code = tx.open_table(CODE)?;
            for (hash, bytes) in &diff.codes {
                code.insert(hash.as_slice(), bytes.as_ref())?;
            }
            tx.open_table(BLOCK_HASHES)?
                .insert(header.number, hash.as_slice())?;
            tx.open_table(HEADERS)?
                .insert(header.number, &alloy_rlp::encode(header)[..])?;
        }
        extra(&tx)?;
        tx.commit()?;
        let mut cache = lock_slots(&self.slots);
        if diff
            .accounts
            .iter()
            .any(|c| c.storage_wiped || c.account.is_none())
        {
            // Rare (creations, deletions): start over rather than hunt keys.
            cache.clear();
        }
        for change in &diff.accounts {
            for (slot, value) in &change.storage {
                let key = storage_key(change.hashed_address, *slot);
                if let Some(raw) = cache.by_key.get(&key).copied() {
                    cache.values.insert(raw, *value);
                }
            }
        }
        cache.head = Some(header.number);
        drop(cache);
        Ok(head)
    }
}

/// A read transaction over the state tables: what revm reads while a block
/// executes. It sees the head at the time it was taken, whatever commits
/// happen meanwhile.
#[derive(Debug)]
pub(crate) struct StateSnapshot {
    accounts: ReadOnlyTable<&'static [u8], &'static [u8]>,
    storage: ReadOnlyTable<&'static [u8], &'static [u8]>,
    code: ReadOnlyTable<&'static [u8], &'static [u8]>,
    block_hashes: ReadOnlyTable<u64, &'static [u8]>,
    account_history: ReadOnlyTable<&'static [u8], &'static [u8]>,
    storage_history: ReadOnlyTable<&'static [u8], &'static [u8]>,
    /// `Some(n)`: read the state after block `n` (before the head) by
    /// taking, per key, the value the first later block overwrote.
    at: Option<u64>,
    /// The head's slot cache (used only when `at` is `None`).
    slots: Arc<Mutex<SlotCache>>,
    /// Analysed code shared by every snapshot of this database.
    codes: CodeCache,
    /// keccak(address) of addresses already seen by this snapshot.
    hashed: RefCell<FastMap<Address, B256>>,
    pub(crate) head: Option<Head>,
    /// Uncommitted blocks read before the tables (only with `at` `None`).
    pending: Option<Arc<PendingState>>,
}

type Rows<'a, T> = Box<dyn Iterator<Item = Result<T, StateError>> + 'a>;

impl StateSnapshot {
    pub(crate) fn account(&self, hashed_address: B256) -> Result<Option<Account>, StateError> {
        if let Some(account) = self
            .pending
            .as_ref()
            .and_then(|p| p.account(&hashed_address))
        {
            return Ok(account);
        }
        if let Some(n) = self.at {
            let mut lo = [0u8; 40];
            lo[..32].copy_from_slice(hashed_address.as_slice());
            lo[32..].copy_from_slice(&(n + 1).to_be_bytes());
            let mut hi = lo;
            hi[32..].copy_from_slice(&u64::MAX.to_be_bytes());
            if let Some(row) = self.account_history.range(&lo[..]..=&hi[..])?.next() {
                let (_, v) = row?;
                return match v.value() {
                    [] => Ok(None),
                    bytes => Account::decode(bytes).map(Some),
                };
            }
        }
        self.accounts
            .get(hashed_address.as_slice())?
            .map(|v| Account::decode(v.value()))
            .transpose()
    }

    pub(crate) fn storage(
        &self,
        hashed_address: B256,
        hashed_slot: B256,
    ) -> Result<U256, StateError> {
        self.storage_uncached(hashed_address, hashed_slot)
    }

    fn storage_uncached(
        &self,
        hashed_address: B256,
        hashed_slot: B256,
    ) -> Result<U256, StateError> {
        if let Some(storage) = self
            .pending
            .as_ref()
            .and_then(|p| p.storage(&hashed_address))
        {
            if let Some(value) = storage.slots.get(&hashed_slot) {
                return Ok(*value);
            }
            if storage.wiped {
                return Ok(U256::ZERO);
            }
        }
        if let Some(n) = self.at {
            let mut lo = [0u8; 72];
            lo[..64].copy_from_slice(&storage_key(hashed_address, hashed_slot));
            lo[64..].copy_from_slice(&(n + 1).to_be_bytes());
            let mut hi = lo;
            hi[64..].copy_from_slice(&u64::MAX.to_be_bytes());
            if let Some(row) = self.storage_history.range(&lo[..]..=&hi[..])?.next() {
                let (_, v) = row?;
                return decode_u256(v.value());
            }
        }
        match self
            .storage
            .get(&storage_key(hashed_address, hashed_slot)[..])?
        {
            Some(v) => decode_u256(v.value()),
            None => Ok(U256::ZERO),
        }
    }

    /// Every stored slot of an account, ascending by hashed slot.
    pub(crate) fn storage_slots(
        &self,
        hashed_address: B256,
    ) -> Result<Rows<'_, (B256, U256)>, StateError> {
        let (lo, hi) = storage_bounds(hashed_address);
        let range = self.storage.range(&lo[..]..=&hi[..])?;
        let stored = range.map(|row| {
            let (k, v) = row?;
            Ok((B256::from_slice(&k.value()[32..]), decode_u256(v.value())?))
        });
        let Some(pending) = self
            .pending
            .as_ref()
            .and_then(|p| p.storage(&hashed_address))
        else {
            return Ok(Box::new(stored));
        };
        let changes: Vec<(B256, Option<U256>)> = pending
            .slots
            .iter()
            .map(|(k, v)| (*k, (!v.is_zero()).then_some(*v)))
            .collect();
        if pending.wiped {
            return Ok(Box::new(
                changes
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| Ok((k, v)))),
            ));
        }
        Ok(Box::new(Merge::new(stored, changes.into_iter())))
    }

    /// Every stored account, ascending by hashed address.
    pub(crate) fn accounts(&self) -> Result<Rows<'_, (B256, Account)>, StateError> {
        let stored = self.accounts.iter()?.map(|row| {
            let (k, v) = row?;
            let key = B256::try_from(k.value())
                .map_err(|_| StateError::Corrupt("account key length".into()))?;
            Ok((key, Account::decode(v.value())?))
        });
        match &self.pending {
            None => Ok(Box::new(stored)),
            Some(p) => Ok(Box::new(Merge::new(
                stored,
                p.sorted_accounts().into_iter(),
            ))),
        }
    }

    pub(crate) fn code(&self, code_hash: B256) -> Result<Option<Bytes>, StateError> {
        if code_hash == KECCAK_EMPTY {
            return Ok(Some(Bytes::new()));
        }
        if let Some(code) = self.pending.as_ref().and_then(|p| p.code(&code_hash)) {
            return Ok(Some(code.clone()));
        }
        Ok(self
            .code
            .get(code_hash.as_slice())?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    pub(crate) fn block_hash(&self, number: u64) -> Result<Option<B256>, StateError> {
        if let Some(hash) = self.pending.as_ref().and_then(|p| p.block_hash(number)) {
            return Ok(Some(hash));
        }
        self.block_hashes
            .get(number)?
            .map(|v| {
                B256::try_from(v.value())
                    .map_err(|_| StateError::Corrupt("block hash length".into()))
            })
            .transpose()
    }
}

impl DatabaseRef for StateSnapshot {
    type Error = StateError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, StateError> {
        Ok(self.account(keccak256(address))?.map(|a| AccountInfo {
            balance: a.balance,
            nonce: a.nonce,
            code_hash: a.code_hash,
            code: (a.code_hash == KECCAK_EMPTY).then(Bytecode::default),
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, StateError> {
        // Code never changes under its hash: analyse it (jump table) once.
        if let Some(code) = lock_codes(&self.codes).get(&code_hash) {
            return Ok(code.clone());
        }
        let code = match self.code(code_hash)? {
            Some(bytes) if bytes.is_empty() => Bytecode::default(),
            Some(bytes) => Bytecode::new_raw_checked(bytes)
                .map_err(|e| StateError::Corrupt(format!("code {code_hash}: {e}")))?,
            None => return Err(StateError::Corrupt(format!("missing code {code_hash}"))),
        };
        let mut codes = lock_codes(&self.codes);
        if codes.len() >= CODE_CACHE_MAX {
            codes.clear();
        }
        codes.insert(code_hash, code.clone());
        Ok(code)
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, StateError> {
        // The head's slots come from the shared cache when present.
        let cached_head = match (self.at, self.head) {
            (None, Some(h)) if self.pending.is_none() => Some(h.number),
            _ => None,
        };
        if let Some(h) = cached_head
            && let Some(v) = lock_slots(&self.slots).get(h, address, index)
        {
            return Ok(v);
        }
        let hashed = *self
            .hashed
            .borrow_mut()
            .entry(address)
            .or_insert_with(|| keccak256(address));
        let hashed_slot = hash_slot(index);
        let value = self.storage(hashed, hashed_slot)?;
        if let Some(h) = cached_head {
            let key = storage_key(hashed, hashed_slot);
            lock_slots(&self.slots).fill(h, address, index, key, value);
        }
        Ok(value)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, StateError> {
        Ok(self.block_hash(number)?.unwrap_or_default())
    }
}
