//! Pins and garbage collection.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex};

use cid::Cid;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use crate::unixfs::links_of;
use crate::{BLOCKS, DATA, FILES, IMPORTS, Loc, PINS, Result, Store, StoreError};

pub(crate) const DIRECT: u8 = 1;
pub(crate) const RECURSIVE: u8 = 2;

/// How a CID is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinKind {
    /// Only the block itself is kept.
    Direct,
    /// The block and everything it links to are kept.
    Recursive,
}

impl PinKind {
    fn code(self) -> u8 {
        match self {
            PinKind::Direct => DIRECT,
            PinKind::Recursive => RECURSIVE,
        }
    }
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Blocks deleted from the index.
    pub blocks_removed: u64,
    /// Data files deleted.
    pub data_files_removed: u64,
    /// Bytes of data files deleted.
    pub bytes_freed: u64,
}

impl Store {
    /// Pins `cid`. A recursive pin needs every block under it in the store;
    /// the error names the first missing one.
    pub fn pin_add(&self, cid: &Cid, kind: PinKind) -> Result<()> {
        match kind {
            PinKind::Direct => {
                if !self.has(cid)? {
                    return Err(StoreError::NotFound(*cid));
                }
            }
            PinKind::Recursive => {
                let report = self.verify_structure(cid)?;
                if let Some(first) = report.first() {
                    return Err(StoreError::NotFound(*first));
                }
            }
        }
        let tx = self.db.begin_write()?;
        {
            let mut pins = tx.open_table(PINS)?;
            let key = cid.to_bytes();
            let old = pins.get(key.as_slice())?.map(|v| v.value());
            if old != Some(RECURSIVE) {
                pins.insert(key.as_slice(), kind.code())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Pins already-complete roots recursively (used right after an import).
    pub(crate) fn pin_roots(&self, roots: &[Cid]) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut pins = tx.open_table(PINS)?;
            for root in roots {
                pins.insert(root.to_bytes().as_slice(), RECURSIVE)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes the pin on `cid`; errors if it was not pinned.
    pub fn pin_rm(&self, cid: &Cid) -> Result<()> {
        let tx = self.db.begin_write()?;
        let removed = tx
            .open_table(PINS)?
            .remove(cid.to_bytes().as_slice())?
            .is_some();
        if !removed {
            tx.abort()?;
            return Err(StoreError::Invalid(format!("{cid} is not pinned")));
        }
        tx.commit()?;
        Ok(())
    }

    /// All pins.
    pub fn pins(&self) -> Result<Vec<(Cid, PinKind)>> {
        let tx = self.db.begin_read()?;
        let pins = tx.open_table(PINS)?;
        let mut out = Vec::with_capacity(pins.len()? as usize);
        for row in pins.iter()? {
            let (k, v) = row?;
            let cid = Cid::try_from(k.value())
                .map_err(|e| StoreError::Malformed(format!("pinned CID: {e}")))?;
            let kind = if v.value() == RECURSIVE {
                PinKind::Recursive
            } else {
                PinKind::Direct
            };
            out.push((cid, kind));
        }
        Ok(out)
    }

    /// The CIDs under `root` that are missing from the store (empty when the
    /// DAG is complete). Links are read from stored nodes without rehashing.
    pub fn verify_structure(&self, root: &Cid) -> Result<Vec<Cid>> {
        let mut missing = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![*root];
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid.hash().to_bytes()) {
                continue;
            }
            match self.loc(cid.hash())? {
                None => missing.push(cid),
                Some(Loc::Inline(b)) => stack.extend(links_of(&cid, &b)?),
                Some(_) => {}
            }
        }
        Ok(missing)
    }

    /// Deletes every block no pin reaches, and data files no remaining block
    /// uses. Blocks under a pin are never removed, even if some of their DAG
    /// is missing or corrupt.
    pub fn gc(&self) -> Result<GcReport> {
        let _exclusive = self.gate.collect();
        let mut report = GcReport::default();
        let mut doomed_files = Vec::new();
        let tx = self.db.begin_write()?;
        {
            let pins = tx.open_table(PINS)?;
            let mut blocks = tx.open_table(BLOCKS)?;
            let mut keep: HashSet<Vec<u8>> = HashSet::new();
            for row in pins.iter()? {
                let (k, v) = row?;
                let Ok(cid) = Cid::try_from(k.value()) else {
                    continue;
                };
                let mut stack = vec![cid];
                while let Some(cid) = stack.pop() {
                    if !keep.insert(cid.hash().to_bytes()) {
                        continue;
                    }
                    if v.value() != RECURSIVE {
                        continue;
                    }
                    let loc = blocks
                        .get(cid.hash().to_bytes().as_slice())?
                        .map(|l| Loc::decode(l.value()))
                        .transpose()?;
                    if let Some(Loc::Inline(b)) = loc {
                        // A node that no longer decodes keeps only itself.
                        stack.extend(links_of(&cid, &b).unwrap_or_default());
                    }
                }
            }
            let mut used_ids = HashSet::new();
            let mut doomed = Vec::new();
            for row in blocks.iter()? {
                let (k, v) = row?;
                if keep.contains(k.value()) {
                    if let Some(e) = Loc::decode(v.value())?.extent() {
                        used_ids.insert(e.id);
                    }
                } else {
                    doomed.push(k.value().to_vec());
                }
            }
            for k in &doomed {
                blocks.remove(k.as_slice())?;
            }
            report.blocks_removed = doomed.len() as u64;
            let mut files = tx.open_table(FILES)?;
            let stale: Vec<Vec<u8>> = files
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(k, v)| !keep.contains(k.value()) || !used_ids.contains(&v.value()))
                .map(|(k, _)| k.value().to_vec())
                .collect();
            for k in &stale {
                files.remove(k.as_slice())?;
            }
            let mut data = tx.open_table(DATA)?;
            let unused: Vec<u64> = data
                .iter()?
                .filter_map(|r| r.ok())
                .map(|(k, _)| k.value())
                .filter(|id| !used_ids.contains(id))
                .collect();
            for id in unused {
                data.remove(id)?;
                doomed_files.push(id);
            }
            let mut imports = tx.open_table(IMPORTS)?;
            let live_roots: HashSet<Vec<u8>> = files
                .iter()?
                .filter_map(|r| r.ok())
                .map(|(k, _)| k.value().to_vec())
                .collect();
            let stale_imports: Vec<String> = imports
                .iter()?
                .filter_map(|r| r.ok())
                .filter(|(_, v)| {
                    let rec = v.value();
                    rec.len() < 16
                        || Cid::try_from(&rec[..rec.len() - 16])
                            .map(|c| !live_roots.contains(&c.hash().to_bytes()))
                            .unwrap_or(true)
                })
                .map(|(k, _)| k.value().to_string())
                .collect();
            for k in stale_imports {
                imports.remove(k.as_str())?;
            }
        }
        tx.commit()?;
        for id in doomed_files {
            self.forget_map(id);
            let path = self.data_path(id);
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    report.data_files_removed += 1;
                    report.bytes_freed += len;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove", &path)(e)),
            }
        }
        Ok(report)
    }

    /// Holds off garbage collection until the returned hold is dropped:
    /// imports and fetches take one so their not-yet-pinned blocks survive.
    /// Holds are owned (`Send`, no borrow), may be taken any number of times
    /// by any thread, and wait only while a collection is running.
    pub fn gc_hold(&self) -> GcHold {
        self.gate.hold()
    }

    /// Whether the store has any pin on `cid` (for tests and RPC).
    pub fn is_pinned(&self, cid: &Cid) -> Result<Option<PinKind>> {
        let tx = self.db.begin_read()?;
        let pins = tx.open_table(PINS)?;
        Ok(pins.get(cid.to_bytes().as_slice())?.map(|v| {
            if v.value() == RECURSIVE {
                PinKind::Recursive
            } else {
                PinKind::Direct
            }
        }))
    }
}

/// Counts the holds that keep GC out; GC waits for zero and blocks new holds
/// while it runs.
#[derive(Debug, Default)]
pub(crate) struct GcGate {
    /// (holders, collecting)
    state: Mutex<(usize, bool)>,
    cv: Condvar,
}

/// An owned permit that keeps garbage collection from running; see
/// [`Store::gc_hold`].
#[derive(Debug)]
#[must_use = "GC is held off only while the hold is alive"]
pub struct GcHold {
    gate: Arc<GcGate>,
}

impl GcGate {
    fn hold(self: &Arc<Self>) -> GcHold {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.1 {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.0 += 1;
        GcHold { gate: self.clone() }
    }

    fn collect(self: &Arc<Self>) -> Collecting {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.0 > 0 || st.1 {
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.1 = true;
        Collecting { gate: self.clone() }
    }
}

impl Drop for GcHold {
    fn drop(&mut self) {
        let mut st = self.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        st.0 -= 1;
        self.gate.cv.notify_all();
    }
}

struct Collecting {
    gate: Arc<GcGate>,
}

impl Drop for Collecting {
    fn drop(&mut self) {
        let mut st = self.gate.state.lock().unwrap_or_else(|e| e.into_inner());
        st.1 = false;
        self.gate.cv.notify_all();
    }
}
