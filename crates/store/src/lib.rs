//! Content-addressed storage of model files as IPFS UnixFS DAGs.
//!
//! **Owns** the on-disk block store of a node: importing files and folders as
//! UnixFS DAGs whose CIDs equal kubo's `ipfs add` for the same settings,
//! reading them back (cat, get, ls, mmap), pins and garbage collection,
//! verification of every block against its CID, and CAR v1 import/export.
//!
//! **Never** does network I/O (serving lives in `lattice-gateway`, fetching in
//! `lattice-fetch`) and never returns a block, file byte or mapping that was not
//! checked against its CID.
//!
//! # On-disk layout
//! ```text
//! <store>/index.redb        redb: the block index, pins, file records
//! <store>/data/<id>.bin     the bytes of one imported file, contiguous
//! <store>/data/<id>.partial an import in progress (deleted on open)
//! ```
//! Tables in `index.redb`:
//! - `blocks`: multihash → location. A location is either the block bytes
//!   inline (internal DAG nodes, directories, blocks that arrived one by one)
//!   or an extent `(data id, offset, len)` of a data file, for file leaves. A
//!   raw leaf is the extent itself; a dag-pb leaf is the extent framed by a few
//!   protobuf bytes derived from its length ([`unixfs::LeafFrame`]).
//! - `files`: file-root multihash → data id, so a file can be memory-mapped
//!   as one slice ([`Store::mmap`]).
//! - `data`: data id → file-root CID and length.
//! - `pins`: CID → direct or recursive.
//! - `imports`: source fingerprint (device, inode, size, mtime, options) →
//!   root CID, so a re-run import skips files it already finished.
//!
//! # Crash safety
//! A file's bytes are written to `<id>.partial`, synced, renamed to `<id>.bin`,
//! and only then its blocks are committed to the index in one transaction; a
//! root is pinned in the same transaction as its last blocks. A kill at any
//! point leaves either no trace in the index (the stray data file is removed on
//! the next open) or a complete file.
//!
//! Main types: [`Store`], [`ImportOptions`], [`Added`], [`VerifyReport`],
//! [`PinKind`].

#![cfg_attr(not(test), warn(unused_crate_dependencies))]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use memmap2::Mmap;
use multihash::Multihash;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use sha2::{Digest, Sha256};

mod car;
mod error;
mod import;
mod pin;
mod read;
pub mod unixfs;
mod verify;

pub use error::{Result, StoreError};
pub use import::{Added, ImportOptions, Progress};
/// Largest chunk size kubo accepts (1 MiB).
pub const MAX_CHUNK: usize = import::MAX_CHUNK;
pub use car::CarImport;
pub use pin::{GcHold, GcReport, PinKind};
pub use read::{DirEntry, FileMap};
pub use verify::VerifyReport;

use unixfs::{DAG_PB, LeafFrame, SHA2_256};

pub(crate) const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
pub(crate) const FILES: TableDefinition<&[u8], u64> = TableDefinition::new("files");
pub(crate) const DATA: TableDefinition<u64, &[u8]> = TableDefinition::new("data");
pub(crate) const PINS: TableDefinition<&[u8], u8> = TableDefinition::new("pins");
pub(crate) const IMPORTS: TableDefinition<&str, &[u8]> = TableDefinition::new("imports");

/// The largest block the store accepts (kubo's bitswap limit is 1 MiB; a
/// 1 MiB dag-pb leaf needs a few bytes of framing on top).
pub const MAX_BLOCK: usize = 1024 * 1024 + 64;

/// Where a block's bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Loc {
    /// The block itself, in the index.
    Inline(Bytes),
    /// Part of a data file, as a raw block.
    Raw(Extent),
    /// Part of a data file, framed as a dag-pb UnixFS file leaf.
    PbLeaf(Extent),
}

/// A byte range of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub(crate) id: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
}

impl Loc {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            Loc::Inline(b) => {
                let mut v = Vec::with_capacity(1 + b.len());
                v.push(0);
                v.extend_from_slice(b);
                v
            }
            Loc::Raw(e) | Loc::PbLeaf(e) => {
                let mut v = Vec::with_capacity(21);
                v.push(if matches!(self, Loc::Raw(_)) { 1 } else { 2 });
                v.extend_from_slice(&e.id.to_le_bytes());
                v.extend_from_slice(&e.offset.to_le_bytes());
                v.extend_from_slice(&e.len.to_le_bytes());
                v
            }
        }
    }

    pub(crate) fn decode(v: &[u8]) -> Result<Self> {
        let bad = || StoreError::Malformed("block location in the index".into());
        let (&tag, rest) = v.split_first().ok_or_else(bad)?;
        if tag == 0 {
            return Ok(Loc::Inline(Bytes::copy_from_slice(rest)));
        }
        if rest.len() != 20 {
            return Err(bad());
        }
        let e = Extent {
            id: u64::from_le_bytes(rest[0..8].try_into().map_err(|_| bad())?),
            offset: u64::from_le_bytes(rest[8..16].try_into().map_err(|_| bad())?),
            len: u32::from_le_bytes(rest[16..20].try_into().map_err(|_| bad())?),
        };
        match tag {
            1 => Ok(Loc::Raw(e)),
            2 => Ok(Loc::PbLeaf(e)),
            _ => Err(bad()),
        }
    }

    pub(crate) fn extent(&self) -> Option<Extent> {
        match self {
            Loc::Raw(e) | Loc::PbLeaf(e) => Some(*e),
            Loc::Inline(_) => None,
        }
    }
}

/// A node's content-addressed block store. Cheap to share behind an `Arc`;
/// all methods take `&self`.
pub struct Store {
    dir: PathBuf,
    db: Database,
    next_id: AtomicU64,
    maps: Mutex<HashMap<u64, Arc<Mmap>>>,
    sync: bool,
    gate: Arc<pin::GcGate>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// sha2-256 multihash of `parts` concatenated.
pub fn sha256_multihash(parts: &[&[u8]]) -> Multihash<64> {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    // A 32-byte digest always fits a 64-byte multihash.
    Multihash::wrap(SHA2_256, &h.finalize()).unwrap_or_default()
}

/// Makes the CID of a block with the given codec and version.
pub fn make_cid(version: cid::Version, codec: u64, mh: Multihash<64>) -> Cid {
    match version {
        cid::Version::V0 if codec == DAG_PB => {
            Cid::new_v0(mh).unwrap_or_else(|_| Cid::new_v1(codec, mh))
        }
        _ => Cid::new_v1(codec, mh),
    }
}

/// Checks that `bytes` hash to `cid` (sha2-256 only).
pub fn check_block(cid: &Cid, bytes: &[u8]) -> Result<()> {
    if cid.hash().code() != SHA2_256 {
        return Err(StoreError::Unsupported(format!(
            "{cid}: multihash 0x{:x} (only sha2-256 is supported)",
            cid.hash().code()
        )));
    }
    if sha256_multihash(&[bytes]) == *cid.hash() {
        Ok(())
    } else {
        Err(StoreError::Corrupt(*cid))
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, with data files synced
    /// to disk before their blocks are indexed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(dir, true)
    }

    /// Opens the store; `sync` chooses whether data files are fsynced before
    /// they are indexed (off only for throwaway stores).
    pub fn open_with(dir: impl AsRef<Path>, sync: bool) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let data_dir = dir.join("data");
        std::fs::create_dir_all(&data_dir).map_err(StoreError::io("create", &data_dir))?;
        let db_path = dir.join("index.redb");
        let db = match Database::create(&db_path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked(dir)),
            Err(e) => return Err(e.into()),
        };
        {
            let tx = db.begin_write()?;
            tx.open_table(BLOCKS)?;
            tx.open_table(FILES)?;
            tx.open_table(DATA)?;
            tx.open_table(PINS)?;
            tx.open_table(IMPORTS)?;
            tx.commit()?;
        }
        let store = Store {
            dir,
            db,
            next_id: AtomicU64::new(0),
            maps: Mutex::new(HashMap::new()),
            sync,
            gate: Arc::default(),
        };
        let max = store.sweep_data_dir()?;
        store.next_id.store(max + 1, Ordering::SeqCst);
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn data_path(&self, id: u64) -> PathBuf {
        self.dir.join("data").join(format!("{id:016x}.bin"))
    }

    pub(crate) fn partial_path(&self, id: u64) -> PathBuf {
        self.dir.join("data").join(format!("{id:016x}.partial"))
    }

    pub(crate) fn alloc_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// Removes data files the index does not know (imports killed before they
    /// committed) and returns the highest id in use.
    fn sweep_data_dir(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let data = tx.open_table(DATA)?;
        let mut max = data.last()?.map_or(0, |(k, _)| k.value());
        let data_dir = self.dir.join("data");
        let entries = std::fs::read_dir(&data_dir).map_err(StoreError::io("list", &data_dir))?;
        for entry in entries {
            let entry = entry.map_err(StoreError::io("list", &data_dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let known = name
                .strip_suffix(".bin")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .map(|id| data.get(id).map(|v| v.is_some()))
                .transpose()?
                .unwrap_or(false);
            if !known {
                if let Some(id) = name
                    .split('.')
                    .next()
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                {
                    max = max.max(id);
                }
                tracing::debug!(file = %name, "removing unindexed data file");
                std::fs::remove_file(entry.path())
                    .map_err(StoreError::io("remove", entry.path()))?;
            }
        }
        Ok(max)
    }

    /// The mapping of data file `id`, cached.
    pub(crate) fn map(&self, id: u64) -> Result<Arc<Mmap>> {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = maps.get(&id) {
            return Ok(m.clone());
        }
        let path = self.data_path(id);
        let file = File::open(&path).map_err(StoreError::io("open", &path))?;
        // SAFETY: data files are written under a temporary name and, once
        // renamed into place, only ever rewritten to their correct bytes (a
        // repair of corruption); every read through the mapping is checked
        // against the block's hash before it is used.
        let map = unsafe { Mmap::map(&file) }.map_err(StoreError::io("map", &path))?;
        let map = Arc::new(map);
        maps.insert(id, map.clone());
        Ok(map)
    }

    pub(crate) fn forget_map(&self, id: u64) {
        self.maps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    pub(crate) fn loc(&self, mh: &Multihash<64>) -> Result<Option<Loc>> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(BLOCKS)?;
        let v = t.get(mh.to_bytes().as_slice())?;
        v.map(|v| Loc::decode(v.value())).transpose()
    }

    /// The bytes of `e` in its data file (not yet verified).
    pub(crate) fn extent_bytes(&self, e: Extent) -> Result<(Arc<Mmap>, std::ops::Range<usize>)> {
        let map = self.map(e.id)?;
        let start =
            usize::try_from(e.offset).map_err(|_| StoreError::Malformed("extent offset".into()))?;
        let end = start + e.len as usize;
        if end > map.len() {
            return Err(StoreError::Malformed(format!(
                "data file {:016x} is shorter than the index says",
                e.id
            )));
        }
        Ok((map, start..end))
    }

    /// Reads a block by its location and checks it against `cid`.
    pub(crate) fn read_loc(&self, cid: &Cid, loc: &Loc) -> Result<Bytes> {
        let bytes = match loc {
            Loc::Inline(b) => b.clone(),
            Loc::Raw(e) => {
                let (map, r) = self.extent_bytes(*e)?;
                Bytes::copy_from_slice(&map[r])
            }
            Loc::PbLeaf(e) => {
                let (map, r) = self.extent_bytes(*e)?;
                let frame = LeafFrame::new(u64::from(e.len));
                let mut v = Vec::with_capacity(frame.block_len(u64::from(e.len)) as usize);
                v.extend_from_slice(&frame.prefix);
                v.extend_from_slice(&map[r]);
                v.extend_from_slice(&frame.suffix);
                Bytes::from(v)
            }
        };
        check_block(cid, &bytes)?;
        Ok(bytes)
    }

    /// Checks a located block's hash without copying it out.
    pub(crate) fn check_loc(&self, cid: &Cid, loc: &Loc) -> Result<()> {
        let ok = match loc {
            Loc::Inline(b) => return check_block(cid, b),
            Loc::Raw(e) => {
                let (map, r) = self.extent_bytes(*e)?;
                sha256_multihash(&[&map[r]]) == *cid.hash()
            }
            Loc::PbLeaf(e) => {
                let (map, r) = self.extent_bytes(*e)?;
                let frame = LeafFrame::new(u64::from(e.len));
                sha256_multihash(&[&frame.prefix, &map[r], &frame.suffix]) == *cid.hash()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(StoreError::Corrupt(*cid))
        }
    }

    /// Whether the store holds a block with `cid`'s multihash.
    pub fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.loc(cid.hash())?.is_some())
    }

    /// The block `cid`, checked against its hash. `NotFound` if absent,
    /// `Corrupt` if the stored bytes no longer match.
    pub fn block(&self, cid: &Cid) -> Result<Bytes> {
        let loc = self.loc(cid.hash())?.ok_or(StoreError::NotFound(*cid))?;
        self.read_loc(cid, &loc)
    }

    /// Size of the block `cid` without reading it.
    pub fn block_size(&self, cid: &Cid) -> Result<u64> {
        let loc = self.loc(cid.hash())?.ok_or(StoreError::NotFound(*cid))?;
        Ok(match loc {
            Loc::Inline(b) => b.len() as u64,
            Loc::Raw(e) => u64::from(e.len),
            Loc::PbLeaf(e) => LeafFrame::new(u64::from(e.len)).block_len(u64::from(e.len)),
        })
    }

    /// Stores blocks after checking each against its CID. Nothing is stored
    /// if any block is bad. A block already stored intact is left alone; one
    /// whose stored copy is corrupt is repaired in place (an inline copy is
    /// replaced, bytes in a data file are rewritten), so fetching a block
    /// again heals what `verify` reported.
    pub fn put_blocks(&self, blocks: &[(Cid, Bytes)]) -> Result<()> {
        for (cid, bytes) in blocks {
            if bytes.len() > MAX_BLOCK {
                return Err(StoreError::Invalid(format!(
                    "block {cid} is {} bytes, over the {MAX_BLOCK}-byte limit",
                    bytes.len()
                )));
            }
            check_block(cid, bytes)?;
        }
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(BLOCKS)?;
            for (cid, bytes) in blocks {
                let key = cid.hash().to_bytes();
                let old = t
                    .get(key.as_slice())?
                    .map(|v| Loc::decode(v.value()))
                    .transpose()?;
                match old {
                    None => {}
                    Some(Loc::Inline(old)) if old == *bytes => continue,
                    Some(Loc::Inline(_)) => {
                        tracing::warn!(%cid, "replacing a corrupt stored block")
                    }
                    Some(loc) => {
                        if self.check_loc(cid, &loc).is_ok() {
                            continue;
                        }
                        self.repair_extent(cid, &loc, bytes)?;
                        continue;
                    }
                }
                t.insert(
                    key.as_slice(),
                    Loc::Inline(bytes.clone()).encode().as_slice(),
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Rewrites the data-file bytes of a leaf whose stored copy is corrupt,
    /// from `block` (already checked against `cid`).
    fn repair_extent(&self, cid: &Cid, loc: &Loc, block: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let Some(e) = loc.extent() else { return Ok(()) };
        let data = match loc {
            Loc::PbLeaf(_) => {
                let f = LeafFrame::new(u64::from(e.len));
                block
                    .get(f.prefix.len()..block.len().saturating_sub(f.suffix.len()))
                    .ok_or_else(|| StoreError::Malformed(format!("{cid}: leaf framing")))?
            }
            _ => block,
        };
        if data.len() != e.len as usize {
            return Err(StoreError::Malformed(format!(
                "{cid}: leaf length differs from the index"
            )));
        }
        tracing::warn!(%cid, id = e.id, offset = e.offset, "repairing corrupt bytes in a data file");
        let path = self.data_path(e.id);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        f.write_all_at(data, e.offset)
            .map_err(StoreError::io("write", &path))?;
        if self.sync {
            f.sync_data().map_err(StoreError::io("sync", &path))?;
        }
        Ok(())
    }

    /// Checks block `cid` wherever it is stored and returns its links:
    /// `None` when absent, `Corrupt` when its stored bytes are bad.
    pub fn checked_links(&self, cid: &Cid) -> Result<Option<Vec<Cid>>> {
        match self.loc(cid.hash())? {
            None => Ok(None),
            Some(loc @ Loc::Inline(_)) => {
                let b = self.read_loc(cid, &loc)?;
                unixfs::links_of(cid, &b).map(Some)
            }
            Some(loc) => {
                self.check_loc(cid, &loc)?;
                Ok(Some(Vec::new()))
            }
        }
    }

    /// Stores one block, checked against `cid`.
    pub fn put_block(&self, cid: &Cid, bytes: Bytes) -> Result<()> {
        self.put_blocks(&[(*cid, bytes)])
    }

    /// CIDv1 (or v0) of `bytes` as a block of `codec`, and stores it.
    pub fn put_new_block(&self, version: cid::Version, codec: u64, bytes: Bytes) -> Result<Cid> {
        let cid = make_cid(version, codec, sha256_multihash(&[&bytes]));
        self.put_block(&cid, bytes)?;
        Ok(cid)
    }

    /// Number of blocks in the index.
    pub fn block_count(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(BLOCKS)?.len()?)
    }
}
